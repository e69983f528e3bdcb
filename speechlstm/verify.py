"""The second stage: a verifier model that rules on each candidate the detector raises.

Two-stage keyword cascades (and openWakeWord's custom verifier) run a cheap
first stage on every hop and a second model only when the first fires. Here
the second stage is any speechlstm model (an MFCC model trained on mined hard
negatives, or a speech-embedding model, `export` of a `train --frontend
embedding` run): when the detector's decision fires, the verifier classifies
the audio ending where the firing window ends (its own window length, from
the detector's audio history) and the detection is kept only if the verifier
gives the same command at least `threshold`. It runs on candidates only, so
the stream's CPU share barely moves.

numpy + onnxruntime only.
"""

from __future__ import annotations

import numpy as np

from .labels import BACKGROUND_LABELS


class VerifierError(ValueError):
    """A verifier that cannot judge the detector's commands."""


class Verifier:
    """`accepts(label, clip)`: does the verifier hear `label` in `clip` (its own
    window, float samples at its rate) with at least `threshold`?"""

    def __init__(self, recognizer, threshold: float = 0.5, commands=()):
        if not 0.0 < threshold <= 1.0:
            raise VerifierError(f"verifier threshold {threshold}: expected (0, 1]")
        self.rec = recognizer
        self.threshold = threshold
        self.index = {label: i for i, label in enumerate(recognizer.labels)}
        missing = [c for c in commands if c not in self.index and c not in BACKGROUND_LABELS]
        if missing:
            raise VerifierError(
                f"{recognizer.file.path}: the verifier has no class for "
                f"{', '.join(missing)} (its labels: {', '.join(recognizer.labels)})"
            )
        self.window = recognizer.clip_samples
        self.calls = 0

    def probs(self, clip: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.rec.predict_clip(clip)

    def accepts(self, label: str, clip: np.ndarray) -> bool:
        return float(self.probs(clip)[self.index[label]]) >= self.threshold


class AudioHistory:
    """The last `capacity` samples of a stream, addressed by stream position."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.reset()

    def reset(self) -> None:
        self.ring = np.zeros(self.capacity, np.float32)
        self.total = 0  # samples pushed since reset

    def push(self, samples: np.ndarray) -> None:
        n = samples.size
        if n >= self.capacity:
            self.ring[:] = samples[-self.capacity :]
        elif n:
            self.ring = np.roll(self.ring, -n)
            self.ring[-n:] = samples
        self.total += n

    def window(self, end: int, length: int) -> np.ndarray:
        """Samples [end - length, end) of the stream; zeros before its start.
        Positions older than the history are an error (the capacity is sized so
        the detector never asks for them)."""
        start = end - length
        oldest = self.total - self.capacity
        lo = max(start, 0)
        if lo < max(oldest, 0) or end > self.total:
            raise IndexError(f"samples [{start}, {end}) are not in the history")
        out = np.zeros(length, np.float32)
        a, b = lo - oldest, end - oldest
        out[length - (end - lo) :] = self.ring[a:b]
        return out


class WaveVerifier:
    """A verifier over a whole recording, its answers cached by window end: the
    detector tuner replays many thresholds over the same candidates."""

    def __init__(self, verifier: Verifier, wave: np.ndarray):
        self.verifier = verifier
        self.wave = wave
        self.cache: dict[int, np.ndarray] = {}

    def probs(self, end: int) -> np.ndarray:
        if end not in self.cache:
            length = self.verifier.window
            clip = np.zeros(length, np.float32)
            lo = max(0, end - length)
            piece = self.wave[lo:end]
            clip[length - len(piece) :] = piece
            self.cache[end] = self.verifier.probs(clip)
        return self.cache[end]

    def accepts(self, label: str, end: int, threshold: float | None = None) -> bool:
        t = self.verifier.threshold if threshold is None else threshold
        return float(self.probs(end)[self.verifier.index[label]]) >= t
