"""The optimisation recipe's pure parts: the device, the learning-rate schedule,
and the parameter groups (nanoGPT's split: norms and biases are not decayed;
a pretrained encoder learns at its own rate)."""

from __future__ import annotations

import math

import torch

from .encoder import is_encoder_param


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to `min_ratio` at `total_steps`."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def pick_device(name: str) -> torch.device:
    """The device `train.device` names, or ValueError when this machine has none
    such (checked before a run prepares its data or writes anything)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but no CUDA device is available")
    device = torch.device(name)
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(
            f"train.device={name!r}: this machine has {torch.cuda.device_count()} CUDA "
            "device(s), numbered from 0"
        )
    return device


def parameter_groups(
    model: torch.nn.Module, weight_decay: float, uses_encoder: bool, extra: list | None = None
) -> tuple[list[dict], list[tuple[bool, bool]]]:
    """AdamW's groups and their keys (encoder?, decayed?); `extra` parameters (a
    training aid such as the embedding projector) learn at the head's rate."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        enc = uses_encoder and is_encoder_param(name)
        groups.setdefault((enc, not (p.ndim < 2 or "norm" in name)), []).append(p)
    keys = sorted(groups, key=lambda k: (k[0], not k[1]))
    param_groups = [
        {"params": groups[k], "weight_decay": weight_decay if k[1] else 0.0} for k in keys
    ]
    if extra:
        param_groups.append({"params": list(extra), "weight_decay": 0.0})
        keys.append((False, False))
    return param_groups, keys
