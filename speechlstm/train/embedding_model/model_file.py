"""The embedding model's file: its head's weights in safetensors (no pickle; a
few hundred kB), with its labels, settings and the embedding files' digest in
the metadata. The embedding itself stays in the installed openwakeword package.

The name (teacher.safetensors) and the format tag are the file's since its
first release, kept so that every model and every `train.teacher` setting
written before still reads: distilling from it is also what it was first for.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ...config import EmbeddingConfig
from ...data.bank import default_cache_dir
from ...files import check_regular, temp_beside
from ...labels import check_labels
from ..embedding import SpeechEmbedding
from .frames import embed_split, embedding_cache
from .head import build_head, head_logits

MODEL_FILE = "teacher.safetensors"
FORMAT = "speechlstm-embedding-teacher/1"
# The metadata key of the settings, and the order of their fields: the file's own.
SETTINGS_KEY = "teacher"


def settings_record(ecfg: EmbeddingConfig, seed: int) -> dict:
    """The settings a model file records: [embedding]'s, with the run's seed
    where the file has always kept it (after label_smoothing)."""
    record = {}
    for name, value in asdict(ecfg).items():
        if name == "copies":
            record["seed"] = seed
        record[name] = value
    return record


def is_embedding_model_file(path: str | Path) -> bool:
    return str(path).endswith(".safetensors")


def save_embedding_model(
    head: torch.nn.Module, labels: list[str], record: dict, digest: str, report: dict, path: Path
) -> None:
    meta = {
        "format": FORMAT,
        "labels": json.dumps(labels),
        SETTINGS_KEY: json.dumps(record),
        "embedding_digest": digest,
        "best_val_accuracy": f"{report['best_val_accuracy']:.4f}",
        "heads": str(record["heads"]),
        "test_accuracy": f"{report['test_accuracy']:.4f}",
    }
    # An unpredictable temporary name beside it (a planted link at a fixed one
    # would be written through), renamed when whole.
    fd, tmp = temp_beside(path)
    os.close(fd)
    try:
        tensors = {k: v.contiguous() for k, v in head.state_dict().items()}
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        reason = getattr(exc, "strerror", None) or (str(exc).strip().splitlines() or ["?"])[0]
        raise OSError(f"{path}: cannot write the embedding model ({reason[:200]})") from None


class EmbeddingModel:
    """A trained embedding-model file, ready to give logits on clips."""

    def __init__(self, path: str | Path, cache_dir: Path | None = None):
        self.path = Path(path)
        meta = self._metadata()
        self.labels, self.cfg, self.seed = self._settings(meta)
        # The head's shapes first, on the meta device (nothing allocated),
        # compared with the tensors the file holds: a tampered file gets one
        # line, and the head built after holds no more than the file's bytes.
        with torch.device("meta"):
            self._check_tensors(build_head(len(self.labels), self.cfg))
        self.head = build_head(len(self.labels), self.cfg)
        self.head.load_state_dict(load_file(str(self.path)))
        self.head.eval()
        self.cache = embedding_cache(cache_dir if cache_dir is not None else default_cache_dir())
        self.embedder = SpeechEmbedding(threads=torch.get_num_threads())
        if self.embedder.digest != meta.get("embedding_digest"):
            raise ValueError(
                f"embedding model {self.path}: trained on other embedding model files than "
                "the installed ones"
            )

    def _metadata(self) -> dict:
        from safetensors import SafetensorError, safe_open

        # safetensors opens and maps the file: a FIFO would hang it.
        check_regular(self.path, "embedding model file")
        try:
            with safe_open(str(self.path), "pt") as f:
                meta = f.metadata() or {}
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
            raise ValueError(
                f"embedding model {self.path}: not a readable safetensors file ({exc})"
            ) from None
        if meta.get("format") != FORMAT:
            raise ValueError(
                f"{self.path}: not an embedding model "
                f"(`speechlstm train --frontend embedding` writes {MODEL_FILE})"
            )
        return meta

    def _settings(self, meta: dict) -> tuple[list[str], EmbeddingConfig, int]:
        """The labels, settings and seed the metadata records, each checked."""
        try:
            labels = json.loads(meta["labels"])
            record = json.loads(meta[SETTINGS_KEY])
        except KeyError as exc:
            raise ValueError(f"{self.path}: its metadata lacks {exc}") from None
        except ValueError:
            raise ValueError(f"{self.path}: its metadata is not JSON") from None
        if not isinstance(labels, list) or not labels or not isinstance(record, dict):
            raise ValueError(f"{self.path}: its labels or settings are not what it should hold")
        check_labels(labels, f"{self.path}: labels")
        known = {f.name for f in fields(EmbeddingConfig)}
        unknown = sorted(set(record) - known - {"seed"})
        if unknown:
            raise ValueError(f"{self.path}: unknown settings {', '.join(map(repr, unknown[:5]))}")
        try:
            cfg = EmbeddingConfig(**{k: v for k, v in record.items() if k in known})
            cfg.validate()
            seed = int(record.get("seed", 0))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.path}: its settings are not usable ({exc})") from None
        return labels, cfg, seed

    def _check_tensors(self, head: torch.nn.Module) -> None:
        """The file holds exactly `head`'s tensors, each of its shape."""
        from safetensors import safe_open

        expected = {k: tuple(v.shape) for k, v in head.state_dict().items()}
        with safe_open(str(self.path), "pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        for what, names in (("lacks", missing), ("holds unknown", extra), ("has resized", wrong)):
            if names:
                raise ValueError(
                    f"{self.path}: {what} tensors {', '.join(names[:3])}"
                    f"{' ...' if len(names) > 3 else ''} (not the head its settings describe)"
                )

    def logits(self, audio_int16: np.ndarray, name: str = "training clips") -> np.ndarray:
        """(N, C) logits on (N, S) int16 clips (embeddings from the cache when there)."""
        return head_logits(self.head, embed_split(audio_int16, self.embedder, self.cache, name))
