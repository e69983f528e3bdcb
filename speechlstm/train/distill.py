"""The learning sources that ship (sources.py): logit distillation from
teachers and feature distillation to Google's speech embedding.

- Logit distillation (`train.teacher`): the teachers' temperature-softened
  posteriors are a second target, (1 - w) * cross-entropy + w * T^2 * KL.
  A teacher is a checkpoint (best.pt of an earlier run), run on each augmented
  batch, or an embedding model (teacher.safetensors, embedding_model/), whose
  posteriors on each training clip as stored are computed once: the embedding
  costs ~20-30 ms a clip, far too much to run on every augmented batch.
- Feature distillation (`train.feature_distill` = a weight): the student's
  recurrent outputs, pooled to the embedding's 16 frames and mapped by a linear
  projector, regress the clip's standardised embedding frames (MSE). The
  projector is a training aid: kept in checkpoints to resume, never exported.

The student's augmentation (shift, gain, noise, room) keeps the word, so the
clean clip's targets stay fitting ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import RunConfig
from . import checkpoint
from .embedding import EMBED_DIM, N_FRAMES, SpeechEmbedding
from .embedding_model.frames import embed_split, embedding_cache
from .embedding_model.model_file import EmbeddingModel, is_embedding_model_file
from .sources import Batch, LearningSource, Output, SourceRun


def load_teachers(paths: tuple[str, ...], labels: list[str], device: torch.device) -> list:
    """The checkpoint teachers, in eval mode; each must have the run's labels
    (embedding models, `.safetensors`, are clip_teacher_probs')."""
    teachers = []
    for path in paths:
        if is_embedding_model_file(path):
            continue
        ckpt = checkpoint.load(path)
        if list(ckpt.labels) != labels:
            raise ValueError(
                f"teacher {path}: labels {list(ckpt.labels)} differ from this run's {labels}"
            )
        teachers.append(checkpoint.build_model(ckpt, path).to(device))
    return teachers


def checkpoint_teacher_probs(teachers: list, b: Batch, temperature: float) -> torch.Tensor | None:
    """The checkpoint teachers' mean temperature-softened posteriors on the
    augmented batch (before SpecAugment: the teacher should see the word the
    student must learn), None without teachers. A teacher with the student's
    front-end reuses its log-mel."""
    if not teachers:
        return None
    probs = 0.0
    for teacher in teachers:
        if teacher.features.cfg == b.features.cfg:
            feats = teacher.features.cepstrum(b.log_mel())
        else:
            feats = teacher.features.cepstrum(teacher.features.log_mel(b.wave))
        with b.autocast:
            probs = probs + F.softmax(teacher.classifier(feats).float() / temperature, -1)
    return probs / len(teachers)


def clip_teacher_probs(
    paths: tuple[str, ...],
    labels: list[str],
    audio_int16: np.ndarray,
    temperature: float,
    cache_dir: Path | None,
) -> np.ndarray | None:
    """The embedding-model teachers' mean temperature-softened posteriors on each
    training clip as stored (N, C), or None when there is none."""
    probs = []
    for path in paths:
        if not is_embedding_model_file(path):
            continue
        teacher = EmbeddingModel(path, cache_dir)
        if teacher.labels != labels:
            raise ValueError(
                f"teacher {path}: labels {teacher.labels} differ from this run's {labels}"
            )
        logits = torch.from_numpy(teacher.logits(audio_int16))
        probs.append(F.softmax(logits / temperature, -1).numpy())
    return np.mean(probs, axis=0).astype(np.float32) if probs else None


class LogitDistillation:
    """Teachers' soft targets (train.teacher, distill_weight, distill_temperature)."""

    name = "logit_distill"
    needs_sequence = False

    def __init__(self, paths: tuple[str, ...], weight: float, temperature: float):
        self.paths, self.weight, self.temperature = paths, weight, temperature
        self.teachers: list = []
        self.clip_probs: torch.Tensor | None = None

    @classmethod
    def from_config(cls, cfg: RunConfig) -> LogitDistillation | None:
        tc = cfg.train
        return cls(tc.teacher, tc.distill_weight, tc.distill_temperature) if tc.teacher else None

    def prepare(self, run: SourceRun) -> None:
        self.teachers = load_teachers(self.paths, run.labels, run.device)
        probs = clip_teacher_probs(
            self.paths, run.labels, run.audio, self.temperature, run.cache_dir
        )
        self.clip_probs = None if probs is None else torch.from_numpy(probs).to(run.device)

    def parameters(self) -> list[nn.Parameter]:
        return []

    def batch(self, b: Batch, gen: torch.Generator) -> Batch:
        probs = checkpoint_teacher_probs(self.teachers, b, self.temperature)
        if self.clip_probs is not None:
            # Each teacher counts alike, checkpoint or embedding model.
            n_ckpt = len(self.teachers)
            clip_p = self.clip_probs[b.index]
            probs = clip_p if probs is None else (probs * n_ckpt + clip_p) / (n_ckpt + 1)
        b.extra[self.name] = probs
        return b

    def loss(self, b: Batch, out: Output, loss: torch.Tensor) -> torch.Tensor:
        if b.extra[self.name] is None:
            return loss
        t, w = self.temperature, self.weight
        kl = F.kl_div(F.log_softmax(out.logits / t, -1), b.extra[self.name], reduction="batchmean")
        return (1 - w) * loss + w * t * t * kl

    def state_dict(self) -> None:
        return None  # the teachers are files; nothing of theirs changes

    def load_state_dict(self, state, path: Path) -> None:
        pass


class EmbeddingTargets(nn.Module):
    """The clips' embedding frames, standardised per dimension with the training
    split's statistics (N, 16, 96), and the projector that the student's encoder
    output is mapped through to predict them."""

    def __init__(self, audio_int16: np.ndarray, encoder_dim: int, cache_dir: Path | None):
        super().__init__()
        embedder = SpeechEmbedding(threads=torch.get_num_threads())
        cache = embedding_cache(cache_dir)
        frames = embed_split(audio_int16, embedder, cache, "training clips")
        mean = frames.reshape(-1, EMBED_DIM).mean(0)
        std = frames.reshape(-1, EMBED_DIM).std(0) + 1e-3
        # float16 on the device: 20,000 clips take 60 MB.
        self.register_buffer(
            "frames", torch.from_numpy(((frames - mean) / std).astype(np.float16)), persistent=False
        )
        self.n_frames = N_FRAMES
        self.projector = nn.Linear(encoder_dim, EMBED_DIM)


def feature_loss(targets: EmbeddingTargets, h: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """MSE between the projected encoder outputs h (B, T', 2H), pooled to the
    embedding's frames (B, 16, 2H), and the clips' embedding frames (B, 16, 96)."""
    pooled = F.adaptive_avg_pool1d(h.float().transpose(1, 2), targets.n_frames).transpose(1, 2)
    return F.mse_loss(targets.projector(pooled), frames.float())


class FeatureDistillation:
    """The embedding's frames as a regression target (train.feature_distill)."""

    name = "feature_distill"
    needs_sequence = True

    def __init__(self, weight: float):
        self.weight = weight
        self.targets: EmbeddingTargets | None = None

    @classmethod
    def from_config(cls, cfg: RunConfig) -> FeatureDistillation | None:
        return cls(cfg.train.feature_distill) if cfg.train.feature_distill > 0 else None

    def prepare(self, run: SourceRun) -> None:
        encoder_dim = 2 * run.cfg.model.hidden_size
        self.targets = EmbeddingTargets(run.audio, encoder_dim, run.cache_dir).to(run.device)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.targets.projector.parameters())

    def batch(self, b: Batch, gen: torch.Generator) -> Batch:
        b.extra[self.name] = self.targets.frames[b.index]
        return b

    def loss(self, b: Batch, out: Output, loss: torch.Tensor) -> torch.Tensor:
        frames = b.extra[self.name]
        return loss + self.weight * feature_loss(self.targets, out.sequence, frames)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.targets.projector.state_dict()

    def load_state_dict(self, state, path: Path) -> None:
        if state is None:
            raise checkpoint.CheckpointError(f"{path}: holds no embedding projector")
        checkpoint.load_weights(self.targets.projector, state, path, "projector")


# The shipped sources, in the order they are prepared and their losses taken
# (the order of the seeded draws a run's results depend on).
SHIPPED_SOURCES = (LogitDistillation.from_config, FeatureDistillation.from_config)


def shipped_sources(cfg: RunConfig) -> list[LearningSource]:
    """The shipped learning sources the run's settings switch on."""
    return [s for s in (make(cfg) for make in SHIPPED_SOURCES) if s is not None]
