"""Posteriors that mean something: one temperature fitted on validation clips.

A model trained with label smoothing (0.1 over 12 classes) tops out near 0.91,
so a detector's thresholds crowd into 0.90-0.95. Temperature scaling (Guo et
al., ICML 2017) fits one number T on the run's validation split, minimising
the negative log-likelihood of softmax(logits / T); accuracy is unchanged (the
argmax does not move). `speechlstm export --calibrate` stores T in the model's
description and the runtime applies it to the graph's logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..modelmeta import TEMPERATURE_RANGE


@dataclass(frozen=True)
class Calibration:
    temperature: float
    nll_before: float  # at T = 1
    nll_after: float
    clips: int


def nll(logits: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of softmax(logits / temperature) at `targets`."""
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(targets)), targets].mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> Calibration:
    """The temperature in TEMPERATURE_RANGE minimising the NLL (golden-section
    search on log T: the NLL is unimodal in it)."""
    if len(targets) == 0:
        raise ValueError("no validation clips to calibrate on")
    lo, hi = math.log(TEMPERATURE_RANGE[0]), math.log(TEMPERATURE_RANGE[1])
    ratio = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(logits, targets, math.exp(c)), nll(logits, targets, math.exp(d))
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(logits, targets, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(logits, targets, math.exp(d))
    t = round(math.exp((a + b) / 2), 4)
    return Calibration(t, nll(logits, targets, 1.0), nll(logits, targets, t), len(targets))


def validation_logits(model, source: str, cfg) -> tuple[np.ndarray, np.ndarray]:
    """The fp32 model's logits on the run's validation split, and the targets."""
    import torch

    from ..data.prepare import prepare

    data = prepare(source, cfg.data, cfg.features, cfg.train.seed, show_progress=False)
    split = data.splits["validation"]
    out = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(split.targets), 256):
            wave = torch.from_numpy(split.audio[start : start + 256]).float() / 32767.0
            out.append(model(wave)[1].float().numpy())
    logits = np.concatenate(out) if out else np.zeros((0, 1), np.float32)
    return logits, split.targets
