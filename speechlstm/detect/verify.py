"""The second stage: a verifier model that rules on each candidate the detector raises.

Two-stage keyword cascades (and openWakeWord's custom verifier) run a cheap
first stage on every hop and a second model only when the first fires. Here
the second stage is any speechlstm model (an MFCC model trained on mined hard
negatives, or a speech-embedding model, `export` of a `train --frontend
embedding` run): when the detector's decision fires, the verifier classifies
the audio ending where the firing window ends (its own window length, from
the detector's audio history) and the detection is kept only if the verifier
gives the same command at least `threshold`. With `relabel`, a candidate
the verifier hears as another command (at least `threshold`) is reported as
that command: the first stage's misses in noise are mostly confusions
(left -> yes, down -> no), which the verifier hears right. It runs on
candidates only, so the stream's CPU share barely moves.

numpy + onnxruntime only.
"""

from __future__ import annotations

import numpy as np

from ..labels import BACKGROUND_LABELS


class VerifierError(ValueError):
    """A verifier that cannot judge the detector's commands."""


class Verifier:
    """`ruling(label, audio)`: the label to report for a candidate `label` whose
    audio is `audio` (the last `span` samples before the detection, float at its
    rate), or None to drop it (rule() says how). It judges the window of its
    own length ending where the detector's firing window ends."""

    def __init__(self, recognizer, threshold: float = 0.5, commands=(), relabel: bool = False):
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
        self.relabel = relabel
        # The commands a ruling may name instead of the candidate's own label.
        named = [c for c in (commands or recognizer.labels) if c not in BACKGROUND_LABELS]
        self.commands = tuple(c for c in named if c in self.index)
        self.window = recognizer.clip_samples
        self.span = self.window  # audio it needs before the detection
        self.calls = 0

    def probs(self, audio: np.ndarray) -> np.ndarray:
        """Its probabilities for the last `span` samples of `audio` (shorter audio
        is padded with zeros in front)."""
        if audio.size < self.span:
            audio = np.concatenate([np.zeros(self.span - audio.size, np.float32), audio])
        self.calls += 1
        return self.rec.predict_clip(audio[audio.size - self.span :])

    def rule(self, label: str, probs: np.ndarray, threshold: float | None = None) -> str | None:
        """The label to report for a candidate `label` given the verifier's
        `probs`: `label` itself if it reaches the threshold; with `relabel`, else
        the verifier's most likely command if that reaches it; else None (drop)."""
        t = self.threshold if threshold is None else threshold
        if float(probs[self.index[label]]) >= t:
            return label
        if self.relabel and self.commands:
            best = max(self.commands, key=lambda c: probs[self.index[c]])
            if float(probs[self.index[best]]) >= t:
                return best
        return None

    def ruling(self, label: str, audio: np.ndarray) -> str | None:
        return self.rule(label, self.probs(audio))


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

    def __init__(self, verifier: Verifier, audio):
        """`audio`: an array at the model's rate or a tuning.Recording (a file
        read at each candidate, never whole)."""
        from .labelled import Recording

        self.verifier = verifier
        self.audio = (
            audio if isinstance(audio, Recording) else Recording(audio, verifier.rec.sample_rate)
        )
        self.cache: dict[int, np.ndarray] = {}

    def probs(self, end: int) -> np.ndarray:
        if end not in self.cache:
            self.cache[end] = self.verifier.probs(self.audio.window(end, self.verifier.span))
        return self.cache[end]

    def ruling(self, label: str, end: int, threshold: float | None = None) -> str | None:
        """The label reported for a candidate `label` whose window ends at `end`
        (None: dropped), as StreamingDetector rules on it."""
        return self.verifier.rule(label, self.probs(end), threshold)
