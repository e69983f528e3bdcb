"""The checkpoint: one typed record (`Checkpoint`), its file layout, safe load and atomic save.

Every key a checkpoint file holds is a field of `Checkpoint`; nothing else in
the package reads or writes checkpoint keys. On disk the record is a dict of
plain tensors and built-in types (format 1):

    format       CHECKPOINT_FORMAT
    model        Recognizer.state_dict()                        required
    config       to_dict(RunConfig)                             required
    labels       [str] in output order                          required
    n_params     trainable parameters
    source       the dataset it was trained on
    summary      Trainer.summary(): what export writes into the ONNX metadata
    optimizer    AdamW state_dict()                             required to resume
    scheduler    LambdaLR state_dict()                          required to resume
    train_state  TrainState fields (counters, running sums, history)  required to resume
    ema          (runs before 2026-12-02 with a weight average) the averaged weights: what runs
    sources      {name: state_dict} of the learning sources with state (sources.py), to resume
    projector    (runs before issue 45) the feature-distillation projector: read as
                 sources["feature_distill"]

Loading uses `torch.load(weights_only=True)`, which refuses pickled objects,
so a checkpoint from anywhere can never run code. The test accuracy is not
stored: the run folder's metrics.json holds it (`run_summary`), so a
checkpoint is written once, by the trainer, and never patched afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig
from ..config_text import from_dict, to_dict
from ..files import FileRefused, open_regular, temp_beside

CHECKPOINT_FORMAT = 1
METRICS_FILE = "metrics.json"  # the run's final report, beside best.pt and last.pt
REQUIRED = ("model", "config", "labels")
RESUME_REQUIRED = ("optimizer", "scheduler", "train_state")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


@dataclass
class TrainState:
    """Where the training loop stands; saved so a run resumes exactly where it stopped."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # batches completed in the current epoch
    global_step: int = 0
    best_val_acc: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the last validation improvement
    loss_sum: float = 0.0  # running sums for the current epoch
    correct: int = 0
    seen: int = 0
    grad_norm_sums: dict[str, float] = field(default_factory=dict)  # per layer group
    clipped: int = 0  # steps whose global gradient norm was clipped this epoch
    history: list[dict] = field(default_factory=list)  # one record per completed epoch


@dataclass(frozen=True)
class Checkpoint:
    model: dict[str, torch.Tensor]
    config: RunConfig
    labels: tuple[str, ...]
    n_params: int | None = None
    source: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    # None in an export-only checkpoint (weights, config and labels alone).
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    train_state: TrainState | None = None
    # Runs made before the weight averages were removed (2026-12-02) may hold
    # the averaged weights here: what they validated, tested and export.
    ema: dict[str, torch.Tensor] | None = None
    # Runs made before domain-adversarial training was removed hold its
    # discriminator here; it is read and ignored (it was never exported).
    domain: dict[str, torch.Tensor] | None = None
    # The learning sources' resumable state by name (sources.py; the feature
    # distillation's projector): to resume only, never exported.
    sources: dict[str, dict[str, torch.Tensor]] | None = None

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        """The weights to run: the moving average when the run kept one."""
        return self.ema if self.ema is not None else self.model


def to_state(ckpt: Checkpoint) -> dict[str, Any]:
    """The plain dict written to disk (tensors and built-ins only)."""
    state = {
        "model": ckpt.model,
        "config": to_dict(ckpt.config),
        "labels": list(ckpt.labels),
        "n_params": ckpt.n_params,
        "source": ckpt.source,
        "summary": ckpt.summary,
        "optimizer": ckpt.optimizer,
        "scheduler": ckpt.scheduler,
        "train_state": None if ckpt.train_state is None else dataclasses.asdict(ckpt.train_state),
        "ema": ckpt.ema,
        "domain": ckpt.domain,
        "sources": ckpt.sources or None,
    }
    return {k: v for k, v in state.items() if v is not None}


