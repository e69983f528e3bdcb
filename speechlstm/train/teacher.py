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

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from .. import metrics
from ..audio import float_to_int16, int16_to_float
from ..config import AugmentConfig, FeatureConfig, RunConfig
from ..data.bank import default_cache_dir
from ..data.prepare import Prepared, SplitData
from ..files import temp_beside
from ..progress import note, progress_bar
from .embedding import EMBED_DIM, N_FRAMES, EmbeddingCache, SpeechEmbedding, embed_cached

TEACHER_FILE = "teacher.safetensors"
FORMAT = "speechlstm-embedding-teacher/1"


# The augmentation of the embedding copies when a run names none (no --config,
# no --set augment.*, so [augment] is the library's default): the noise level,
# gain and rooms every measured embedding run had from its recipe (sc12 and
# the synthetic preset), plus speed perturbation, which lifted custom words
# from synthesized speech by about a point (two-seed means: +0.8 validation,
# +0.9 test; docs/models/teacher.md).
COPIES_AUGMENT = {"noise_volume_max": 0.15, "gain_db": 10.0, "reverb_prob": 0.5, "speed": 0.1}


def copies_augment(cfg: RunConfig) -> RunConfig:
    """`cfg` with COPIES_AUGMENT where its [augment] is the library's default;
    a run that sets any augmentation keeps its own."""
    if cfg.augment != AugmentConfig():
        return cfg
    return dataclasses.replace(cfg, augment=dataclasses.replace(cfg.augment, **COPIES_AUGMENT))


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
    # Augmented copies of each training clip besides the clip (train.embedding_copies).
    copies: int = 0
    # Heads averaged (train.embedding_heads): head i has seed + i and its own copies.
    heads: int = 1

    @classmethod
    def from_run(cls, cfg: RunConfig, **overrides) -> TeacherConfig:
        base = cls(
            seed=cfg.train.seed,
            copies=cfg.train.embedding_copies,
            heads=cfg.train.embedding_heads,
        )
        values = {k: v for k, v in overrides.items() if v is not None}
        return cls(**{**asdict(base), **values})


class EmbeddingHead(nn.Module):
    """(B, 16, 96) embedding frames -> (B, n_classes) logits."""

    def __init__(self, n_classes: int, hidden_size: int = 64, dropout: float = 0.2):
        super().__init__()
        self.n_classes = n_classes
        self.input_norm = nn.LayerNorm(EMBED_DIM)
        self.rnn = nn.LSTM(EMBED_DIM, hidden_size, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden_size, n_classes)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.input_norm(frames))  # (B, T, 2H)
        return self.head(self.dropout(h.mean(dim=1)))  # (B, C)


class HeadEnsemble(nn.Module):
    """Heads whose probabilities are averaged; returns log-probabilities, so a
    softmax of the output is that average (what every caller of a head does)."""

    def __init__(self, heads: list[EmbeddingHead]):
        super().__init__()
        self.members = nn.ModuleList(heads)
        self.n_classes = heads[0].n_classes

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([F.softmax(m(frames), -1) for m in self.members]).mean(0)
        return torch.log(probs.clamp_min(1e-12))


def build_head(n_classes: int, tcfg: TeacherConfig) -> nn.Module:
    """The head a teacher file of `tcfg` holds: one EmbeddingHead, or an ensemble."""
    heads = [EmbeddingHead(n_classes, tcfg.hidden_size, tcfg.dropout) for _ in range(tcfg.heads)]
    return heads[0] if tcfg.heads == 1 else HeadEnsemble(heads)


def embed_split(
    audio: np.ndarray,
    embedder: SpeechEmbedding,
    cache: EmbeddingCache | None,
    name: str,
    show_progress: bool | None = None,
) -> np.ndarray:
    bar = progress_bar(f"embedding {name}", len(audio), enabled=show_progress, unit="clips")
    with bar as advance:
        return embed_cached(embedder, audio, cache, progress=advance)


