"""Training the embedding model: its heads on the embedded splits (and on the
augmented copies of the training clips), the best epoch on validation kept.

The heads train on cached embeddings, so an epoch of 20,000 clips takes
seconds; the embedding pass is paid once per clip and kept in the cache for
every later run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ... import metrics
from ...config import AugmentConfig, EmbeddingConfig, FeatureConfig
from ...data.prepare import Prepared, SplitData
from ...progress import note
from ..embedding import SpeechEmbedding
from ..sampling import balanced_order
from .frames import embed_copies, embed_split, embedding_cache
from .head import EmbeddingHead, HeadEnsemble, head_logits
from .model_file import MODEL_FILE, save_embedding_model, settings_record


def train_embedding_model(
    data: Prepared,
    out_dir: Path,
    ecfg: EmbeddingConfig,
    seed: int,
    cache_dir: Path | None = None,
    embedder: SpeechEmbedding | None = None,
    augment: AugmentConfig | None = None,
    features: FeatureConfig | None = None,
    extra_share: float = 0.0,
    show_progress: bool | None = None,
) -> dict:
    """Train the head on the embedded splits (plus `ecfg.copies` augmented copies
    of the training clips, drawn with `augment`); write teacher.safetensors and
    metrics.json. `extra_share` draws the `--add` sources at that share of each
    class, as the student's sampler does (data.extra_share). With `ecfg.heads`
    > 1, head i has seed `seed + i` and its own copies, and the file holds them all."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    embedder = embedder or SpeechEmbedding(threads=torch.get_num_threads())
    cache = embedding_cache(cache_dir)
    frames = {
        n: embed_split(s.audio, embedder, cache, n, show_progress) for n, s in data.splits.items()
    }
    if ecfg.copies > 0 and (augment is None or features is None):
        raise ValueError("augmented copies need the run's [augment] and [features]")

    def draw_copies(seed: int) -> list[np.ndarray]:
        audio = data.splits["train"].audio
        return embed_copies(
            audio, data.noise, augment, features, ecfg.copies, seed, embedder, cache, show_progress
        )

    labels = list(data.task.labels)
    started = time.perf_counter()
    members, history, fit = _fit_heads(data, frames, ecfg, seed, extra_share, draw_copies)
    val_targets = data.splits["validation"].targets
    head, best_acc = _join_heads(members, fit, frames["validation"], val_targets)
    record = settings_record(ecfg, seed)
    report = {
        "frontend": "embedding",
        "labels": labels,
        "embedding": record,
        "best_epoch": fit["best_epoch"],  # with several heads the last's; each is in the history
        "best_val_accuracy": best_acc,
        **_test_metrics(head, frames["test"], data.splits["test"].targets, labels),
        "clips": data.counts(),
        "train_steps_per_epoch": fit["steps"],
        "heads": ecfg.heads,
        "train_seconds": round(time.perf_counter() - started, 1),
        "history": history,
        "embedding_digest": embedder.digest,
    }
    save_embedding_model(head, labels, record, embedder.digest, report, out_dir / MODEL_FILE)
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2))
    return report


def _fit_heads(
    data: Prepared,
    frames: dict[str, np.ndarray],
    ecfg: EmbeddingConfig,
    seed: int,
    extra_share: float,
    draw_copies: Callable[[int], list[np.ndarray]],
) -> tuple[list[nn.Module], list[dict], dict]:
    """Train `ecfg.heads` heads, head i with seed `seed + i` and its own copies
    (`draw_copies(seed)`); returns the heads, their epochs' history (each row
    with its head's number) and the last head's fit."""
    train_split, val = data.splits["train"], data.splits["validation"]
    n_classes = len(data.task.labels)
    members, history = [], []
    for i in range(ecfg.heads):
        copies = draw_copies(seed + i) if ecfg.copies > 0 else None
        train, targets, from_extra = _training_rows(train_split, frames["train"], copies)
        name = "" if ecfg.heads == 1 else f" head {i + 1}/{ecfg.heads}"
        head, fit = _fit_head(
            train, targets, from_extra, frames["validation"], val.targets, n_classes,
            ecfg, seed + i, extra_share, name,
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
    note(f"embedding model: {len(members)} heads together, val acc {best_acc:.3f}")
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
    ecfg: EmbeddingConfig,
    seed: int,
    extra_share: float,
    name: str = "",
) -> tuple[EmbeddingHead, dict]:
    """One head trained on embedding frames (N, 16, 96), its best epoch on
    validation kept; returns it and {history, best_val_accuracy, best_epoch, steps}."""
    torch.manual_seed(seed)
    head = EmbeddingHead(n_classes, ecfg.hidden_size, ecfg.dropout)
    opt = torch.optim.AdamW(head.parameters(), lr=ecfg.lr, weight_decay=ecfg.weight_decay)
    steps = max(1, len(y) // ecfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, ecfg.lr, total_steps=steps * ecfg.epochs)
    x_train, y_train = torch.from_numpy(x), torch.from_numpy(y)
    best_acc, best_epoch, best_state, history = -1.0, 0, None, []
    for epoch in range(ecfg.epochs):
        head.train()
        order = balanced_order(
            y, steps * ecfg.batch_size, np.random.default_rng([seed, epoch]),
            from_extra, extra_share,
        )  # fmt: skip
        loss_sum = 0.0
        for k in range(steps):
            idx = torch.from_numpy(order[k * ecfg.batch_size : (k + 1) * ecfg.batch_size])
            logits = head(x_train[idx])
            loss = F.cross_entropy(logits, y_train[idx], label_smoothing=ecfg.label_smoothing)
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
            f"embedding model{name} epoch {epoch + 1}/{ecfg.epochs}: loss {loss_sum / steps:.3f} "
            f"| val acc {val_acc:.3f}{' *' if star else ''}"
        )
    head.load_state_dict(best_state)
    fit = {"history": history, "best_val_accuracy": best_acc, "best_epoch": best_epoch}
    return head, {**fit, "steps": steps}
