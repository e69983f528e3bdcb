"""The detection decision: smoothed scores per hop -> one report per utterance.

Like mycroft-precise's `TriggerDetector`, this knows nothing about audio or
models: it is fed one smoothed probability vector (classes,) per hop with the
stream position (in samples) of the window that produced it, and decides:

    best foreground class >= its threshold, the detector armed, and at least
    `refractory_samples` after the previous report
      -> follow the score while it rises (at most `peak_wait_samples`)
      -> report the peak as a `Trigger`, disarm
    disarmed until the best foreground score falls below its threshold

A word stays in a sliding window for window + word length, so without the
re-arming rule one word would fire again once the refractory period ends.
Background classes (`_unknown_`, `_silence_`) never fire. State is a few
numbers, so tests drive it with hand-written sequences and `reset()` starts over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..config import DetectorConfig

__all__ = ["Trigger", "TriggerDetector"]

NEVER_FIRED = -(10**12)  # "last report" before the first: far enough back for any refractory


@dataclass(frozen=True)
class Trigger:
    """One decision: the class that fired, its smoothed score, and the stream
    position (samples) of the end of the window where the score peaked."""

    index: int
    label: str
    score: float
    end_samples: int


class TriggerDetector:
    """Arm, follow the peak, report, disarm (see module doc).

    `thresholds` and `background` have one entry per label; the sample counts
    are at the rate of the positions passed to `update`.
    """

    def __init__(
        self,
        labels: Sequence[str],
        thresholds: Sequence[float],
        background: Sequence[bool],
        refractory_samples: int,
        peak_wait_samples: int,
    ):
        if not len(labels) == len(thresholds) == len(background):
            raise ValueError(
                f"{len(labels)} labels but {len(thresholds)} thresholds and "
                f"{len(background)} background flags"
            )
        if refractory_samples < 0 or peak_wait_samples < 0:
            raise ValueError(
                f"refractory_samples={refractory_samples} and "
                f"peak_wait_samples={peak_wait_samples} must be >= 0"
            )
        self.labels = tuple(labels)
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.foreground = np.flatnonzero(~np.asarray(background, dtype=bool))
        self.refractory_samples = int(refractory_samples)
        self.peak_wait_samples = int(peak_wait_samples)
        self.reset()

    @classmethod
    def from_config(
        cls,
        labels: Sequence[str],
        background: Sequence[bool],
        cfg: DetectorConfig,
        rate_hz: int,
    ) -> TriggerDetector:
        """The decision `cfg` describes, for positions counted at `rate_hz`."""
        return cls(
            labels,
            [cfg.threshold_for(label) for label in labels],
            background,
            refractory_samples=round(rate_hz * cfg.refractory_ms / 1000),
            peak_wait_samples=round(rate_hz * cfg.peak_wait_ms / 1000),
        )

    def reset(self) -> None:
        self.last_fired_samples = NEVER_FIRED
        self.armed = True  # False from a report until the scores fall below threshold
        # The rising candidate: (class, window end, score, first window end over threshold)
        self.candidate: tuple[int, int, float, int] | None = None

    def update(self, probs: np.ndarray, end_samples: int) -> Trigger | None:
        """One hop: smoothed probabilities (classes,) of the window ending at
        `end_samples`; returns the report this hop completes, if any. Positions
        must increase from call to call."""
        if not self.foreground.size:
            return None
        fg = int(self.foreground[np.argmax(probs[self.foreground])])
        score = float(probs[fg])
        if self.candidate is not None:
            _, _, best_score, first_end = self.candidate
            if score > best_score and end_samples - first_end <= self.peak_wait_samples:
                self.candidate = (fg, end_samples, score, first_end)  # still rising: peak ahead
                return None
            return self.flush()
        if score < self.thresholds[fg]:
            self.armed = True
            return None
        if self.armed and end_samples - self.last_fired_samples >= self.refractory_samples:
            self.armed = False
            self.candidate = (fg, end_samples, score, end_samples)
        return None

    def flush(self) -> Trigger | None:
        """Report the candidate now (end of stream, or its peak has passed)."""
        if self.candidate is None:
            return None
        fg, end, score, _ = self.candidate
        self.candidate = None
        self.last_fired_samples = end
        return Trigger(fg, self.labels[fg], score, end)
