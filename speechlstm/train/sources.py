"""Learning sources: what a student learns from besides its labels.

The trainer takes a list of them (trainer.Trainer's `learning_sources`; by
default the shipped ones of the run's settings, distill.shipped_sources). Each
source owns:

- its settings: a factory reads them from the run's config and gives None
  when the source is off (`from_config(cfg)`);
- `prepare(run)`: what it computes once before the first step (load
  teachers, embed the clips, cache);
- `batch(b, gen)`: what it adds to a step's batch, after the waveform
  augmentation and before the features (extra rows, moved windows, soft
  targets in `b.extra`); `gen` is the step's seeded generator, so a source's
  draws resume exactly;
- `loss(b, out, loss)`: the step's loss with its part (most add a term;
  logit distillation mixes the cross-entropy with its own);
- `parameters()`: trainable aids that learn beside the model (a projector),
  at the head's rate and never exported;
- `state_dict()` / `load_state_dict(state, path)`: its resumable state,
  saved under its `name` in the checkpoint (None: nothing to save).

A step reads: augment -> sources' batch -> features -> forward ->
cross-entropy + the sources' losses -> optimiser step (trainer.Trainer._step).
The sources that ship live in distill.py; a lever under trial is a source in
bench/, registered by bench/experiments.py (DEVELOPERS.md, "Where a lever lives").
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..config import RunConfig
from .features import MFCC


@dataclass(frozen=True)
class SourceRun:
    """What a source prepares from: the run's settings and labels, the training
    clips as stored (N, S) int16, the training device and the decoded-audio
    cache (None: no caching)."""

    cfg: RunConfig
    labels: list[str]
    audio: np.ndarray
    device: torch.device
    cache_dir: Path | None


@dataclass
class Batch:
    """One step's batch on the device, as the sources see it."""

    index: torch.Tensor  # (B,) rows of the training split
    wave: torch.Tensor  # (B, S) augmented waveforms in [-1, 1]
    target: torch.Tensor  # (B,) class ids
    features: MFCC  # the student's front-end
    autocast: contextlib.AbstractContextManager  # the step's autocast context
    extra: dict[str, Any] = field(default_factory=dict)  # what sources add (soft targets, ...)
    _log_mel: torch.Tensor | None = None

    def log_mel(self) -> torch.Tensor:
        """(B, T, n_mels) log-mel of the augmented waveforms before SpecAugment,
        computed once: the student's features and a same-front-end teacher share it."""
        if self._log_mel is None:
            self._log_mel = self.features.log_mel(self.wave)
        return self._log_mel


@dataclass(frozen=True)
class Output:
    """The student's forward pass: logits (B, C) in float32, and the recurrent
    outputs (B, T', 2H) when a source asked for them (`needs_sequence`)."""

    logits: torch.Tensor
    sequence: torch.Tensor | None = None


class LearningSource(Protocol):
    name: str  # the key of its state in checkpoints
    needs_sequence: bool  # the forward pass must return the recurrent outputs

    def prepare(self, run: SourceRun) -> None: ...

    def parameters(self) -> list[torch.nn.Parameter]: ...

    def batch(self, b: Batch, gen: torch.Generator) -> Batch: ...

    def loss(self, b: Batch, out: Output, loss: torch.Tensor) -> torch.Tensor: ...

    def state_dict(self) -> dict[str, torch.Tensor] | None: ...

    def load_state_dict(self, state: dict[str, torch.Tensor] | None, path: Path) -> None: ...
