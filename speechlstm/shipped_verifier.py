"""The shipped verifier (`live --verifier sc12`): our head, composed at load time
with the speech embedding from the installed openwakeword 0.4.0 wheel.

`make verifier` builds models/sc12.verifier.onnx: the embedding (openWakeWord's
melspectrogram.onnx and embedding_model.onnx, prefixed `mel/` and `emb/`), our
glue and the BiLSTM head it trained, in one graph. Its embedding weights are
licensed for non-commercial use only, so they are never copied into the
repository or the wheel: `strip` removes every `mel/` and `emb/` initializer
and records, in the model's metadata, the sha256 of the two files they came
from. What ships (speechlstm/assets/sc12.verifier.head.onnx) is the graph,
our glue and our head's weights.

At load time `verifier_path("sc12")` puts the initializers back from the
installed files (checked against the recorded sha256, so a different
embedding is refused, not silently mixed) and writes the composed model once
to a cache folder ($SPEECHLSTM_CACHE, else $XDG_CACHE_HOME/speechlstm, else
~/.cache/speechlstm), keyed by the digests. The composed file is the built one,
tensor for tensor: the same probabilities (tests/test_shipped_verifier.py).
The pair's own first stage ships too: `sc12_mined`, the default recipe
retrained with two rounds of its mined false alarms (scripts/pair_first_stage.sh),
which `--verifier sc12` runs unless a model is given; behind the verifier it
matches more commands than the default model at the same false alarms
(docs/streaming.md). Its settings tuned for the pair ship beside the head
(sc12.verifier.detector.toml), with the verifier threshold they were tuned at.
numpy + onnx only, no torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .embedding_files import EmbeddingUnavailable, find_model_files
from .runtime import ASSETS_DIR, ModelError

STRIP_KEY = "speechlstm.stripped"  # metadata: what strip removed and from where
PREFIXES = {"mel/": "mel", "emb/": "emb"}  # initializer prefix -> source file


@dataclass(frozen=True)
class ShippedVerifier:
    head: str  # the stripped graph, in the package's assets
    detector: str  # the first stage's [detector] settings for the pair
    threshold: float  # the verifier threshold the pair was tuned at
    first_stage: str  # the shipped model the pair's settings were tuned with


SHIPPED_VERIFIERS = {
    "sc12": ShippedVerifier(
        "sc12.verifier.head.onnx", "sc12.verifier.detector.toml", 0.8, "sc12_mined"
    )
}


class VerifierUnavailable(ModelError):
    """A shipped verifier that cannot be composed here; the message says what to install."""


def is_shipped(spec) -> bool:
    return spec is not None and str(spec) in SHIPPED_VERIFIERS and not Path(spec).exists()


def first_stage(spec, model):
    """The first stage to run before verifier `spec`: `model` when one is given,
    else a shipped verifier's own first stage (a shipped model's name: the one
    its pair settings were tuned with), else None (the default model)."""
    if model is not None or not is_shipped(spec):
        return model
    return SHIPPED_VERIFIERS[str(spec)].first_stage


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def strip(model_path: str | Path, out_path: str | Path) -> dict:
    """`model_path` (an embedding-front-end model) without the embedding's weights,
    written to `out_path`; returns what was removed (also in its metadata)."""
    import onnx

    mel_path, emb_path = find_model_files()
    model = onnx.load(str(model_path))
    removed: dict[str, list[str]] = {"mel": [], "emb": []}
    kept = []
    for tensor in model.graph.initializer:
        source = next((src for pre, src in PREFIXES.items() if tensor.name.startswith(pre)), None)
        if source is None:
            kept.append(tensor)
        else:
            removed[source].append(tensor.name)
    if not removed["mel"] or not removed["emb"]:
        raise ModelError(
            f"{model_path}: not an embedding-front-end model (no mel/ or emb/ weights)"
        )
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    record = {
        "mel": {"file": mel_path.name, "sha256": _sha256(mel_path), "tensors": removed["mel"]},
        "emb": {"file": emb_path.name, "sha256": _sha256(emb_path), "tensors": removed["emb"]},
    }
    entry = model.metadata_props.add()
    entry.key, entry.value = STRIP_KEY, json.dumps(record)
    out_path = Path(out_path)
    from .files import write_atomic

    write_atomic(out_path, model.SerializeToString())
    return record


def compose(head_path: str | Path) -> bytes:
    """The whole verifier: the stripped graph at `head_path` with the embedding's
    weights put back from the installed files. VerifierUnavailable when they are
    missing or are not the files the head was built with."""
    import onnx

    model = onnx.load(str(head_path))
    props = {p.key: p.value for p in model.metadata_props}
    if STRIP_KEY not in props:
        raise ModelError(f"{head_path}: not a stripped verifier (no {STRIP_KEY} metadata)")
    record = json.loads(props[STRIP_KEY])
    try:
        files = dict(zip(("mel", "emb"), find_model_files()))
    except EmbeddingUnavailable as exc:
        raise VerifierUnavailable(
            f"the shipped verifier needs the speech embedding: {exc}"
        ) from None
    for source, path in files.items():
        if _sha256(path) != record[source]["sha256"]:
            raise VerifierUnavailable(
                f"{path}: not the {record[source]['file']} the verifier was built with "
                "(sha256 differs); install openwakeword==0.4.0"
            )
    prefix = {src: pre for pre, src in PREFIXES.items()}
    for source, path in files.items():
        tensors = {t.name: t for t in onnx.load(str(path)).graph.initializer}
        for name in record[source]["tensors"]:
            original = name[len(prefix[source]) :]
            if original not in tensors:
                raise VerifierUnavailable(f"{path}: has no tensor {original!r}")
            tensor = onnx.TensorProto()
            tensor.CopyFrom(tensors[original])
            tensor.name = name
            model.graph.initializer.append(tensor)
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != STRIP_KEY]
    del model.metadata_props[:]
    for key, value in kept:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def cache_dir() -> Path:
    if os.environ.get("SPEECHLSTM_CACHE"):
        return Path(os.environ["SPEECHLSTM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "speechlstm"


def verifier_path(name: str) -> Path:
    """The composed shipped verifier `name`, from the cache or composed now."""
    shipped = SHIPPED_VERIFIERS[name]
    head = ASSETS_DIR / shipped.head
    if not head.is_file():
        raise VerifierUnavailable(f"{name}: this install does not ship its verifier ({head})")
    try:
        mel, emb = find_model_files()
    except EmbeddingUnavailable as exc:
        raise VerifierUnavailable(f"--verifier {name} needs the speech embedding: {exc}") from None
    key = hashlib.sha256(head.read_bytes() + _sha256(mel).encode() + _sha256(emb).encode())
    target = cache_dir() / f"{name}.verifier-{key.hexdigest()[:16]}.onnx"
    if target.is_file():
        return target
    data = compose(head)
    from .files import write_atomic

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, data)
    except OSError as exc:
        raise VerifierUnavailable(
            f"{target.parent}: cannot write the composed verifier ({exc.strerror or exc}); "
            "set SPEECHLSTM_CACHE to a writable folder"
        ) from None
    return target


def resolve_verifier(spec) -> Path:
    """A verifier model file: a shipped verifier's name (composed), else a path or a
    shipped model's name (runtime.resolve_model)."""
    if is_shipped(spec):
        return verifier_path(str(spec))
    from .runtime import resolve_model

    return resolve_model(spec)


def pair_settings(spec):
    """(first-stage DetectorConfig, verifier threshold) tuned for a shipped verifier;
    (None, None) for any other."""
    if not is_shipped(spec):
        return None, None
    from .config_text import load_detector_toml

    shipped = SHIPPED_VERIFIERS[str(spec)]
    path = ASSETS_DIR / shipped.detector
    return (load_detector_toml(path) if path.is_file() else None), shipped.threshold
