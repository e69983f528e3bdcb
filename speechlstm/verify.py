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
(left -> yes, down -> no), which the verifier hears right. With `centre`, it
judges the window centred on the loudest 300 ms of the firing window, as its
training clips hold their word, instead of the window ending at the
detection. It runs on candidates only, so the stream's CPU share barely
moves.

numpy + onnxruntime only.
"""

from __future__ import annotations

import numpy as np

from .labels import BACKGROUND_LABELS

# A centred window (`centre`): the loudest stretch of the firing window taken as
# the word, found from the energy of 10 ms frames.
LOUDEST_MS = 300
FRAME_MS = 10


class VerifierError(ValueError):
    """A verifier that cannot judge the detector's commands."""


class Verifier:
    """`ruling(label, audio)`: the label to report for a candidate `label` whose
    audio is `audio` (the last `span` samples before the detection, float at its
    rate), or None to drop it (rule() says how).

    With `lookback_ms` > 0 it judges several windows of its own length, ending
    at the detection and every `step_ms` before it, and keeps each class's
    highest probability: a smoothed first stage fires a few hundred ms after
    the word's end, when the word sits early in the window, off where the
    verifier was trained to hear it (centred)."""

    def __init__(
        self,
        recognizer,
        threshold: float = 0.5,
        commands=(),
        lookback_ms: float = 0.0,
        step_ms: float = 100.0,
        relabel: bool = False,
        centre: bool = False,
    ):
        if not 0.0 < threshold <= 1.0:
            raise VerifierError(f"verifier threshold {threshold}: expected (0, 1]")
        if not 0.0 <= lookback_ms <= 2000.0 or step_ms <= 0:
            raise VerifierError(
                f"verifier look-back {lookback_ms} ms (step {step_ms} ms): expected 0-2000 ms"
            )
        if centre and lookback_ms > 0:
            raise VerifierError("a centred verifier window and a look-back: choose one")
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
        rate = recognizer.sample_rate
        step = max(1, round(step_ms * rate / 1000))
        back = round(lookback_ms * rate / 1000)
        # Window ends, counted back from the detection: 0, step, ..., <= back.
        self.offsets = tuple(range(0, back + 1, step))
        # Centring may move the window up to half its length back from the detection.
        self.centre = centre
        self.span = self.window + self.offsets[-1] + (self.window // 2 if centre else 0)
        self.calls = 0

    def probs(self, audio: np.ndarray) -> np.ndarray:
        """Each class's highest probability over the windows in `audio` (its last
        `span` samples; shorter audio is padded with zeros in front)."""
        if audio.size < self.span:
            audio = np.concatenate([np.zeros(self.span - audio.size, np.float32), audio])
        audio = audio[audio.size - self.span :]
        if self.centre:
            self.calls += 1
            return self.rec.predict_clip(self.centred(audio))
        best = None
        for off in self.offsets:
            end = self.span - off
            self.calls += 1
            p = self.rec.predict_clip(audio[end - self.window : end])
            best = p if best is None else np.maximum(best, p)
        return best

    def centred(self, audio: np.ndarray) -> np.ndarray:
        """The window of `audio` (`span` samples ending at the detection) centred
        on the loudest stretch of the first stage's window (its last `window`)."""
        return centred_window(audio, self.window, self.window, self.rec.sample_rate)

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


def centred_window(audio: np.ndarray, window: int, region: int, rate: int) -> np.ndarray:
    """The `window` samples of `audio` centred on the loudest LOUDEST_MS of its
    last `region` samples, moved back where the end of `audio` would cut it
    (`audio` holds at least `window` samples)."""
    frame = max(1, round(rate * FRAME_MS / 1000))
    part = audio[-region:].astype(np.float64)
    n = part.size // frame
    energy = (part[: n * frame].reshape(n, frame) ** 2).mean(axis=1)
    k = max(1, min(n, round(rate * LOUDEST_MS / 1000) // frame))
    run = np.convolve(energy, np.ones(k), "valid")
    centre = audio.size - part.size + round((int(np.argmax(run)) + k / 2) * frame)
    end = max(window, min(audio.size, centre + window // 2))
    return audio[end - window : end]


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
        from .tuning import Recording

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
