"""The ONNX recognizer: onnxruntime + numpy only, no torch.

Loads a speechlstm model, reads its typed description (modelmeta.py) and runs
batched inference on raw waveforms at the model's rate; the MFCC front-end is
inside the graph.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import fix_length
from .labels import BACKGROUND_LABELS
from .modelmeta import INPUT_NAME, OUTPUT_NAMES, DescriptionError, ModelDescription, from_props

ASSETS_DIR = Path(__file__).parent / "assets"
DEFAULT_MODEL_NAME = "sc12.int8.onnx"
MAX_CLASSES = 100_000  # more declared classes is a corrupt or hostile file
PROB_TOLERANCE = 1e-3  # softmax in float32 stays well inside this


class ModelError(ValueError):
    """A model file that cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class ModelFile:
    """A model on disk: where it is, how big, and its description."""

    path: Path
    size_bytes: int
    description: ModelDescription


# Shipped models by name: `-m sc12` anywhere a model path is taken.
# sc12_mined is the first stage of the shipped verifier's pair (`--verifier sc12`).
SHIPPED_MODELS = {
    "sc12": "sc12.int8.onnx",
    "sc12_synthetic": "sc12_synthetic.int8.onnx",
    "sc12_mined": "sc12_mined.int8.onnx",
}
DEFAULT_MODEL = "sc12"


def default_model_path() -> Path | None:
    path = ASSETS_DIR / DEFAULT_MODEL_NAME
    return path if path.is_file() else None


def resolve_model(spec: str | os.PathLike | None = None) -> Path:
    """A model file from a path, the name of a shipped model (`sc12`), or None
    (the shipped default). A path that exists wins over a shipped name;
    ModelError names both possibilities when neither is there."""
    if spec is None:
        found = default_model_path()
        if found is None:
            raise ModelError(
                "this install ships no default model; train one (`speechlstm train`) "
                "and export it (`speechlstm export`), then pass it with -m"
            )
        return found
    path = Path(spec)
    if path.exists() or str(spec) not in SHIPPED_MODELS:
        return path  # a missing path is refused by name where it is opened
    shipped = ASSETS_DIR / SHIPPED_MODELS[str(spec)]
    if not shipped.is_file():
        raise ModelError(f"{spec}: this install does not ship that model ({shipped} is missing)")
    return shipped


def model_name(spec: str | os.PathLike | None) -> str:
    """The name a model's detections carry: a shipped model's name, else the
    file's stem (`lights.onnx` -> `lights`)."""
    if spec is None:
        return DEFAULT_MODEL
    if str(spec) in SHIPPED_MODELS and not Path(spec).exists():
        return str(spec)
    stem = Path(spec).name
    for suffix in (".onnx", ".int8"):
        stem = stem.removesuffix(suffix)
    return stem or str(spec)


