"""A pretrained speech encoder: the classifier without its last layer, shipped as safetensors.

    MFCC -> input norm -> [frame stack] -> bidirectional recurrent stack
         -> pooling                                  = the encoder (pretrained)
         -> Linear (B, C)                            = the head (new for each label set)

The encoder is pretrained by training an ordinary run on many words (real
speech of every subset word plus synthesized speech of a large vocabulary,
`make encoder`) and keeping everything but the head. A run that starts from
it learns new words from synthesized speech far better than one that starts
from random weights: the encoder has already learned what real voices,
rooms and microphones look like (openWakeWord; Lin et al., ICASSP 2020).

The file is safetensors (tensors and a string header; nothing that can run
code when loaded). Its header holds the feature and model settings the
tensors belong to, so a run adopts them and an export stays self-contained.
The tensors are stored in fp16 and loaded as fp32: the package carries half
the bytes (4.6 MB for the 2x256 encoder), and the weights are only where
training starts, so a rounding of 1 part in 2,000 changes nothing measurable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import FeatureConfig, ModelConfig
from ..config_text import from_dict, to_dict
from ..progress import note

FORMAT = "speechlstm-encoder/1"
# Parts of SpeechClassifier that are the encoder (state-dict key prefixes).
PARTS = ("input_norm.", "rnn.", "pool.")
# The settings that fix the encoder's tensors; dropout is a training setting.
SHAPE_FIELDS = ("cell", "hidden_size", "num_layers", "frame_stack", "pooling")
SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "encoder.safetensors"
# The streaming detector tuned for a model trained from the encoder on
# synthesized speech (bench/streaming.py --tune on the custom-words protocol's
# k=0 model): runs from an encoder that keep the default detector store it.
TRANSFER_DETECTOR = SHIPPED.with_name("transfer.detector.toml")
AUTO, NONE = "auto", "none"
STORED_DTYPE = torch.float16  # in the file; load_encoder returns fp32


class EncoderError(ValueError):
    """An encoder file that cannot be used; the message names the file and why."""


def _safetensors():
    """The safetensors module, or an EncoderError saying how to install it (torch
    installs without it: the GPU machine's preinstalled stack has no index)."""
    try:
        import safetensors
        import safetensors.torch
    except ImportError:
        raise EncoderError(
            "encoders need the safetensors package: pip install 'speechlstm[train]'"
        ) from None
    return safetensors


@dataclass(frozen=True)
class Encoder:
    tensors: dict[str, torch.Tensor]
    features: FeatureConfig
    model: ModelConfig
    info: dict  # what it was trained on (words, clips, recipe), for `info` and reports
    path: str
    sha256: str


def save_encoder(
    classifier: torch.nn.Module,
    features: FeatureConfig,
    model: ModelConfig,
    path: str | Path,
    info: dict,
) -> Path:
    """Write the encoder part of `classifier` (fp16, contiguous) to `path`."""
    save_file = _safetensors().torch.save_file
    tensors = {
        k: v.detach().to(STORED_DTYPE).contiguous().cpu()
        for k, v in classifier.state_dict().items()
        if k.startswith(PARTS) and v.is_floating_point()
    }
    shape = {f: getattr(model, f) for f in SHAPE_FIELDS}
    header = {
        "format": FORMAT,
        "features": json.dumps(to_dict(features)),
        "model": json.dumps(shape),
        "info": json.dumps(info),
    }
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EncoderError(f"{path}: cannot write ({exc.strerror or exc})") from None
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=header)
        tmp.replace(path)
    except Exception as exc:  # safetensors raises its own error type for I/O failures
        tmp.unlink(missing_ok=True)
        raise EncoderError(f"{path}: cannot write ({exc})") from None
    return path


