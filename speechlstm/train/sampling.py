"""Class-balanced draws of a training epoch (numpy): every class equally likely,
extra sources (`train --add`) at a chosen share of each class's draws."""

from __future__ import annotations

import numpy as np


def balanced_order(
    targets: np.ndarray,
    n: int,
    rng: np.random.Generator,
    from_extra: np.ndarray | None = None,
    extra_share: float = 0.0,
) -> np.ndarray:
    """`n` indices drawn so that every class present is equally likely.

    With `from_extra` and an `extra_share` > 0, that share of each class's
    draws comes from its extra-source clips (all of them when the class has
    no primary clip, none when it has no extra one).
    """
    classes, counts = np.unique(targets, return_counts=True)
    weights = (1.0 / counts)[np.searchsorted(classes, targets)]
    if from_extra is not None and extra_share > 0:
        for cls in classes:
            in_cls = targets == cls
            extra, primary = in_cls & from_extra, in_cls & ~from_extra
            if extra.any() and primary.any():
                weights[extra] = extra_share / extra.sum()
                weights[primary] = (1 - extra_share) / primary.sum()
    return rng.choice(len(targets), size=n, replace=True, p=weights / weights.sum())
