"""The embedding teacher: Google's speech embedding (embedding.py) plus a small BiLSTM head.

    int16 clip -> centred in 2 s -> mel -> 16 embedding frames (16, 96), cached
    -> BiLSTM (1 layer, bidirectional) -> mean over time -> Linear -> logits

Trained on the same data and splits as the student (`speechlstm train DATA
--frontend embedding`), it is a training-time teacher: `train.teacher` takes
its `teacher.safetensors` beside student checkpoints, and the student learns
from its temperature-softened posteriors on every training clip
(EmbeddingTeacher). Its weights are a few hundred kB in safetensors (no
pickle); the embedding itself stays in the installed openwakeword package.

The head trains on cached embeddings, so an epoch of 20,000 clips takes
seconds; the embedding pass (~20-50 ms a clip on one core) is paid once per
clip and kept in the cache for every later run.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from .. import metrics
from ..config import RunConfig
from ..data.bank import default_cache_dir
from ..data.prepare import Prepared
from ..progress import note, progress_bar
from .embedding import EMBED_DIM, EmbeddingCache, SpeechEmbedding, embed_cached

TEACHER_FILE = "teacher.safetensors"
FORMAT = "speechlstm-embedding-teacher/1"


@dataclass(frozen=True)
class TeacherConfig:
    """The head's shape and its optimisation: 64 units a direction, 1 layer (the
    issue's probe); dropout, label smoothing and 20 epochs chosen on validation
    speakers (docs/models/teacher.md; best epochs fell at 7-14 of 20-40)."""

    hidden_size: int = 64
    dropout: float = 0.3
    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    seed: int = 0

    @classmethod
    def from_run(cls, cfg: RunConfig, **overrides) -> TeacherConfig:
        base = cls(seed=cfg.train.seed)
        values = {k: v for k, v in overrides.items() if v is not None}
        return cls(**{**asdict(base), **values})


class EmbeddingHead(nn.Module):
    """(B, 16, 96) embedding frames -> (B, n_classes) logits."""

    def __init__(self, n_classes: int, hidden_size: int = 64, dropout: float = 0.2):
        super().__init__()
        self.input_norm = nn.LayerNorm(EMBED_DIM)
        self.rnn = nn.LSTM(EMBED_DIM, hidden_size, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden_size, n_classes)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.input_norm(frames))  # (B, T, 2H)
        return self.head(self.dropout(h.mean(dim=1)))  # (B, C)


def embed_split(
    audio: np.ndarray, embedder: SpeechEmbedding, cache: EmbeddingCache | None, name: str
) -> np.ndarray:
    with progress_bar(f"embedding {name}", len(audio), unit="clips") as advance:
        return embed_cached(embedder, audio, cache, progress=advance)


def embedding_cache(cache_dir: Path | None) -> EmbeddingCache | None:
    """The embedding cache under the decoded-audio cache (None: no caching)."""
    return None if cache_dir is None else EmbeddingCache(Path(cache_dir) / "embedding")


@torch.no_grad()
def head_logits(head: EmbeddingHead, frames: np.ndarray, batch_size: int = 512) -> np.ndarray:
    head.eval()
    out = [
        head(torch.from_numpy(frames[s : s + batch_size])).numpy()
        for s in range(0, len(frames), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, head.head.out_features), np.float32)


def train_teacher(
    data: Prepared,
    out_dir: Path,
    tcfg: TeacherConfig,
    cache_dir: Path | None = None,
    embedder: SpeechEmbedding | None = None,
) -> dict:
    """Train the head on the embedded splits; write teacher.safetensors and metrics.json."""
    from .sampling import balanced_order  # the student's sampler, shared

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    embedder = embedder or SpeechEmbedding(threads=torch.get_num_threads())
    cache = embedding_cache(cache_dir)
    frames = {n: embed_split(s.audio, embedder, cache, n) for n, s in data.splits.items()}
    labels = list(data.task.labels)
    torch.manual_seed(tcfg.seed)
    head = EmbeddingHead(len(labels), tcfg.hidden_size, tcfg.dropout)
    opt = torch.optim.AdamW(head.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    targets = data.splits["train"].targets
    steps = max(1, len(targets) // tcfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, tcfg.lr, total_steps=steps * tcfg.epochs)
    x_train = torch.from_numpy(frames["train"])
    y_train = torch.from_numpy(targets)
    val = data.splits["validation"]
    best_acc, best_epoch, best_state, history = -1.0, 0, None, []
    started = time.perf_counter()
    for epoch in range(tcfg.epochs):
        head.train()
        order = balanced_order(
            targets, steps * tcfg.batch_size, np.random.default_rng([tcfg.seed, epoch])
        )
        loss_sum = 0.0
        for k in range(steps):
            idx = torch.from_numpy(order[k * tcfg.batch_size : (k + 1) * tcfg.batch_size])
            logits = head(x_train[idx])
            loss = F.cross_entropy(logits, y_train[idx], label_smoothing=tcfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach())
        val_acc = float((head_logits(head, frames["validation"]).argmax(1) == val.targets).mean())
        history.append(
            {"epoch": epoch + 1, "train_loss": loss_sum / steps, "val_accuracy": val_acc}
        )
        star = val_acc > best_acc
        if star:
            best_acc, best_epoch = val_acc, epoch + 1
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
        note(
            f"teacher epoch {epoch + 1}/{tcfg.epochs}: loss {loss_sum / steps:.3f} "
            f"| val acc {val_acc:.3f}{' *' if star else ''}"
        )
    head.load_state_dict(best_state)
    test = data.splits["test"]
    preds = head_logits(head, frames["test"]).argmax(1)
    cm = metrics.confusion_matrix(test.targets, preds, len(labels))
    report = {
        "frontend": "embedding",
        "labels": labels,
        "teacher": asdict(tcfg),
        "best_epoch": best_epoch,
        "best_val_accuracy": best_acc,
        "test_accuracy": metrics.accuracy(cm),
        "test_balanced_accuracy": metrics.balanced_accuracy(cm),
        "test_clips": len(test.targets),
        "per_class": metrics.per_class(cm, labels),
        "confusion_matrix": cm.tolist(),
        "clips": data.counts(),
        "train_seconds": round(time.perf_counter() - started, 1),
        "history": history,
        "embedding_digest": embedder.digest,
    }
    save_teacher(head, labels, tcfg, embedder.digest, report, out_dir / TEACHER_FILE)
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2))
    return report


def save_teacher(head, labels, tcfg, digest, report, path: Path) -> None:
    meta = {
        "format": FORMAT,
        "labels": json.dumps(labels),
        "teacher": json.dumps(asdict(tcfg)),
        "embedding_digest": digest,
        "best_val_accuracy": f"{report['best_val_accuracy']:.4f}",
        "test_accuracy": f"{report['test_accuracy']:.4f}",
    }
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(tmp), metadata=meta)
    tmp.replace(path)


def is_teacher_file(path: str | Path) -> bool:
    return str(path).endswith(".safetensors")


class EmbeddingTeacher:
    """A trained teacher file, ready to give soft targets on clips."""

    def __init__(self, path: str | Path, cache_dir: Path | None = None):
        from safetensors import SafetensorError, safe_open

        self.path = Path(path)
        try:
            with safe_open(str(self.path), "pt") as f:
                meta = f.metadata() or {}
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
            raise ValueError(
                f"teacher {self.path}: not a readable safetensors file ({exc})"
            ) from None
        if meta.get("format") != FORMAT:
            raise ValueError(
                f"teacher {self.path}: not an embedding teacher "
                f"(`speechlstm train --frontend embedding` writes {TEACHER_FILE})"
            )
        self.labels = json.loads(meta["labels"])
        self.cfg = TeacherConfig(**json.loads(meta["teacher"]))
        self.head = EmbeddingHead(len(self.labels), self.cfg.hidden_size, self.cfg.dropout)
        self.head.load_state_dict(load_file(str(self.path)))
        self.head.eval()
        self.cache = embedding_cache(cache_dir if cache_dir is not None else default_cache_dir())
        self.embedder = SpeechEmbedding(threads=torch.get_num_threads())
        if self.embedder.digest != meta.get("embedding_digest"):
            raise ValueError(
                f"teacher {self.path}: trained on other embedding model files than the "
                "installed ones"
            )

    def logits(self, audio_int16: np.ndarray, name: str = "training clips") -> np.ndarray:
        """(N, C) logits on (N, S) int16 clips (embeddings from the cache when there)."""
        return head_logits(self.head, embed_split(audio_int16, self.embedder, self.cache, name))


def run_teacher(
    source: str | Path,
    out_dir: str | Path,
    cfg: RunConfig,
    tcfg: TeacherConfig,
    noise_dir: str | Path | None = None,
    cache_dir: Path | None = None,
    show_progress: bool | None = None,
) -> dict:
    """`speechlstm train --frontend embedding`: prepare the data as a student run
    would (same task, splits and --add sources), then train the teacher's head."""
    from ..settings import save_toml
    from .run import prepare_run_data

    out_dir = Path(out_dir)
    if (out_dir / TEACHER_FILE).exists():
        raise ValueError(f"{out_dir} already holds a teacher; use another --out")
    data = prepare_run_data(source, cfg, noise_dir, cache_dir, show_progress)
    if len(data.splits["train"].targets) == 0:
        raise ValueError(f"{source}: no training clips for this task")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_toml(cfg, out_dir / "config.toml")
    return train_teacher(data, out_dir, tcfg, cache_dir)