def from_state(state: dict[str, Any], path: Path, resumable: bool = False) -> Checkpoint:
    """The typed record of a loaded dict; CheckpointError names the file and the key."""
    known = {f.name for f in dataclasses.fields(Checkpoint)} | {"format", "projector"}
    unknown = sorted(set(state) - known)
    if unknown:
        raise CheckpointError(f"{path}: unknown checkpoint key {unknown[0]!r}")
    for key in REQUIRED + (RESUME_REQUIRED if resumable else ()):
        if state.get(key) is None:
            why = " (an export-only checkpoint cannot resume)" if key in RESUME_REQUIRED else ""
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}{why}")
    try:
        config = from_dict(RunConfig, state["config"]).validate()
    except (ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: checkpoint key 'config' does not parse: {exc}") from None
    labels = state["labels"]
    if not isinstance(labels, (list, tuple)) or not all(isinstance(x, str) for x in labels):
        raise CheckpointError(f"{path}: checkpoint key 'labels' is not a list of strings")
    return Checkpoint(
        model=state["model"],
        config=config,
        labels=tuple(labels),
        n_params=state.get("n_params"),
        source=str(state.get("source", "")),
        summary=dict(state.get("summary") or {}),
        optimizer=state.get("optimizer"),
        scheduler=state.get("scheduler"),
        train_state=_train_state(state.get("train_state"), path),
        ema=state.get("ema"),
        domain=state.get("domain"),
        sources=_sources(state),
    )


def _sources(state: dict[str, Any]) -> dict[str, dict[str, torch.Tensor]] | None:
    """The learning sources' states; a checkpoint from before they had names
    kept the feature distillation's projector under its own key."""
    sources = dict(state.get("sources") or {})
    if state.get("projector") is not None:
        sources.setdefault("feature_distill", state["projector"])
    return sources or None


def _train_state(data: dict[str, Any] | None, path: Path) -> TrainState | None:
    if data is None:
        return None
    names = {f.name for f in dataclasses.fields(TrainState)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise CheckpointError(f"{path}: unknown checkpoint key 'train_state.{unknown[0]}'")
    # Earlier writers stored None for a running sum not yet started: take the default.
    return TrainState(**{k: v for k, v in data.items() if v is not None})


def save(ckpt: Checkpoint, path: str | Path) -> None:
    save_atomic(to_state(ckpt), path)


def save_atomic(state: dict[str, Any], path: str | Path) -> None:
    """Write a plain dict to a temp file in the same folder, fsync, then rename over `path`.

    A crash or Ctrl-C while writing leaves the previous checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save({"format": CHECKPOINT_FORMAT, **state}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        # A full disk or a file-size limit: OSError, or torch's writer failing
        # on the short write (RuntimeError). The file at `path` is as it was.
        Path(tmp).unlink(missing_ok=True)
        reason = getattr(exc, "strerror", None) or (str(exc).strip().splitlines() or ["?"])[0]
        raise CheckpointWriteError(
            f"{path}: cannot write the checkpoint ({reason[:200]}); the one there before "
            "is kept (a full disk or a file-size limit?)"
        ) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written; the message names the file."""


def load(
    path: str | Path, map_location: str | torch.device = "cpu", resumable: bool = False
) -> Checkpoint:
    """The checkpoint at `path`; `resumable` also requires the optimizer and loop state."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        # Opened as a regular file only: a FIFO (a teacher, a resumed run's
        # last.pt) would hang the load, /dev/zero would never end it.
        with open_regular(path, "checkpoint") as fh:
            state = torch.load(fh, map_location=map_location, weights_only=True)
    except FileRefused as exc:
        raise CheckpointError(str(exc)) from None
    except Exception as exc:  # torch raises several types for foreign or corrupt files
        if isinstance(exc, pickle.UnpicklingError):
            reason = f"refused by the safe loader: {_first_line(exc)}"
        elif isinstance(exc, (KeyError, EOFError, RuntimeError, ValueError)):
            reason = "not a torch file, or corrupt or truncated"
        else:
            reason = _first_line(exc)
        raise CheckpointError(
            f"{path}: cannot load as a speechlstm checkpoint ({reason})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a speechlstm checkpoint (format {CHECKPOINT_FORMAT})")
    return from_state(state, path, resumable=resumable)


def run_summary(path: str | Path, ckpt: Checkpoint) -> dict[str, Any] | None:
    """The finished run's summary from the metrics.json beside `path`, or None.

    A checkpoint's own summary is as of its save (best.pt's stops at its best
    epoch); the final report's covers the whole run and adds the test
    accuracy. That accuracy was measured on best.pt, so it is given only to a
    checkpoint holding the same weights: one saved at the best epoch (best.pt,
    or last.pt when the last epoch was the best). None for a checkpoint that is
    not this run's (a copy elsewhere, an unfinished run).
    """
    try:
        with open_regular(Path(path).parent / METRICS_FILE, "run report") as fh:
            report = json.loads(fh.read())
        summary, best_epoch = dict(report["summary"]), report["best_epoch"]
    except (OSError, ValueError, KeyError, TypeError):  # FileRefused is a ValueError
        return None
    saved_at = ckpt.summary.get("epochs_completed")
    if ckpt.source != summary.get("source") or saved_at not in (
        best_epoch,
        summary.get("epochs_completed"),
    ):
        return None
    if saved_at == best_epoch and report.get("test_accuracy") is not None:
        summary["test_accuracy"] = round(float(report["test_accuracy"]), 4)
    return summary


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def load_weights(module: torch.nn.Module, weights: Any, path: str | Path, key: str = "model"):
    """`module.load_state_dict(weights)`, or CheckpointError naming the file: a
    checkpoint whose tensors do not fit its own config (missing, extra or
    reshaped) is a broken file, not a bug."""
    if not isinstance(weights, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()
    ):
        raise CheckpointError(f"{path}: checkpoint key {key!r} is not a dict of named tensors")
    try:
        module.load_state_dict(weights)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: checkpoint key {key!r} does not fit the model its config describes "
            f"({' '.join(str(exc).split())[:240]})"
        ) from None


def build_model(ckpt: Checkpoint, path: str | Path):
    """The Recognizer `ckpt` describes, holding the weights it runs (eval mode)."""
    from .model import Recognizer

    try:
        model = Recognizer(ckpt.config.features, ckpt.config.model, len(ckpt.labels))
    except (ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path}: its config does not build a model ({_first_line(exc)})"
        ) from None
    load_weights(model, ckpt.weights, path, "ema" if ckpt.ema is not None else "model")
    return model.eval()


def load_model(ckpt_path: str | Path):
    """The recognizer of a checkpoint in eval mode, with its record and config:
    (Recognizer, Checkpoint, RunConfig). In a finished run folder the record's
    summary is updated with the run's final one from metrics.json, with the
    test accuracy (run_summary)."""
    ckpt = load(ckpt_path)
    summary = run_summary(ckpt_path, ckpt)
    if summary is not None:
        ckpt = dataclasses.replace(ckpt, summary={**ckpt.summary, **summary})
    return build_model(ckpt, ckpt_path), ckpt, ckpt.config