def load_encoder(path: str | Path) -> Encoder:
    st = _safetensors()
    load_file, safe_open, SafetensorError = st.torch.load_file, st.safe_open, st.SafetensorError
    from ..files import FileRefused, check_regular

    path = Path(path)
    if not path.exists():
        raise EncoderError(f"{path}: no such encoder file")
    try:
        check_regular(path, "encoder file")  # a FIFO would hang safetensors' open
    except FileRefused as exc:
        raise EncoderError(str(exc)) from None
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise EncoderError(f"{path}: not a safetensors encoder ({exc})") from None
    if header.get("format") != FORMAT:
        raise EncoderError(f"{path}: not a speechlstm encoder (format {header.get('format')!r})")
    try:
        features = from_dict(FeatureConfig, json.loads(header["features"]), "features.")
        shape = json.loads(header["model"])
        model = dataclasses.replace(ModelConfig(), **{f: shape[f] for f in SHAPE_FIELDS})
        model.validate()
        features.validate()
        info = json.loads(header.get("info", "{}"))
    except (KeyError, TypeError, ValueError) as exc:
        raise EncoderError(f"{path}: header does not describe an encoder ({exc})") from None
    if not tensors or not all(k.startswith(PARTS) for k in tensors):
        raise EncoderError(f"{path}: holds tensors that are not an encoder's")
    if not all(v.is_floating_point() for v in tensors.values()):
        raise EncoderError(f"{path}: holds tensors that are not floating point")
    tensors = {k: v.float() for k, v in tensors.items()}  # fp16 or fp32 files alike
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Encoder(tensors, features, model, info, str(path), digest)


def apply_encoder(classifier: torch.nn.Module, encoder: Encoder) -> None:
    """Copy the encoder's tensors into `classifier` (its head stays as initialised)."""
    own = classifier.state_dict()
    missing = [k for k in own if k.startswith(PARTS) and own[k].is_floating_point()]
    missing = [k for k in missing if k not in encoder.tensors]
    wrong = [k for k, v in encoder.tensors.items() if k not in own or own[k].shape != v.shape]
    if missing or wrong:
        raise EncoderError(
            f"{encoder.path}: does not fit this model "
            f"({'missing ' + missing[0] if missing else 'unexpected or reshaped ' + wrong[0]})"
        )
    with torch.no_grad():
        for k, v in encoder.tensors.items():
            own[k].copy_(v)


def is_encoder_param(name: str) -> bool:
    """True for a classifier parameter name (or model name with "classifier.") of the encoder."""
    return name.removeprefix("classifier.").startswith(PARTS)


def _same_features(a: FeatureConfig, b: FeatureConfig) -> bool:
    # The window length is the decision span, not part of what the encoder learned.
    return dataclasses.replace(a, clip_ms=0) == dataclasses.replace(b, clip_ms=0)


def _same_shape(a: ModelConfig, b: ModelConfig) -> bool:
    return all(getattr(a, f) == getattr(b, f) for f in SHAPE_FIELDS)


def resolve(cfg, default_cfg=None, say=note):
    """The run's settings with the encoder decided, and the encoder (or None).

    train.encoder = "none": from scratch. A path: that encoder; the run's
    features and model shape must be its own or the defaults (then they are
    adopted), else an EncoderError. "auto" (the default): the shipped encoder
    when the package has one and the run's shape is its own or the defaults;
    otherwise from scratch, with a note saying why. The returned settings
    name the encoder's file and SHA-256, so a run says what it started from,
    and, when the run keeps the default detector, the detector tuned for
    models trained from an encoder (TRANSFER_DETECTOR), which export stores.
    `say` prints the notes (a no-op on torchrun's other ranks).
    """
    from ..config import RunConfig

    default_cfg = default_cfg or RunConfig()
    cfg, encoder = _resolve(cfg, default_cfg, say)
    if encoder is not None and cfg.detector == default_cfg.detector:
        cfg = dataclasses.replace(cfg, detector=transfer_detector(cfg.detector))
    return cfg, encoder