def augmented_chunks(
    audio: np.ndarray,
    noise: np.ndarray,
    augment: AugmentConfig,
    features: FeatureConfig,
    copy: int,
    seed: int,
    chunk: int = 4096,
    batch_size: int = 256,
):
    """Copy number `copy` (from 1) of (N, S) int16 clips, augmented with the
    student's waveform stage (augment.py), yielded `chunk` clips at a time so a
    large dataset's copies never sit in memory whole. The generator is seeded by
    (seed, copy) and drawn batch by batch in order, so the same run draws the
    same copies and finds their embeddings in the cache."""
    from .augment import WaveAugment

    wave_augment = WaveAugment(augment, features, torch.from_numpy(noise))
    gen = torch.Generator().manual_seed(seed * 1000 + copy)
    chunk = max(batch_size, chunk - chunk % batch_size)  # whole batches: same draws
    for lo in range(0, len(audio), chunk):
        rows = []
        for start in range(lo, min(lo + chunk, len(audio)), batch_size):
            wave = torch.from_numpy(int16_to_float(audio[start : start + batch_size]))
            with torch.no_grad():
                rows.append(float_to_int16(wave_augment(wave, gen).numpy()))
        yield np.concatenate(rows)


def embed_copies(
    audio: np.ndarray,
    noise: np.ndarray,
    augment: AugmentConfig,
    features: FeatureConfig,
    copies: int,
    seed: int,
    embedder: SpeechEmbedding,
    cache: EmbeddingCache | None,
    show_progress: bool | None = None,
) -> list[np.ndarray]:
    """The (N, 16, 96) embedding frames of each augmented copy, from the cache where
    there; only the frames are kept (a sixth of the audio's memory)."""
    out = []
    for copy in range(1, copies + 1):
        parts = []
        desc = f"embedding copy {copy}/{copies}"
        with progress_bar(desc, len(audio), enabled=show_progress, unit="clips") as advance:
            for part in augmented_chunks(audio, noise, augment, features, copy, seed):
                parts.append(embed_cached(embedder, part, cache, progress=advance))
        empty = np.zeros((0, N_FRAMES, EMBED_DIM), np.float32)
        out.append(np.concatenate(parts) if parts else empty)
    return out


def embedding_cache(cache_dir: Path | None) -> EmbeddingCache | None:
    """The embedding cache under the decoded-audio cache (None: no caching)."""
    return None if cache_dir is None else EmbeddingCache(Path(cache_dir) / "embedding")


@torch.no_grad()
def head_logits(head: nn.Module, frames: np.ndarray, batch_size: int = 512) -> np.ndarray:
    head.eval()
    out = [
        head(torch.from_numpy(frames[s : s + batch_size])).numpy()
        for s in range(0, len(frames), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, head.n_classes), np.float32)


