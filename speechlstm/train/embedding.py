"""A speech embedding pretrained on far more speech than ours: the embedding model's
front-end, and the target of feature distillation.

Google's `speech_embedding` model, as openWakeWord 0.4.0 ships it in its wheel
(`openwakeword/resources/models/melspectrogram.onnx` and `embedding_model.onnx`;
later releases download them at run time, which cannot work offline). It is a
training-time dependency only (the `train` extra): nothing of it is copied into
the repository or into a default model.

Called as openWakeWord's `utils.AudioFeatures` calls it:

    16 kHz audio in int16 range -> melspectrogram.onnx -> x / 10 + 2   (F, 32)
    -> windows of 76 mel frames every 8 frames -> embedding_model.onnx  (W, 96)

A 1 s clip is centred in CONTEXT_SAMPLES (2.0 s) of zeros, openWakeWord's model
input: 197 mel frames, 16 windows, one 96-dim vector per 80 ms.

The mel model runs one clip per call: its loudness floor takes its reference
maximum over the whole input, so clips batched together would change each
other's features. The embedding model has no such coupling and is batched.

Embeddings are cached on disk, keyed by the clip's content and the model files'
digest, so that an embedding-model run and every student after it pay the ~30 ms a clip
once (EmbeddingCache).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..embedding_files import (  # noqa: F401  (re-exported: the training side's names)
    EMBED_FILE,
    MEL_FILE,
    PACKAGE,
    PACKAGE_PIN,
    EmbeddingUnavailable,
    files_digest,
    find_model_files,
)
from ..files import temp_beside

SAMPLE_RATE = 16_000
CONTEXT_SAMPLES = 32_000  # 2.0 s: openWakeWord's model input
MEL_BINS = 32
WINDOW_FRAMES = 76  # mel frames per embedding window (775 ms)
STRIDE_FRAMES = 8  # 80 ms between embedding frames
EMBED_DIM = 96
# Embedding windows per embedding_model call (16 per 2 s clip).
EMBED_BATCH_WINDOWS = 32


def n_embedding_frames(n_samples: int) -> int:
    """Embedding frames for `n_samples` of audio (openWakeWord's framing)."""
    n_mel = int(np.ceil(n_samples / 160 - 3))
    return max(0, (n_mel - WINDOW_FRAMES) // STRIDE_FRAMES + 1)


N_FRAMES = n_embedding_frames(CONTEXT_SAMPLES)  # 16


def centre(clip: np.ndarray, n_samples: int = CONTEXT_SAMPLES) -> np.ndarray:
    """`clip` centred in `n_samples` of zeros (cut to its middle when longer)."""
    out = np.zeros(n_samples, dtype=clip.dtype)
    if len(clip) >= n_samples:
        start = (len(clip) - n_samples) // 2
        return clip[start : start + n_samples].copy()
    start = (n_samples - len(clip)) // 2
    out[start : start + len(clip)] = clip
    return out


class SpeechEmbedding:
    """The mel + embedding pair on onnxruntime (CPU). `embed` maps int16 clips to
    (N, 16, 96) float32 embedding frames."""

    def __init__(self, mel_path: Path | None = None, embed_path: Path | None = None, threads=1):
        import onnxruntime as ort

        if mel_path is None or embed_path is None:
            mel_path, embed_path = find_model_files()
        self.mel_path, self.embed_path = Path(mel_path), Path(embed_path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        cpu = ["CPUExecutionProvider"]
        self.mel_model = ort.InferenceSession(str(self.mel_path), opts, providers=cpu)
        self.embed_model = ort.InferenceSession(str(self.embed_path), opts, providers=cpu)
        self.mel_input = self.mel_model.get_inputs()[0].name
        self.embed_input = self.embed_model.get_inputs()[0].name
        self.digest = files_digest(self.mel_path, self.embed_path)

    def mel(self, clip_int16: np.ndarray) -> np.ndarray:
        """(F, 32) mel frames of one clip, openWakeWord's scaling (one clip a call)."""
        x = np.asarray(clip_int16, dtype=np.float32)[None, :]
        spec = np.squeeze(self.mel_model.run(None, {self.mel_input: x})[0])
        return (spec / 10.0 + 2.0).astype(np.float32).reshape(-1, MEL_BINS)

    def windows(self, clip_int16: np.ndarray) -> np.ndarray:
        """(W, 76, 32) mel windows of one clip centred in the 2 s context."""
        spec = self.mel(centre(clip_int16))
        starts = range(0, spec.shape[0] - WINDOW_FRAMES + 1, STRIDE_FRAMES)
        return np.stack([spec[s : s + WINDOW_FRAMES] for s in starts])

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """(W, 96) embedding frames of (W, 76, 32) mel windows, batched."""
        out = []
        for start in range(0, len(windows), EMBED_BATCH_WINDOWS):
            batch = windows[start : start + EMBED_BATCH_WINDOWS, :, :, None]
            out.append(self.embed_model.run(None, {self.embed_input: batch})[0].reshape(-1, 96))
        return np.concatenate(out).astype(np.float32)

    def embed(self, clips_int16: np.ndarray) -> np.ndarray:
        """(N, N_FRAMES, 96) embedding frames of (N, S) int16 clips."""
        if len(clips_int16) == 0:
            return np.zeros((0, N_FRAMES, EMBED_DIM), np.float32)
        wins = np.stack([self.windows(c) for c in clips_int16])  # (N, W, 76, 32)
        n, w = wins.shape[:2]
        return self.embed_windows(wins.reshape(n * w, WINDOW_FRAMES, MEL_BINS)).reshape(n, w, -1)


@dataclass(frozen=True)
class EmbeddingCache:
    """Embedding frames on disk, one float16 .npy per clip, keyed by sha256 of the
    model files' digest, the clip's samples and its augmentation key."""

    folder: Path

    def key(self, digest: str, clip: np.ndarray, augmentation: str = "clean") -> str:
        h = hashlib.sha256(digest.encode())
        h.update(augmentation.encode() + b"\0")
        h.update(np.ascontiguousarray(clip).tobytes())
        return h.hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        from ..files import open_regular

        path = self.path(key)
        try:
            with open_regular(path, "cache file") as fh:  # never a FIFO planted there
                value = np.load(fh, allow_pickle=False)
        except (OSError, ValueError):  # FileRefused is a ValueError
            return None
        return value.astype(np.float32) if value.shape == (N_FRAMES, EMBED_DIM) else None

    def put(self, key: str, value: np.ndarray) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole then renamed: an interrupted run leaves no half file.
        fd, tmp = temp_beside(path)
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, value.astype(np.float16))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def embed_cached(
    model: SpeechEmbedding,
    clips_int16: np.ndarray,
    cache: EmbeddingCache | None,
    augmentation: str = "clean",
    progress=None,
    chunk: int = 32,
) -> np.ndarray:
    """(N, 16, 96) embeddings of `clips_int16`, computing only the clips not cached.
    `progress(n)` is called as clips are done."""
    out = np.zeros((len(clips_int16), N_FRAMES, EMBED_DIM), np.float32)
    keys = [None] * len(clips_int16)
    todo = []
    for i, clip in enumerate(clips_int16):
        if cache is not None:
            keys[i] = cache.key(model.digest, clip, augmentation)
            hit = cache.get(keys[i])
            if hit is not None:
                out[i] = hit
                if progress:
                    progress(1)
                continue
        todo.append(i)
    for start in range(0, len(todo), chunk):
        idx = todo[start : start + chunk]
        # Rounded to the cache's float16 whether or not it is cached: a run gives
        # the same numbers the first time as from the cache.
        values = model.embed(clips_int16[idx]).astype(np.float16)
        for i, value in zip(idx, values):
            out[i] = value
            if cache is not None:
                cache.put(keys[i], value)
        if progress:
            progress(len(idx))
    return out
