"""Checkpoints: plain tensors and built-in types only, written atomically.

Loading uses `torch.load(weights_only=True)`, which refuses pickled objects,
so a checkpoint from anywhere can never run code.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


def save_atomic(state: dict[str, Any], path: str | Path) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`.

    A crash or Ctrl-C while writing leaves the previous checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save({"format": CHECKPOINT_FORMAT, **state}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
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
    for key in ("model", "config", "labels"):
        if key not in state:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
    return state


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
