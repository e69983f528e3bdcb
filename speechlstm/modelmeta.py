"""The typed description of a speechlstm model, from training to every runtime.

Export writes it into the ONNX file's `metadata_props` (each part a JSON
string under its own key); `from_props` parses it back into frozen
dataclasses, validating field by field, so inference modules take rates,
lengths and labels from one typed object and never from raw dicts. A model
without our keys is not ours and is refused.

numpy-free and torch-free: the inference side and export both import it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from .audio import SAMPLE_RATE
from .config import (
    AugmentConfig,
    DataConfig,
    DetectorConfig,
    FeatureConfig,
    ModelConfig,
    TrainConfig,
)
from .config_text import from_dict, to_dict
from .labels import MAX_LABEL_CHARS, MAX_LABELS, label_problem  # noqa: F401  (re-exported)

FORMAT_VERSION = 1
KEY_FORMAT = "speechlstm.format_version"
KEY_LABELS = "speechlstm.labels"
KEY_FEATURES = "speechlstm.features"
KEY_MODEL = "speechlstm.model"
KEY_TRAINING = "speechlstm.training"
KEY_DETECTOR = "speechlstm.detector"
KEY_QUANTIZATION = "speechlstm.quantization"
# Posterior calibration (export --calibrate): probabilities = softmax(logits / T).
KEY_CALIBRATION = "speechlstm.calibration"
# The front-end inside the graph: "mfcc" (the recognizer's own; no key) or
# "embedding" (`export` of a `train --frontend embedding` run: Google's speech
# embedding + BiLSTM head in one graph; detect/embedding_stream.py streams it).
KEY_FRONTEND = "speechlstm.frontend"
FRONTENDS = ("mfcc", "embedding")
TEMPERATURE_RANGE = (0.05, 20.0)
REQUIRED_KEYS = (KEY_FORMAT, KEY_LABELS, KEY_FEATURES, KEY_MODEL)

INPUT_NAME = "waveform"
OUTPUT_NAMES = ("probabilities", "logits")
QUANTIZATIONS = ("none", "dynamic-int8")

# Sizes beyond these are not a model anyone trained: refuse them rather than
# allocate what they ask for (a 1-hour window, a million mel bands).
MAX_CLIP_MS = 10_000

MAX_BINS = 512


class DescriptionError(ValueError):
    """A model description that cannot be used; the message names the field."""


@dataclass(frozen=True)
class TrainingSummary:
    """How the model was trained: shown by `speechlstm info`, never used to compute."""

    source: str = ""
    clips: dict[str, int] = field(default_factory=dict)  # per split
    noise: str = ""
    epochs_completed: int = 0
    best_epoch: int = 0
    best_val_accuracy: float | None = None
    test_accuracy: float | None = None
    device: str = ""
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["clips"] = dict(self.clips)
        for name in ("train", "augment", "data"):
            out[name] = to_dict(out[name])
        return out


@dataclass(frozen=True)
class ModelDescription:
    """Everything a runtime needs to know about a model besides its weights."""

    labels: tuple[str, ...]
    features: FeatureConfig
    model: ModelConfig
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    training: TrainingSummary = field(default_factory=TrainingSummary)
    n_params: int | None = None
    quantization: str = "none"  # one of QUANTIZATIONS
    # Temperature fitted on validation clips at export (export --calibrate):
    # the runtime reports softmax(logits / temperature); 1.0 = the graph's own.
    temperature: float = 1.0
    frontend: str = "mfcc"  # one of FRONTENDS
    # Where the front-end's weights come from and under what terms (shown by `info`).
    frontend_credit: str = ""

    @property
    def sample_rate(self) -> int:
        return self.features.sample_rate

    @property
    def clip_samples(self) -> int:
        return self.features.clip_samples

    def to_props(self) -> dict[str, str]:
        """The ONNX `metadata_props` (key -> JSON string) that describe this model."""
        return (
            {
                KEY_FORMAT: str(FORMAT_VERSION),
                KEY_LABELS: json.dumps(list(self.labels)),
                KEY_FEATURES: json.dumps(to_dict(self.features)),
                KEY_MODEL: json.dumps({**to_dict(self.model), "n_params": self.n_params}),
                KEY_DETECTOR: json.dumps(to_dict(self.detector)),
                KEY_TRAINING: json.dumps(self.training.to_json()),
                KEY_QUANTIZATION: self.quantization,
            }
            | (
                {KEY_CALIBRATION: json.dumps({"temperature": self.temperature})}
                if self.temperature != 1.0
                else {}
            )
            | (
                {KEY_FRONTEND: json.dumps({"name": self.frontend, "credit": self.frontend_credit})}
                if self.frontend != "mfcc"
                else {}
            )
        )


def from_props(props: dict[str, str]) -> ModelDescription:
    """Parse and validate `metadata_props`; DescriptionError names the bad field."""
    missing = [k for k in REQUIRED_KEYS if k not in props]
    if missing:
        raise DescriptionError(
            f"not a speechlstm model (no {missing[0]} metadata); "
            "export one with `speechlstm export CHECKPOINT -o model.onnx`"
        )
    if props[KEY_FORMAT] != str(FORMAT_VERSION):
        raise DescriptionError(
            f"model format {props[KEY_FORMAT]!r}, this speechlstm reads {FORMAT_VERSION}"
        )
    labels = _labels(_json(props, KEY_LABELS))
    # The rate first: at another rate the other checks (Nyquist) would name the wrong field.
    features = _config(FeatureConfig, _json(props, KEY_FEATURES), "features", validate=False)
    _check_features(features)
    _validate(features)
    model_dict = _json(props, KEY_MODEL)
    if not isinstance(model_dict, dict):
        raise DescriptionError(f"{KEY_MODEL}: expected a JSON object")
    n_params = model_dict.pop("n_params", None)
    if n_params is not None and (not isinstance(n_params, int) or n_params < 0):
        raise DescriptionError(f"{KEY_MODEL}.n_params={n_params!r}: expected a count")
    model = _config(ModelConfig, model_dict, "model")
    detector = DetectorConfig()
    if KEY_DETECTOR in props:
        detector = _config(DetectorConfig, _json(props, KEY_DETECTOR), "detector")
    quantization = props.get(KEY_QUANTIZATION, "none")
    if quantization not in QUANTIZATIONS:
        raise DescriptionError(
            f"{KEY_QUANTIZATION}={quantization!r}: expected one of {', '.join(QUANTIZATIONS)}"
        )
    training = _training(_json(props, KEY_TRAINING)) if KEY_TRAINING in props else None
    frontend, credit = (
        _frontend(_json(props, KEY_FRONTEND)) if KEY_FRONTEND in props else ("mfcc", "")
    )
    return ModelDescription(
        labels,
        features,
        model,
        detector,
        training or TrainingSummary(),
        n_params,
        quantization,
        _temperature(_json(props, KEY_CALIBRATION)) if KEY_CALIBRATION in props else 1.0,
        frontend,
        credit,
    )


def _frontend(data: Any) -> tuple[str, str]:
    name = data.get("name") if isinstance(data, dict) else None
    if name not in FRONTENDS:
        raise DescriptionError(
            f"{KEY_FRONTEND}.name={name!r}: expected one of {', '.join(FRONTENDS)} "
            "(a newer speechlstm's model?)"
        )
    credit = data.get("credit", "")
    if not isinstance(credit, str) or len(credit) > 2000:
        raise DescriptionError(f"{KEY_FRONTEND}.credit: expected a short text")
    return name, credit


def _temperature(data: Any) -> float:
    value = data.get("temperature") if isinstance(data, dict) else None
    low, high = TEMPERATURE_RANGE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise DescriptionError(
            f"{KEY_CALIBRATION}.temperature={value!r}: expected a number in [{low}, {high}]"
        )
    return float(value)


def _json(props: dict[str, str], key: str) -> Any:
    try:
        return json.loads(props[key])
    except (json.JSONDecodeError, TypeError) as exc:
        raise DescriptionError(f"{key}: corrupt metadata ({exc})") from None


def _config(
    cls: type, data: Any, where: str, validate: bool = True, retired: str = "refuse"
) -> Any:
    if not isinstance(data, dict):
        raise DescriptionError(f"speechlstm.{where}: expected a JSON object")
    try:
        cfg = from_dict(cls, data, where=f"{where}.", retired=retired)
    except (ValueError, TypeError) as exc:
        raise DescriptionError(f"model description: {exc}") from None
    if validate:
        _validate(cfg)
    return cfg


def _validate(cfg: Any) -> None:
    try:
        if hasattr(cfg, "validate"):
            cfg.validate()
    except (ValueError, TypeError) as exc:
        raise DescriptionError(f"model description: {exc}") from None


def _labels(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise DescriptionError(f"{KEY_LABELS}: expected a non-empty list of strings")
    if len(value) > MAX_LABELS:
        raise DescriptionError(f"{KEY_LABELS}: {len(value)} labels (at most {MAX_LABELS})")
    for i, label in enumerate(value):
        problem = label_problem(label)
        if problem:
            raise DescriptionError(f"{KEY_LABELS}[{i}]={label!r}: {problem}")
    dupes = sorted({lab for lab in value if value.count(lab) > 1})
    if dupes:
        raise DescriptionError(f"{KEY_LABELS}: repeated {', '.join(dupes)}")
    return tuple(value)


def _check_features(f: FeatureConfig) -> None:
    if f.sample_rate != SAMPLE_RATE:
        raise DescriptionError(
            f"features.sample_rate={f.sample_rate}: this speechlstm runs at {SAMPLE_RATE} Hz"
        )
    numbers = {
        "clip_ms": (f.clip_ms, 100, MAX_CLIP_MS),
        "n_mfcc": (f.n_mfcc, 1, MAX_BINS),
        "n_mels": (f.n_mels, 1, MAX_BINS),
        "window_ms": (f.window_ms, 1, 1000),
        "hop_ms": (f.hop_ms, 1, 1000),
        "n_fft": (f.n_fft, 16, 1 << 14),
    }
    for name, (value, low, high) in numbers.items():
        if not (math.isfinite(value) and low <= value <= high):
            raise DescriptionError(f"features.{name}={value}: expected {low} to {high}")


def _training(data: Any) -> TrainingSummary:
    """Lenient: an unknown or missing key here only affects what `info` shows."""
    if not isinstance(data, dict):
        raise DescriptionError(f"{KEY_TRAINING}: expected a JSON object")
    kwargs: dict[str, Any] = {}
    for f in fields(TrainingSummary):
        if f.name not in data or data[f.name] is None:
            continue
        value = data[f.name]
        if f.name in ("train", "augment", "data"):
            cls = {"train": TrainConfig, "augment": AugmentConfig, "data": DataConfig}[f.name]
            # Removed levers are dropped: the summary only informs `info`.
            value = _config(cls, value, f"training.{f.name}", retired="drop")
        elif f.name == "clips":
            if not isinstance(value, dict):
                raise DescriptionError(f"{KEY_TRAINING}.clips: expected an object")
            value = {str(k): v for k, v in value.items() if isinstance(v, int)}
        elif f.name in ("best_val_accuracy", "test_accuracy"):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise DescriptionError(f"{KEY_TRAINING}.{f.name}={value!r}: expected a number")
            value = float(value)
        elif f.name in ("epochs_completed", "best_epoch"):
            if not isinstance(value, int) or isinstance(value, bool):
                raise DescriptionError(f"{KEY_TRAINING}.{f.name}={value!r}: expected an integer")
        else:
            value = str(value)
        kwargs[f.name] = value
    return TrainingSummary(**kwargs)


def stamp(proto, description: ModelDescription) -> None:
    """Replace the ONNX model's metadata with `description` (the one place it is written)."""
    del proto.metadata_props[:]
    for key, value in description.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