def open_session(path: str | os.PathLike, threads: int = 1):
    """An onnxruntime CPU session with `threads` intra-op threads (0: onnxruntime's choice)."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        hint = (
            f" (shipped models by name: {', '.join(SHIPPED_MODELS)})" if not path.exists() else ""
        )
        raise ModelError(f"{path}: no such model file{hint}")
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


def is_our_model(path: str | os.PathLike) -> bool:
    """A speechlstm ONNX model (readable, with our metadata): an export may replace it."""
    try:
        read_model(path)
    except (ModelError, OSError):
        return False
    return True


def read_model(path: str | os.PathLike, session=None) -> ModelFile:
    """The description of a speechlstm ONNX model; ModelError if it is not one or
    its description is malformed (the message names the field)."""
    path = Path(path)
    if session is None:
        session = open_session(path, threads=1)
    try:
        description = from_props(dict(session.get_modelmeta().custom_metadata_map))
    except DescriptionError as exc:
        raise ModelError(f"{path}: {exc}") from None
    except UnicodeDecodeError:
        raise ModelError(f"{path}: its metadata is not UTF-8 text (a corrupt file?)") from None
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if INPUT_NAME not in inputs or OUTPUT_NAMES[0] not in outputs:
        raise ModelError(f"{path}: expected input {INPUT_NAME!r} and output {OUTPUT_NAMES[0]!r}")
    check_signature(path, inputs, outputs[OUTPUT_NAMES[0]], description.clip_samples)
    if description.temperature != 1.0 and OUTPUT_NAMES[1] not in outputs:
        raise ModelError(
            f"{path}: calibrated (temperature {description.temperature}) but has no "
            f"{OUTPUT_NAMES[1]!r} output to apply it to"
        )
    classes = outputs[OUTPUT_NAMES[0]].shape[-1] if outputs[OUTPUT_NAMES[0]].shape else None
    if isinstance(classes, int) and classes != len(description.labels):
        raise ModelError(
            f"{path}: speechlstm.labels has {len(description.labels)} labels but the "
            f"model outputs {classes} classes"
        )
    return ModelFile(path, path.stat().st_size, description)


def check_signature(path: Path, inputs: dict, probs, clip_samples: int) -> None:
    """The graph's inputs and output as the contract has them, refused at load with
    the problem named (not at the first batch): one input `waveform`, float32
    (batch, samples); `probabilities` float32 (batch, classes). A fixed size must
    be one the runtime can give: batch 1 (it runs a clip a call), the model's
    clip length."""
    extra = sorted(set(inputs) - {INPUT_NAME})
    if extra:
        raise ModelError(
            f"{path}: needs inputs {extra} besides {INPUT_NAME!r}; the contract has one"
        )
    wave = inputs[INPUT_NAME]
    for what, arg, dims in (
        (f"input {INPUT_NAME!r}", wave, (("batch", 1), ("samples", clip_samples))),
        (f"output {OUTPUT_NAMES[0]!r}", probs, (("batch", 1), ("classes", None))),
    ):
        if arg.type != "tensor(float)":
            raise ModelError(f"{path}: {what} is {arg.type}; expected tensor(float) (float32)")
        shape = arg.shape
        if shape is None or len(shape) != 2:
            rank = "unknown" if shape is None else len(shape)
            raise ModelError(f"{path}: {what} has rank {rank}; expected 2 (batch, {dims[1][0]})")
        for (name, wanted), size in zip(dims, shape):
            if isinstance(size, int) and wanted is not None and size != wanted:
                raise ModelError(
                    f"{path}: {what} declares {name} = {size}; the runtime gives {wanted} "
                    "(or leave the dimension dynamic)"
                )
            if isinstance(size, int) and not 1 <= size <= MAX_CLASSES and name == "classes":
                raise ModelError(f"{path}: {what} declares {size} classes")


class ModelOutputError(ModelError):
    """A model that computed something that is not probabilities (NaN, outside [0, 1])."""


def check_probabilities(path: Path, probs: np.ndarray) -> np.ndarray:
    """`probs` if every row is a probability vector; ModelOutputError otherwise: a
    broken model's NaN must never be printed as a label with exit 0."""
    if not np.isfinite(probs).all():
        raise ModelOutputError(f"{path}: the model output NaN or infinite probabilities")
    if probs.size and (probs.min() < -PROB_TOLERANCE or probs.max() > 1 + PROB_TOLERANCE):
        raise ModelOutputError(
            f"{path}: the model output values outside [0, 1] "
            f"({probs.min():.3g} to {probs.max():.3g}); not probabilities"
        )
    return probs