def train_teacher(
    data: Prepared,
    out_dir: Path,
    tcfg: TeacherConfig,
    cache_dir: Path | None = None,
    embedder: SpeechEmbedding | None = None,
    augment: AugmentConfig | None = None,
    features: FeatureConfig | None = None,
    extra_share: float = 0.0,
    show_progress: bool | None = None,
) -> dict:
    """Train the head on the embedded splits (plus `tcfg.copies` augmented copies
    of the training clips, drawn with `augment`); write teacher.safetensors and
    metrics.json. `extra_share` draws the `--add` sources at that share of each
    class, as the student's sampler does (data.extra_share). With `tcfg.heads`
    > 1, each head has its own seed and copies, and the file holds them all."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    embedder = embedder or SpeechEmbedding(threads=torch.get_num_threads())
    cache = embedding_cache(cache_dir)
    frames = {
        n: embed_split(s.audio, embedder, cache, n, show_progress) for n, s in data.splits.items()
    }
    if tcfg.copies > 0 and (augment is None or features is None):
        raise ValueError("augmented copies need the run's [augment] and [features]")

    def draw_copies(seed: int) -> list[np.ndarray]:
        audio = data.splits["train"].audio
        return embed_copies(
            audio, data.noise, augment, features, tcfg.copies, seed, embedder, cache, show_progress
        )

    labels = list(data.task.labels)
    started = time.perf_counter()
    members, history, fit = _fit_heads(data, frames, tcfg, extra_share, draw_copies)
    val_targets = data.splits["validation"].targets
    head, best_acc = _join_heads(members, fit, frames["validation"], val_targets)
    report = {
        "frontend": "embedding",
        "labels": labels,
        "teacher": asdict(tcfg),
        "best_epoch": fit["best_epoch"],  # with several heads the last's; each is in the history
        "best_val_accuracy": best_acc,
        **_test_metrics(head, frames["test"], data.splits["test"].targets, labels),
        "clips": data.counts(),
        "train_steps_per_epoch": fit["steps"],
        "heads": tcfg.heads,
        "train_seconds": round(time.perf_counter() - started, 1),
        "history": history,
        "embedding_digest": embedder.digest,
    }
    save_teacher(head, labels, tcfg, embedder.digest, report, out_dir / TEACHER_FILE)
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2))
    return report


def _fit_heads(
    data: Prepared,
    frames: dict[str, np.ndarray],
    tcfg: TeacherConfig,
    extra_share: float,
    draw_copies: Callable[[int], list[np.ndarray]],
) -> tuple[list[nn.Module], list[dict], dict]:
    """Train `tcfg.heads` heads, head i with seed `tcfg.seed + i` and its own
    copies (`draw_copies(seed)`); returns the heads, their epochs' history (each
    row with its head's number) and the last head's fit."""
    train_split, val = data.splits["train"], data.splits["validation"]
    n_classes = len(data.task.labels)
    members, history = [], []
    for i in range(tcfg.heads):
        seed = tcfg.seed + i
        copies = draw_copies(seed) if tcfg.copies > 0 else None
        train, targets, from_extra = _training_rows(train_split, frames["train"], copies)
        name = "" if tcfg.heads == 1 else f" head {i + 1}/{tcfg.heads}"
        head, fit = _fit_head(
            train, targets, from_extra, frames["validation"], val.targets, n_classes,
            dataclasses.replace(tcfg, seed=seed), extra_share, name,
        )  # fmt: skip
        members.append(head)
        history += [{**h, "head": i + 1} for h in fit["history"]]
        del train, targets, copies  # before the next head draws its own
    return members, history, fit


def _training_rows(
    split: SplitData, frames: np.ndarray, copies: list[np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A head's training rows: the split's frames, then each augmented copy's,
    with the targets and the `--add` flags repeated to match."""
    if copies is None:
        return frames, split.targets, split.from_extra
    repeat = len(copies) + 1
    from_extra = None if split.from_extra is None else np.tile(split.from_extra, repeat)
    return np.concatenate([frames, *copies]), np.tile(split.targets, repeat), from_extra


def _join_heads(
    members: list[nn.Module], fit: dict, val_frames: np.ndarray, val_targets: np.ndarray
) -> tuple[nn.Module, float]:
    """One head as it is, with its best validation accuracy; several as one
    ensemble, with the ensemble's validation accuracy."""
    if len(members) == 1:
        return members[0], fit["best_val_accuracy"]
    head = HeadEnsemble(members)
    pred = head_logits(head, val_frames).argmax(1)
    best_acc = float((pred == val_targets).mean())
    note(f"teacher: {len(members)} heads together, val acc {best_acc:.3f}")
    return head, best_acc


def _test_metrics(
    head: nn.Module, test_frames: np.ndarray, test_targets: np.ndarray, labels: list[str]
) -> dict:
    """The head's figures on the test split, as metrics.json records them."""
    preds = head_logits(head, test_frames).argmax(1)
    cm = metrics.confusion_matrix(test_targets, preds, len(labels))
    return {
        "test_accuracy": metrics.accuracy(cm),
        "test_balanced_accuracy": metrics.balanced_accuracy(cm),
        "test_clips": len(test_targets),
        "per_class": metrics.per_class(cm, labels),
        "confusion_matrix": cm.tolist(),
    }


