"""The clips' embedding frames (N, 16, 96): of the clips as stored, and of
augmented copies drawn with the student's waveform stage (train/augment.py),
each embedded once and cached by content (~20-50 ms a clip on one core)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...audio import float_to_int16, int16_to_float
from ...config import AugmentConfig, FeatureConfig
from ...progress import progress_bar
from ..augment import WaveAugment
from ..embedding import EMBED_DIM, N_FRAMES, EmbeddingCache, SpeechEmbedding, embed_cached


def embedding_cache(cache_dir: Path | None) -> EmbeddingCache | None:
    """The embedding cache under the decoded-audio cache (None: no caching)."""
    return None if cache_dir is None else EmbeddingCache(Path(cache_dir) / "embedding")


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