def transfer_detector(fallback):
    """The detector defaults tuned for models trained from an encoder, or `fallback`
    when the install has none. Only its label-independent settings: a custom
    model's labels are not the ones it was tuned on."""
    from ..config_text import load_detector_toml

    if not TRANSFER_DETECTOR.is_file():
        return fallback
    try:
        return dataclasses.replace(load_detector_toml(TRANSFER_DETECTOR), thresholds=())
    except ValueError as exc:
        note(f"{exc}: keeping the default detector")
        return fallback


def _resolve(cfg, default_cfg, say):
    choice = cfg.train.encoder
    if choice == NONE:
        return cfg, None
    if choice.startswith("sha256:"):
        # A finished run's config.toml used as --config: only the same file will do.
        if SHIPPED.is_file() and load_encoder(SHIPPED).sha256 == choice[7:]:
            choice = str(SHIPPED)
        else:
            raise EncoderError(
                f"train.encoder = {choice[:19]}...: a run's record of the encoder it started "
                "from, not one this install has; pass --encoder PATH or --from-scratch"
            )
    explicit = choice != AUTO
    path = Path(choice) if explicit else SHIPPED
    if not explicit and not path.is_file():
        say("no pretrained encoder in this install: training from scratch")
        return _named(cfg, NONE), None
    try:
        encoder = load_encoder(path)
    except EncoderError as exc:
        if explicit:
            raise
        say(f"the shipped encoder cannot be used ({exc}): training from scratch")
        return _named(cfg, NONE), None
    fits = _same_shape(cfg.model, encoder.model) and _same_features(cfg.features, encoder.features)
    untouched = _same_shape(cfg.model, default_cfg.model) and _same_features(
        cfg.features, default_cfg.features
    )
    if not fits and not untouched:
        differ = [
            f"model.{f} {getattr(cfg.model, f)} (encoder {getattr(encoder.model, f)})"
            for f in SHAPE_FIELDS
            if getattr(cfg.model, f) != getattr(encoder.model, f)
        ] + [
            f"features.{f.name} {getattr(cfg.features, f.name)} "
            f"(encoder {getattr(encoder.features, f.name)})"
            for f in dataclasses.fields(FeatureConfig)
            if f.name != "clip_ms"
            and getattr(cfg.features, f.name) != getattr(encoder.features, f.name)
        ]
        why = f"{', '.join(differ)} differ from the encoder {path}"
        if explicit:
            raise EncoderError(f"{why}; leave them at their defaults or train --from-scratch")
        say(f"{why}: training from scratch")
        return _named(cfg, NONE), None
    model = dataclasses.replace(cfg.model, **{f: getattr(encoder.model, f) for f in SHAPE_FIELDS})
    features = dataclasses.replace(encoder.features, clip_ms=cfg.features.clip_ms)
    cfg = dataclasses.replace(cfg, model=model, features=features)
    return _named(cfg, f"sha256:{encoder.sha256}"), encoder


def _named(cfg, value: str):
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, encoder=value))


def is_our_encoder(path: Path) -> bool:
    """An encoder file speechlstm wrote: export-encoder may replace it."""
    try:
        load_encoder(path)
    except (EncoderError, OSError, ValueError):
        return False
    return True


def export_encoder(ckpt_path: str | Path, out_path: str | Path, force: bool = False) -> Path:
    """Write the encoder of a trained run's checkpoint (its weights as validated:
    the moving average when the run kept one) to a .safetensors file; an existing
    file is replaced only if it is an encoder speechlstm wrote, or `force`."""
    from .checkpoint import load_model
    from .export import output_problem

    out_path = Path(out_path)
    problem = output_problem(out_path, Path(ckpt_path), ".safetensors", is_our_encoder, force)
    if problem:
        raise EncoderError(problem)
    model, ckpt, cfg = load_model(ckpt_path)
    summary = ckpt.summary
    info = {
        "trained_on": str(summary.get("source", ckpt.source)),
        "labels": list(ckpt.labels),
        "clips": summary.get("clips", {}),
        "best_val_accuracy": summary.get("best_val_accuracy"),
        "extra": list(cfg.data.extra),
    }
    return save_encoder(model.classifier, cfg.features, cfg.model, out_path, info)
