"""A model and its verifier as one detector: the verifier is a decision.

    StreamingDetector (stream.py): ring buffer, hops, gate, smoothing
      -> decision: VerifiedDecision
           trigger (debounce.TriggerDetector): one candidate an utterance
           -> verifier (verify.py) on the candidate's audio: keep, rename or drop

The detector hands any decision the smoothed posteriors of each hop
(`update`, `flush`, `reset`). A decision that needs the audio may also take
it, and VerifiedDecision does: `hear_window(end_samples, window)` gets each
hop's window before its `update`, `hear_samples(samples)` the stream's
samples as they are pushed. It keeps only what a candidate can still ask for
and counts its rulings in `stats`, which the detector reports with its own.

`cascade(recognizer, verifier, cfg)` builds the detector, with or without a
second stage; `rulings(verifier, streams)` is the same second stage over
recordings, as the tuner replays it. numpy + onnxruntime only.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..config import DetectorConfig
from .debounce import Trigger, TriggerDetector
from .hop_inference import hop_inference
from .stream import MAX_BATCH, StreamingDetector
from .verify import AudioHistory, Verifier, WaveVerifier

__all__ = ["VerifiedDecision", "VerifierStats", "cascade", "rulings", "verifier_of"]


@dataclass
class VerifierStats:
    """The second stage's counts (fields of stream.DetectorStats, reported there)."""

    verified: int = 0  # candidates the verifier ruled on
    rejected: int = 0  # of those, the ones it turned down
    relabelled: int = 0  # and the ones it reported as another command (relabel)


class VerifiedDecision:
    """The trigger's candidates, each ruled on by `verifier` before it is reported.

    `window_samples` and `hop_samples` are the detector's; the audio kept is
    bounded by what a candidate can still ask for, however long the stream."""

    def __init__(
        self,
        trigger: TriggerDetector,
        verifier: Verifier,
        window_samples: int,
        hop_samples: int,
        rate_hz: int,
        peak_wait_ms: float,
    ):
        self.trigger = trigger
        self.verifier = verifier
        self.window = window_samples
        self.audio: AudioHistory | None = None
        self.recent: deque[tuple[int, np.ndarray]] | None = None
        peak_wait = round(rate_hz * peak_wait_ms / 1000)
        if verifier.span <= window_samples:
            # The verifier's clip is the end of a hop's own window: keep the
            # windows of the hops a candidate can still come from (its peak
            # is reported at most the peak wait and a hop after it), so the
            # memory it takes does not grow with the hop.
            self.recent = deque(maxlen=-(-peak_wait // hop_samples) + 3)
        else:
            # A longer clip: the stream's audio, as far back as a decision
            # can lag (a batch of hops, the peak wait, the flush's half window).
            lag = (MAX_BATCH + 2) * hop_samples + peak_wait
            self.audio = AudioHistory(verifier.span + lag + window_samples)
        self.reset()

    def reset(self) -> None:
        self.trigger.reset()
        if self.audio is not None:
            self.audio.reset()
        if self.recent is not None:
            self.recent.clear()
        self.stats = VerifierStats()

    def hear_samples(self, samples: np.ndarray) -> None:
        if self.audio is not None:
            self.audio.push(samples)

    def hear_window(self, end_samples: int, window: np.ndarray) -> None:
        if self.recent is not None:
            self.recent.append((end_samples, window))

    def update(self, probs: np.ndarray, end_samples: int) -> Trigger | None:
        return self._ruled(self.trigger.update(probs, end_samples))

    def flush(self) -> Trigger | None:
        return self._ruled(self.trigger.flush())

    def _clip(self, end: int) -> np.ndarray:
        """The `verifier.span` samples of the stream ending at `end`."""
        if self.audio is not None:
            return self.audio.window(end, self.verifier.span)
        for at, window in reversed(self.recent):
            if at == end:
                return window[self.window - self.verifier.span :]
        raise RuntimeError(f"the window ending at sample {end} is no longer kept")

    def _ruled(self, trigger: Trigger | None) -> Trigger | None:
        """The candidate as the verifier rules: kept, renamed, or None."""
        if trigger is None:
            return None
        self.stats.verified += 1
        label = self.verifier.ruling(trigger.label, self._clip(trigger.end_samples))
        if label is None:
            self.stats.rejected += 1
            return None
        if label == trigger.label:
            return trigger
        # The score (and the class index) stay the first stage's: what made the candidate.
        self.stats.relabelled += 1
        return dataclasses.replace(trigger, label=label)


def cascade(
    recognizer,
    verifier: Verifier | None = None,
    cfg: DetectorConfig = DetectorConfig(),
    name: str = "",
) -> StreamingDetector:
    """The streaming detector of `recognizer` (runtime.OnnxRecognizer) at `cfg`,
    with `verifier` as its second stage (None: the trigger alone); each
    Detection's `model` says `name`."""
    if verifier is None:
        return StreamingDetector(recognizer, cfg, name=name)
    rate = recognizer.sample_rate
    if verifier.rec.sample_rate != rate:
        raise ValueError("the verifier runs at another sample rate than the model")
    inference = hop_inference(recognizer)
    cfg = inference.settings(cfg)  # what the detector will run at
    decision = VerifiedDecision(
        TriggerDetector.from_config(recognizer.labels, recognizer.background, cfg, rate),
        verifier,
        window_samples=recognizer.clip_samples,
        hop_samples=inference.hop_samples(cfg.hop_ms),
        rate_hz=rate,
        peak_wait_ms=cfg.peak_wait_ms,
    )
    return StreamingDetector(recognizer, cfg, decision=decision, name=name, inference=inference)


def verifier_of(detector: StreamingDetector) -> Verifier | None:
    """The second stage of a detector `cascade` built (None without one)."""
    decision = detector.decision
    return decision.verifier if isinstance(decision, VerifiedDecision) else None


def rulings(verifier: Verifier, streams) -> dict:
    """The second stage over labelled recordings (labelled.LabelledStreams), as
    the tuner replays it: {"stream": ruling, "negative": [ruling per recording]},
    each verify.WaveVerifier.ruling."""
    return {
        "stream": WaveVerifier(verifier, streams.recording).ruling,
        "negative": [WaveVerifier(verifier, n).ruling for n in streams.negatives],
    }
