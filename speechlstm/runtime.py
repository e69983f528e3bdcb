"""The ONNX recognizer: onnxruntime + numpy only, no torch.

Loads a speechlstm model, checks its metadata (labels, feature settings) and
runs batched inference on raw 16 kHz waveforms; the MFCC front-end is inside
the graph.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import fix_length
from .labels import BACKGROUND_LABELS
from .modelmeta import (
    FORMAT_VERSION,
    INPUT_NAME,
    KEY_FEATURES,
    KEY_FORMAT,
    KEY_LABELS,
    KEY_MODEL,
    KEY_QUANTIZATION,
    KEY_TRAINING,
    OUTPUT_NAMES,
    REQUIRED_KEYS,
)

ASSETS_DIR = Path(__file__).parent / "assets"
DEFAULT_MODEL_NAME = "sc12.int8.onnx"


class ModelError(ValueError):
    """A model file that cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    labels: tuple[str, ...]
    features: dict
    model: dict
    training: dict
    quantization: str  # "none" or "dynamic-int8"
    size_bytes: int

    @property
    def sample_rate(self) -> int:
        return int(self.features["sample_rate"])

    @property
    def clip_samples(self) -> int:
        return round(self.features["sample_rate"] * self.features["clip_ms"] / 1000)


def default_model_path() -> Path | None:
    path = ASSETS_DIR / DEFAULT_MODEL_NAME
    return path if path.is_file() else None


def read_info(path: str | os.PathLike, session=None) -> ModelInfo:
    """Metadata of a speechlstm ONNX model; ModelError if it is not one."""
    path = Path(path)
    if session is None:
        session = _open_session(path, threads=1)
    meta = session.get_modelmeta().custom_metadata_map
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelError(
            f"{path}: not a speechlstm model (no {missing[0]} metadata); "
            "export one with `speechlstm export CHECKPOINT -o model.onnx`"
        )
    if meta[KEY_FORMAT] != str(FORMAT_VERSION):
        raise ModelError(
            f"{path}: model format {meta[KEY_FORMAT]}, this speechlstm reads {FORMAT_VERSION}"
        )
    try:
        labels = tuple(json.loads(meta[KEY_LABELS]))
        features = json.loads(meta[KEY_FEATURES])
        model = json.loads(meta[KEY_MODEL])
        training = json.loads(meta.get(KEY_TRAINING, "{}"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: corrupt speechlstm metadata ({exc})") from None
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if INPUT_NAME not in inputs or OUTPUT_NAMES[0] not in outputs:
        raise ModelError(f"{path}: expected input {INPUT_NAME!r} and output {OUTPUT_NAMES[0]!r}")
    return ModelInfo(
        path,
        labels,
        features,
        model,
        training,
        meta.get(KEY_QUANTIZATION, "none"),
        path.stat().st_size,
    )


def _open_session(path: Path, threads: int):
    import onnxruntime as ort

    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    opts = ort.SessionOptions()
    # Set explicitly: onnxruntime's default grabs every core, which hurts when
    # several recognizers or a decoder pool share the machine.
    opts.intra_op_num_threads = max(0, threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: no warnings on the user's terminal
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        first = (str(exc).strip().splitlines() or ["unreadable"])[0]
        raise ModelError(f"{path}: cannot load as an ONNX model ({first[:200]})") from None


class OnnxRecognizer:
    """Batched inference on waveforms. `threads=0` lets onnxruntime choose."""

    def __init__(self, path: str | os.PathLike, threads: int = 1):
        self.session = _open_session(Path(path), threads)
        self.info = read_info(path, self.session)
        self.labels = self.info.labels
        self.clip_samples = self.info.clip_samples
        self.background = np.array([lab in BACKGROUND_LABELS for lab in self.labels])

    def predict(self, waveforms: np.ndarray) -> np.ndarray:
        """(B, samples) float32 at the model's rate -> probabilities (B, classes)."""
        waveforms = np.ascontiguousarray(waveforms, dtype=np.float32)
        if waveforms.ndim != 2:
            raise ValueError(f"expected (batch, samples) waveforms, got shape {waveforms.shape}")
        return self.session.run([OUTPUT_NAMES[0]], {INPUT_NAME: waveforms})[0]

    def predict_clip(self, waveform: np.ndarray) -> np.ndarray:
        """One clip of any length up to the window -> probabilities (classes,)."""
        return self.predict(fix_length(waveform, self.clip_samples)[None])[0]
