"""Where Google's speech embedding lives: the openwakeword 0.4.0 wheel's model files.

Found, not imported (importing openwakeword pulls in its own model loading and
dependencies, none of which speechlstm needs). `SPEECHLSTM_EMBEDDING_DIR`
points elsewhere (the tests' stand-in). Used by the training side (the
embedding model and feature distillation) and by the inference side (the shipped
verifier, composed at load time: shipped_verifier.py). Standard library only.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

MEL_FILE = "melspectrogram.onnx"
EMBED_FILE = "embedding_model.onnx"
PACKAGE = "openwakeword"
PACKAGE_PIN = "openwakeword==0.4.0"


class EmbeddingUnavailable(RuntimeError):
    """The embedding's model files are not installed."""


def find_model_files() -> tuple[Path, Path]:
    """The installed mel and embedding ONNX files; EmbeddingUnavailable naming the
    install to run when they are not there."""
    override = os.environ.get("SPEECHLSTM_EMBEDDING_DIR")
    if override:
        folder = Path(override)
    else:
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or spec.origin is None:
            raise EmbeddingUnavailable(
                f"the speech embedding needs {PACKAGE_PIN} (its wheel bundles the model "
                f"files): pip install 'speechlstm[embedding]' (or '{PACKAGE_PIN}')"
            )
        folder = Path(spec.origin).parent / "resources" / "models"
    mel, emb = folder / MEL_FILE, folder / EMBED_FILE
    for path in (mel, emb):
        if not path.is_file():
            raise EmbeddingUnavailable(
                f"{path} is missing: only {PACKAGE_PIN} bundles the embedding's model files "
                "(later releases download them at run time): pip install "
                "'speechlstm[embedding]'"
            )
    return mel, emb


def files_digest(*paths: Path) -> str:
    """sha256 over the model files: part of every cache key."""
    h = hashlib.sha256()
    for path in paths:
        h.update(path.read_bytes())
    return h.hexdigest()