def _fit_head(
    x: np.ndarray,
    y: np.ndarray,
    from_extra: np.ndarray | None,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    tcfg: TeacherConfig,
    extra_share: float,
    name: str = "",
) -> tuple[EmbeddingHead, dict]:
    """One head trained on embedding frames (N, 16, 96), its best epoch on
    validation kept; returns it and {history, best_val_accuracy, best_epoch, steps}."""
    from .sampling import balanced_order  # the student's sampler, shared

    torch.manual_seed(tcfg.seed)
    head = EmbeddingHead(n_classes, tcfg.hidden_size, tcfg.dropout)
    opt = torch.optim.AdamW(head.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    steps = max(1, len(y) // tcfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, tcfg.lr, total_steps=steps * tcfg.epochs)
    x_train, y_train = torch.from_numpy(x), torch.from_numpy(y)
    best_acc, best_epoch, best_state, history = -1.0, 0, None, []
    for epoch in range(tcfg.epochs):
        head.train()
        order = balanced_order(
            y, steps * tcfg.batch_size, np.random.default_rng([tcfg.seed, epoch]),
            from_extra, extra_share,
        )  # fmt: skip
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
        val_acc = float((head_logits(head, x_val).argmax(1) == y_val).mean())
        history.append(
            {"epoch": epoch + 1, "train_loss": loss_sum / steps, "val_accuracy": val_acc}
        )
        star = val_acc > best_acc
        if star:
            best_acc, best_epoch = val_acc, epoch + 1
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
        note(
            f"teacher{name} epoch {epoch + 1}/{tcfg.epochs}: loss {loss_sum / steps:.3f} "
            f"| val acc {val_acc:.3f}{' *' if star else ''}"
        )
    head.load_state_dict(best_state)
    fit = {"history": history, "best_val_accuracy": best_acc, "best_epoch": best_epoch}
    return head, {**fit, "steps": steps}


def save_teacher(head, labels, tcfg, digest, report, path: Path) -> None:
    meta = {
        "format": FORMAT,
        "labels": json.dumps(labels),
        "teacher": json.dumps(asdict(tcfg)),
        "embedding_digest": digest,
        "best_val_accuracy": f"{report['best_val_accuracy']:.4f}",
        "heads": str(tcfg.heads),
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
        raise OSError(f"{path}: cannot write the teacher ({reason[:200]})") from None


def is_teacher_file(path: str | Path) -> bool:
    return str(path).endswith(".safetensors")


class EmbeddingTeacher:
    """A trained teacher file, ready to give soft targets on clips."""

    def __init__(self, path: str | Path, cache_dir: Path | None = None):
        from safetensors import SafetensorError, safe_open

        from ..files import check_regular

        self.path = Path(path)
        # safetensors opens and maps the file: a FIFO would hang it.
        check_regular(self.path, "teacher file")
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
        self.head = build_head(len(self.labels), self.cfg)
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
    from ..config_text import save_toml
    from .run import prepare_run_data

    out_dir = Path(out_dir)
    if (out_dir / TEACHER_FILE).exists():
        raise ValueError(f"{out_dir} already holds a teacher; use another --out")
    data = prepare_run_data(source, cfg, noise_dir, cache_dir, show_progress)
    if len(data.splits["train"].targets) == 0:
        raise ValueError(f"{source}: no training clips for this task")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_toml(cfg, out_dir / "config.toml")
    return train_teacher(
        data,
        out_dir,
        tcfg,
        cache_dir,
        augment=cfg.augment,
        features=cfg.features,
        extra_share=cfg.data.extra_share,
        show_progress=show_progress,
    )
