"""Distillation: checkpoint teachers (load_teachers) and the speech-embedding
teacher (teacher.py, embedding.py).

Two ways the student learns from Google's speech embedding, both computed once
per training clip (the embedding costs ~20-30 ms a clip: far too much to run on
every augmented batch) and cached on disk:

- logit distillation (`train.teacher` = a teacher.safetensors): the teacher's
  temperature-softened posteriors on each clip as stored are a second target
  (trainer._step: (1 - w) * cross-entropy + w * T^2 * KL);
- feature distillation (`train.feature_distill` = a weight): the student's
  recurrent outputs, pooled to the embedding's 16 frames and mapped by a linear
  projector, regress the clip's standardised embedding frames (MSE). The
  projector is a training aid: kept in checkpoints to resume, never exported.

The student's augmentation (shift, gain, noise, room) keeps the word, so the
clean clip's targets stay fitting ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoint
from .teacher import embed_split, embedding_cache, is_teacher_file


def load_teachers(paths: tuple[str, ...], labels: list[str], device: torch.device) -> list:
    """The checkpoint teachers, in eval mode; each must have the run's labels
    (embedding teachers, `.safetensors`, are clip_teacher_probs')."""
    teachers = []
    for path in paths:
        if is_teacher_file(path):
            continue
        ckpt = checkpoint.load(path)
        if list(ckpt.labels) != labels:
            raise ValueError(
                f"teacher {path}: labels {list(ckpt.labels)} differ from this run's {labels}"
            )
        teachers.append(checkpoint.build_model(ckpt, path).to(device))
    return teachers


def checkpoint_teacher_probs(
    teachers: list, student, wave: torch.Tensor, log_mel: torch.Tensor, temperature: float, autocast
) -> torch.Tensor | None:
    """The checkpoint teachers' mean temperature-softened posteriors on the
    augmented batch (before SpecAugment: the teacher should see the word the
    student must learn), None without teachers. A teacher with the student's
    front-end reuses its log-mel."""
    if not teachers:
        return None
    probs = 0.0
    for teacher in teachers:
        if teacher.features.cfg == student.features.cfg:
            feats = teacher.features.cepstrum(log_mel)
        else:
            feats = teacher.features.cepstrum(teacher.features.log_mel(wave))
        with autocast:
            probs = probs + F.softmax(teacher.classifier(feats).float() / temperature, -1)
    return probs / len(teachers)


def clip_teacher_probs(
    paths: tuple[str, ...],
    labels: list[str],
    audio_int16: np.ndarray,
    temperature: float,
    cache_dir: Path | None,
) -> np.ndarray | None:
    """The embedding teachers' mean temperature-softened posteriors on each training
    clip as stored (N, C), or None when there is no embedding teacher. Computed once:
    the embedding costs ~30 ms a clip, too much to run on every augmented batch; the
    student's augmentation (shift, gain, noise, room) keeps the word, so the clean
    clip's posteriors stay a fitting target."""
    from .teacher import EmbeddingTeacher

    probs = []
    for path in paths:
        if not is_teacher_file(path):
            continue
        teacher = EmbeddingTeacher(path, cache_dir)
        if teacher.labels != labels:
            raise ValueError(
                f"teacher {path}: labels {teacher.labels} differ from this run's {labels}"
            )
        logits = torch.from_numpy(teacher.logits(audio_int16))
        probs.append(F.softmax(logits / temperature, -1).numpy())
    return np.mean(probs, axis=0).astype(np.float32) if probs else None


class EmbeddingTargets(nn.Module):
    """The clips' embedding frames, standardised per dimension with the training
    split's statistics (N, 16, 96), and the projector that the student's encoder
    output is mapped through to predict them."""

    def __init__(self, audio_int16: np.ndarray, encoder_dim: int, cache_dir: Path | None):
        super().__init__()
        from .embedding import EMBED_DIM, N_FRAMES, SpeechEmbedding

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


@dataclass
class DistillSources:
    """What a student learns from besides its labels, on the training device:
    logit teachers (train.teacher) with their cached clip probabilities, and the
    embedding frames to predict (train.feature_distill)."""

    teachers: list
    clip_teacher: torch.Tensor | None
    targets: EmbeddingTargets | None


def distill_sources(
    cfg, labels: list[str], audio: np.ndarray, device: torch.device, cache_dir: Path | None
) -> DistillSources:
    """The run's distillation sources (`cfg` a RunConfig; `audio` the training clips)."""
    tc = cfg.train
    teachers = load_teachers(tc.teacher, labels, device)
    clip_probs = clip_teacher_probs(tc.teacher, labels, audio, tc.distill_temperature, cache_dir)
    targets = None
    if tc.feature_distill > 0:
        targets = EmbeddingTargets(audio, 2 * cfg.model.hidden_size, cache_dir).to(device)
    return DistillSources(
        teachers,
        None if clip_probs is None else torch.from_numpy(clip_probs).to(device),
        targets,
    )
