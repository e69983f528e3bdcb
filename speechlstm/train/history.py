"""The end of an epoch, as pure functions, and validation.

score_split runs a model over a split (no augmentation); epoch_record builds
the history entry (metrics.json, curves.png), close_epoch advances the loop
state, should_stop decides on early stopping, format_epoch and
format_grad_norms make the terminal lines; grad_groups names the layer groups
whose gradient norms are recorded.
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import torch

from ..data.prepare import SplitData
from .checkpoint import TrainState
from .model import Recognizer


# -- the end of an epoch, as pure functions ----------------------------------
def epoch_record(s: TrainState, val: dict, lr: float, clips_per_s: float) -> dict:
    """The history entry (metrics.json, curves.png) of the epoch `s` has just run."""
    steps = max(s.step_in_epoch, 1)
    return {
        "epoch": s.epoch + 1,
        "train_loss": s.loss_sum / max(s.seen, 1),
        "train_accuracy": s.correct / max(s.seen, 1),
        "val_loss": val["loss"],
        "val_accuracy": val["accuracy"],
        "lr": lr,
        "clips_per_s": round(clips_per_s, 1),
        "grad_norm": {k: round(v / steps, 5) for k, v in s.grad_norm_sums.items()},
        "clipped_steps": s.clipped,
    }


def close_epoch(s: TrainState, record: dict) -> TrainState:
    """The state after the epoch of `record`: history extended, best tracked, sums reset."""
    improved = record["val_accuracy"] > s.best_val_acc
    return replace(
        s,
        epoch=s.epoch + 1,
        step_in_epoch=0,
        loss_sum=0.0,
        correct=0,
        seen=0,
        grad_norm_sums={},
        clipped=0,
        history=[*s.history, record],
        best_val_acc=record["val_accuracy"] if improved else s.best_val_acc,
        best_epoch=s.epoch + 1 if improved else s.best_epoch,
        bad_epochs=0 if improved else s.bad_epochs + 1,
    )


def should_stop(bad_epochs: int, patience: int) -> bool:
    """Early stopping: `patience` epochs in a row without a better validation accuracy."""
    return patience > 0 and bad_epochs >= patience


def format_epoch(record: dict, epochs: int, improved: bool) -> str:
    """The epoch's one terminal line (under 80 columns, so it never wraps); * marks a new best."""
    return (
        f"epoch {record['epoch']}/{epochs}: loss {record['train_loss']:.3f} "
        f"acc {record['train_accuracy']:.3f} | val loss {record['val_loss']:.3f} "
        f"acc {record['val_accuracy']:.3f}{' *' if improved else ''} | "
        f"{record['clips_per_s']:.0f} clips/s"
    )


def format_grad_norms(record: dict) -> str:
    """The --verbose line: mean gradient norm per layer group, and clipped steps."""
    grads = " ".join(f"{k} {v:.3g}" for k, v in record["grad_norm"].items())
    clipped = record["clipped_steps"]
    return f"  gradient norm per layer (mean over steps): {grads}" + (
        f"; clipped {clipped} steps" if clipped else ""
    )


def grad_groups(classifier) -> dict[str, list[torch.nn.Parameter]]:
    """Parameters grouped by layer for the gradient-norm log: input_norm,
    rnn.0 .. rnn.N-1 (both directions of each recurrent layer), pool, head."""
    groups: dict[str, list] = {}
    for name, p in classifier.named_parameters():
        if name.startswith("rnn."):
            # nn.LSTM names: lstm.weight_ih_l1_reverse; equation stacks: layers.1.0.weight_ih
            match = re.search(r"_l(\d+)|layers\.(\d+)\.", name)
            key = f"rnn.{next(g for g in match.groups() if g is not None)}"
        else:
            key = name.split(".")[0]
        groups.setdefault(key, []).append(p)
    return groups


@torch.no_grad()
def score_split(model: Recognizer, split: SplitData, device: torch.device, batch_size: int = 256):
    """Loss, accuracy, predictions and probabilities of `model` on a split (no augmentation)."""
    model.eval()
    n = len(split.targets)
    probs = np.zeros((n, model.classifier.head.out_features), dtype=np.float32)
    for start in range(0, n, batch_size):
        wave = (
            torch.from_numpy(split.audio[start : start + batch_size]).to(device).float() / 32767.0
        )
        p, _ = model(wave)
        probs[start : start + len(wave)] = p.float().cpu().numpy()
    model.train()
    if n == 0:
        return {
            "loss": float("nan"),
            "accuracy": 0.0,
            "predictions": np.zeros(0, int),
            "probs": probs,
        }
    picked = probs[np.arange(n), split.targets]
    loss = float(-np.log(np.clip(picked, 1e-12, None)).mean())
    preds = probs.argmax(axis=1)
    return {
        "loss": loss,
        "accuracy": float((preds == split.targets).mean()),
        "predictions": preds,
        "probs": probs,
    }
