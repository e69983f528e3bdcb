"""Streaming command detection: ring buffer, inference every hop, smoothing, refractory.

    chunks of any size -> ring buffer holding the model window (1 s)
      -> every `hop_ms` the last window is classified (windows due within one
         chunk are batched into one onnxruntime call)
      -> posteriors averaged over `smoothing_ms`
      -> best non-background class >= its threshold, outside the refractory
         period of the previous detection, and only after the scores fell
         below threshold since it (one utterance, one detection)
      -> followed while its score rises (up to `peak_wait_ms`) -> Detection
         of the peak window

Memory is bounded (one window, one smoothing deque) however long it runs, and
results do not depend on how the audio is chunked. Whole files go through the
same path (`detect_file`), so a recording and the microphone behave alike.
numpy + onnxruntime only.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .runtime import OnnxRecognizer

MAX_BATCH = 64  # hop windows classified per onnxruntime call


@dataclass(frozen=True)
class DetectorConfig:
    hop_ms: float = 100.0  # how often the model looks at the last window
    smoothing_ms: float = 300.0  # posteriors averaged over this span (>= one hop)
    threshold: float = 0.8  # default for every command label
    thresholds: tuple[tuple[str, float], ...] = ()  # per-label overrides
    refractory_ms: float = 1000.0  # one utterance, one detection
    # Once over threshold, keep following the score while it rises (at most this
    # long) and report the peak window: a better label and time for little delay.
    peak_wait_ms: float = 200.0
    # Energy gate: windows whose loudest 100 ms is below this level (dBFS) are
    # taken as silence without running the model. None disables the gate.
    gate_dbfs: float | None = -55.0

    def threshold_for(self, label: str) -> float:
        return dict(self.thresholds).get(label, self.threshold)


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    start_s: float  # the window that fired: [start_s, end_s] of the stream
    end_s: float

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "score": round(self.score, 4),
        }


@dataclass
class DetectorStats:
    hops: int = 0  # windows due
    inferences: int = 0  # windows the model actually ran on (the gate skips the rest)
    detections: int = 0
    per_label: dict = field(default_factory=dict)


class StreamingDetector:
    def __init__(self, recognizer: OnnxRecognizer, cfg: DetectorConfig = DetectorConfig()):
        self.rec = recognizer
        self.cfg = cfg
        rate = recognizer.info.sample_rate
        self.rate_hz = rate
        self.window = recognizer.clip_samples
        self.hop = max(1, round(rate * cfg.hop_ms / 1000))
        self.n_smooth = max(1, round(cfg.smoothing_ms / cfg.hop_ms))
        self.refractory = round(rate * cfg.refractory_ms / 1000)
        self.peak_wait = round(rate * cfg.peak_wait_ms / 1000)
        self.foreground = np.flatnonzero(~recognizer.background)
        self.thresholds = np.array([cfg.threshold_for(lab) for lab in recognizer.labels])
        silence = [i for i, lab in enumerate(recognizer.labels) if lab == "_silence_"]
        self.silence_probs = np.zeros(len(recognizer.labels), np.float32)
        if silence:
            self.silence_probs[silence[0]] = 1.0
        self.gate_power = None if cfg.gate_dbfs is None else 10 ** (cfg.gate_dbfs / 10)
        self.reset()

    def reset(self) -> None:
        self.buffer = np.zeros(self.window, dtype=np.float32)  # the last `window` samples
        self.samples = 0  # samples pushed since reset
        self.next_hop = self.hop  # stream position (samples) of the next window end
        self.history: deque[np.ndarray] = deque(maxlen=self.n_smooth)
        self.last_fired = -(10**12)
        self.armed = True  # False from a detection until the scores fall below threshold
        # (class, window end, score, first window end over threshold) while rising
        self.candidate: tuple[int, int, float, int] | None = None
        self.stats = DetectorStats()
        self._due: list[tuple[int, np.ndarray]] = []  # (window end, window) awaiting the model

    def push(self, chunk: np.ndarray) -> list[Detection]:
        """Feed 16 kHz float32 samples; returns the detections they complete."""
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        detections: list[Detection] = []
        while chunk.size:
            # Take samples up to the next hop boundary (or the whole chunk).
            take = min(chunk.size, self.next_hop - self.samples)
            self._append(chunk[:take])
            chunk = chunk[take:]
            if self.samples == self.next_hop:
                self._due.append((self.samples, self.buffer.copy()))
                self.next_hop += self.hop
                if len(self._due) >= MAX_BATCH:
                    detections += self._run_due()
        detections += self._run_due()
        return detections

    def flush(self) -> list[Detection]:
        """End of stream: push half a window of silence so a word at the very end
        reaches the middle of a window."""
        found = self.push(np.zeros(self.window // 2, dtype=np.float32))
        return found + (self._emit() if self.candidate is not None else [])

    def _append(self, samples: np.ndarray) -> None:
        n = samples.size
        if n >= self.window:
            self.buffer[:] = samples[-self.window :]
        elif n:
            self.buffer[:-n] = self.buffer[n:]
            self.buffer[-n:] = samples
        self.samples += n

    def _run_due(self) -> list[Detection]:
        due = self._due
        if not due:
            return []
        ends = [end for end, _ in due]
        windows = np.stack([w for _, w in due])
        due.clear()
        self.stats.hops += len(ends)
        probs = np.tile(self.silence_probs, (len(ends), 1))
        if self.gate_power is None:
            active = np.ones(len(ends), dtype=bool)
        else:
            frames = windows[:, : (self.window // 1600) * 1600].reshape(len(ends), -1, 1600)
            active = (frames.astype(np.float64) ** 2).mean(axis=2).max(axis=1) >= self.gate_power
        if active.any():
            probs[active] = self.rec.predict(windows[active])
            self.stats.inferences += int(active.sum())
        out = []
        for end, p in zip(ends, probs):
            self.history.append(p)
            out += self._decide(end, np.mean(self.history, axis=0))
        return out

    def _decide(self, end: int, smooth: np.ndarray) -> list[Detection]:
        """One hop of the decision: arm, wait for the peak, report, disarm."""
        if not self.foreground.size:
            return []
        fg = int(self.foreground[np.argmax(smooth[self.foreground])])
        score = float(smooth[fg])
        if self.candidate is not None:
            _, _, best_score, first_end = self.candidate
            if score > best_score and end - first_end <= self.peak_wait:
                self.candidate = (fg, end, score, first_end)  # still rising: peak ahead
                return []
            return self._emit()
        if score < self.thresholds[fg]:
            # A word stays in the window for window + word length, so the
            # detector re-arms only once no command is above threshold.
            self.armed = True
            return []
        if self.armed and end - self.last_fired >= self.refractory:
            self.armed = False
            self.candidate = (fg, end, score, end)
        return []

    def _emit(self) -> list[Detection]:
        fg, end, score, _ = self.candidate
        self.candidate = None
        self.last_fired = end
        label = self.rec.labels[fg]
        self.stats.detections += 1
        self.stats.per_label[label] = self.stats.per_label.get(label, 0) + 1
        start_s = max(0, end - self.window) / self.rate_hz
        return [Detection(label, score, start_s, end / self.rate_hz)]


def detect_file(
    detector: StreamingDetector, waveform: np.ndarray, chunk_samples: int = 16000
) -> list[Detection]:
    """Run a whole recording through the streaming path (faster than real time)."""
    detector.reset()
    found = []
    for start in range(0, len(waveform), chunk_samples):
        found += detector.push(waveform[start : start + chunk_samples])
    return found + detector.flush()
