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

from ..progress import progress_bar
from . import checkpoint
from .teacher import embed_split, embedding_cache, is_teacher_file
from .transfer import TransferAudio, load_transfer


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


WINDOW_TEACHER_DRAWS = 2  # teacher-judged detector windows per command clip
WINDOW_CHUNK = 2048  # clips moved and embedded at a time (bounds the memory)


def window_teacher_targets(
    path: str,
    labels: list[str],
    audio_int16: np.ndarray,
    eligible: np.ndarray,
    widest_samples: int,
    seed: int,
    cache_dir: Path | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Detector windows judged by an embedding teacher (train.window_teacher):
    each eligible (command) clip moved by WINDOW_TEACHER_DRAWS shifts drawn
    uniformly in [-widest, widest] samples (seeded) and the teacher's posteriors
    on each moved window. Returns shifts (N, D) int64 and posteriors (N, D, C)
    float32; other clips' rows are shift 0 and never used. Drawn once: an
    embedding pass per window is far too slow for every batch."""
    from .augment import shift_rows
    from .teacher import EmbeddingTeacher

    teacher = EmbeddingTeacher(path, cache_dir)
    if teacher.labels != labels:
        raise ValueError(
            f"train.window_teacher {path}: labels {teacher.labels} differ from this run's {labels}"
        )
    n, s = audio_int16.shape
    d = WINDOW_TEACHER_DRAWS
    rng = np.random.default_rng([seed, 29])
    shifts = rng.integers(-widest_samples, widest_samples + 1, size=(n, d))
    shifts[~eligible] = 0
    probs = np.zeros((n, d, len(labels)), np.float32)
    rows = np.flatnonzero(eligible)
    for start in range(0, len(rows), WINDOW_CHUNK):
        part = rows[start : start + WINDOW_CHUNK]
        wave = torch.from_numpy(np.repeat(audio_int16[part], d, axis=0))
        moved = shift_rows(wave, torch.from_numpy(shifts[part].reshape(-1, 1)))
        logits = teacher.logits(
            moved.numpy(), name=f"detector windows {start + len(part)}/{len(rows)} clips"
        )
        probs[part] = F.softmax(torch.from_numpy(logits), -1).numpy().reshape(len(part), d, -1)
    return shifts, probs


class EmbeddingTargets(nn.Module):
    """The clips' embedding frames, standardised per dimension with the training
    split's statistics (N, 16, 96), and the projector that the student's encoder
    output is mapped through to predict them. With unlabelled audio
    (train.feature_distill_audio, transfer.py) also its windows' frames,
    standardised alike, to be drawn each step."""

    def __init__(
        self,
        audio_int16: np.ndarray,
        encoder_dim: int,
        cache_dir: Path | None,
        transfer: TransferAudio | None = None,
    ):
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
        self.transfer = transfer
        if transfer is not None:
            extra = embed_transfer(transfer, embedder, cache)
            self.register_buffer(
                "transfer_frames",
                torch.from_numpy(((extra - mean) / std).astype(np.float16)),
                persistent=False,
            )
        self.n_frames = N_FRAMES
        self.projector = nn.Linear(encoder_dim, EMBED_DIM)


def embed_transfer(transfer: TransferAudio, embedder, cache) -> np.ndarray:
    """The (M, 16, 96) embedding frames of the unlabelled windows, a chunk at a
    time (the windows are never all copied out of the audio at once)."""
    from .embedding import EMBED_DIM, N_FRAMES, embed_cached

    out = np.zeros((len(transfer), N_FRAMES, EMBED_DIM), np.float32)
    name = f"embedding unlabelled audio ({len(transfer)} windows)"
    with progress_bar(name, len(transfer), unit="windows") as advance:
        for lo in range(0, len(transfer), WINDOW_CHUNK):
            index = np.arange(lo, min(lo + WINDOW_CHUNK, len(transfer)))
            out[index] = embed_cached(embedder, transfer.windows(index), cache, progress=advance)
    return out


def feature_loss(
    targets: EmbeddingTargets,
    h: torch.Tensor,
    frames: torch.Tensor,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """MSE between the projected encoder outputs h (B, T', 2H), pooled to the
    embedding's frames (B, 16, 2H), and the clips' embedding frames (B, 16, 96);
    with `keep` (B,) bool, over those clips only (a clip redrawn as a detector
    window no longer matches its cached embedding)."""
    pooled = F.adaptive_avg_pool1d(h.float().transpose(1, 2), targets.n_frames).transpose(1, 2)
    if keep is None:
        return F.mse_loss(targets.projector(pooled), frames.float())
    err = (targets.projector(pooled) - frames.float()).pow(2).mean(dim=(1, 2))
    return (err * keep).sum() / keep.sum().clamp_min(1)


def transfer_batch(
    targets: EmbeddingTargets, features, augment, cfg, gen: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """A step's unlabelled windows (train.feature_distill_audio), drawn with the
    step's generator and augmented like the clips (`augment` the trainer's
    WaveAugment, `features` the model's front-end, `cfg` the RunConfig): their
    MFCC features (U, T, F) and embedding frames (U, 16, 96)."""
    from .augment import pitch_warp, spec_augment

    ac = cfg.augment
    n = cfg.train.feature_distill_audio_batch
    pick = torch.randint(len(targets.transfer), (n,), generator=gen, device=gen.device).cpu()
    wave = torch.from_numpy(targets.transfer.windows(pick.numpy())).to(device).float() / 32767.0
    with torch.no_grad():
        wave = augment(wave, gen)
        log_mel = spec_augment(pitch_warp(features.log_mel(wave), ac.pitch, gen), ac, gen)
        feats = features.cepstrum(log_mel)
    return feats, targets.transfer_frames[pick.to(device)]


@dataclass
class DistillSources:
    """What a student learns from besides its labels, on the training device:
    logit teachers (train.teacher) with their cached clip probabilities, the
    embedding frames to predict (train.feature_distill), and the teacher's
    judgement of moved windows (train.window_teacher: shifts, posteriors)."""

    teachers: list
    clip_teacher: torch.Tensor | None
    targets: EmbeddingTargets | None
    window_teacher: tuple[torch.Tensor, torch.Tensor] | None


def distill_sources(
    cfg,
    labels: list[str],
    audio: np.ndarray,
    is_command: np.ndarray,
    device: torch.device,
    cache_dir: Path | None,
) -> DistillSources:
    """The run's distillation sources (`cfg` a RunConfig; `audio` the training
    clips, `is_command` per clip)."""
    tc = cfg.train
    teachers = load_teachers(tc.teacher, labels, device)
    clip_probs = clip_teacher_probs(tc.teacher, labels, audio, tc.distill_temperature, cache_dir)
    targets = None
    if tc.feature_distill > 0:
        transfer = None
        if tc.feature_distill_audio:
            transfer = load_transfer(
                tc.feature_distill_audio, cfg.features.clip_samples, cfg.features.sample_rate
            )
        targets = EmbeddingTargets(audio, 2 * cfg.model.hidden_size, cache_dir, transfer).to(device)
    window = None
    if tc.window_teacher:
        if cfg.augment.detector_windows <= 0:
            raise ValueError("train.window_teacher needs augment.detector_windows > 0")
        shifts, posteriors = window_teacher_targets(
            tc.window_teacher,
            labels,
            audio,
            is_command,
            round(cfg.features.sample_rate * cfg.augment.detector_shift_ms / 1000),
            tc.seed,
            cache_dir,
        )
        window = (torch.from_numpy(shifts).to(device), torch.from_numpy(posteriors).to(device))
    return DistillSources(
        teachers,
        None if clip_probs is None else torch.from_numpy(clip_probs).to(device),
        targets,
        window,
    )