class OnnxRecognizer:
    """Batched inference on waveforms. `threads=0` lets onnxruntime choose.

    Safe to call from several threads at once: each call takes a session of its
    own from a pool (one is made when all are busy, and kept). Two threads
    sharing one onnxruntime session ran at 1.56x one thread on two cores; with a
    session each, 1.92x (bench/batch_speed.py): the session's shared state,
    not the cores, was the limit."""

    def __init__(self, path: str | os.PathLike, threads: int = 1):
        import threading

        self.session = open_session(path, threads)
        self.threads = threads
        self._idle = [self.session]  # sessions no call is using
        self._pool_lock = threading.Lock()
        self.file = read_model(path, self.session)
        self.description = self.file.description
        self.labels = self.description.labels
        self.sample_rate = self.description.sample_rate
        self.clip_samples = self.description.clip_samples
        self.background = np.array([lab in BACKGROUND_LABELS for lab in self.labels])
        self.temperature = self.description.temperature

    def predict(self, waveforms: np.ndarray) -> np.ndarray:
        """(B, samples) float32 at the model's rate -> probabilities (B, classes).

        Each clip runs in a call of its own: int8 models quantize activations
        with one scale per call (onnxruntime's DynamicQuantizeLSTM and
        DynamicQuantizeLinear), so clips sharing a call would change each other's
        probabilities (by up to 0.1 measured), and a clip's answer would depend on
        its batch, shard or chunking. One call a clip costs little: these models
        run at batch 1 within ~10% of their batched speed on one thread
        (bench/inference.py)."""
        waveforms = np.ascontiguousarray(waveforms, dtype=np.float32)
        if waveforms.ndim != 2:
            raise ValueError(f"expected (batch, samples) waveforms, got shape {waveforms.shape}")
        out = self._run_all(waveforms)
        if not out:
            return np.zeros((0, len(self.labels)), np.float32)
        probs = np.concatenate(out)
        if probs.ndim != 2 or probs.shape[1] != len(self.labels):
            raise ModelOutputError(
                f"{self.file.path}: the model output shape {probs.shape}, expected "
                f"(clips, {len(self.labels)})"
            )
        return check_probabilities(self.file.path, probs)

    def _acquire(self):
        with self._pool_lock:
            if self._idle:
                return self._idle.pop()
        return open_session(self.file.path, self.threads)

    def _release(self, session) -> None:
        with self._pool_lock:
            self._idle.append(session)

    def _run_all(self, waveforms: np.ndarray) -> list[np.ndarray]:
        session = self._acquire()
        try:
            return [self._run(waveforms[i : i + 1], session) for i in range(len(waveforms))]
        finally:
            self._release(session)

    def _run(self, clip: np.ndarray, session=None) -> np.ndarray:
        """One clip's probabilities (1, classes); a calibrated model's from its
        logits at its temperature (export --calibrate)."""
        session = session or self.session
        if self.temperature == 1.0:
            return session.run([OUTPUT_NAMES[0]], {INPUT_NAME: clip})[0]
        logits = session.run([OUTPUT_NAMES[1]], {INPUT_NAME: clip})[0].astype(np.float64)
        z = logits / self.temperature
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def predict_each(self, clips: list[np.ndarray]) -> np.ndarray:
        """Probabilities (len(clips), classes) of clips up to the window each,
        zero-padded at the end as `predict_clip` pads them: the same numbers,
        with one session and one input buffer for the lot (batch scoring's path)."""
        if not clips:
            return np.zeros((0, len(self.labels)), np.float32)
        block = np.zeros((1, self.clip_samples), np.float32)
        session = self._acquire()
        try:
            out = []
            for clip in clips:
                n = min(len(clip), self.clip_samples)
                block[0, :n] = clip[:n]
                block[0, n:] = 0.0
                out.append(self._run(block, session))
        finally:
            self._release(session)
        probs = np.concatenate(out)
        if probs.shape != (len(clips), len(self.labels)):
            raise ModelOutputError(
                f"{self.file.path}: the model output shape {probs.shape}, expected "
                f"({len(clips)}, {len(self.labels)})"
            )
        return check_probabilities(self.file.path, probs)

    def predict_clip(self, waveform: np.ndarray) -> np.ndarray:
        """One clip of any length up to the window -> probabilities (classes,)."""
        return self.predict(fix_length(waveform, self.clip_samples)[None])[0]
