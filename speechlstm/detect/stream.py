"""Streaming command detection: ring buffer, inference every hop, energy gate, smoothing.

    chunks of any size -> ring buffer holding the model window (1 s)
      -> every hop the last window is due; the recognizer's way of running a
         hop (hop_inference.py: due windows batched into one onnxruntime
         call, at most MAX_BATCH, or one embedding frame a hop) gives posteriors
      -> energy gate: a window whose loudest GATE_FRAME_MS frame is below
         `gate_dbfs` counts as silence without running the model
      -> posteriors averaged over `smoothing_ms`
      -> the decision (debounce.TriggerDetector by default): arm, follow the
         peak for up to `peak_wait_ms`, refractory, one detection per utterance;
         with a second stage it is cascade.VerifiedDecision
      -> Detection of the peak window, in seconds of the stream

Memory is bounded (one window, one smoothing deque) however long it runs, and
results do not depend on how the audio is chunked. Whole files go through the
same path (`detect_file`), so a recording and the microphone behave alike.
Audio is at the recognizer's rate (`rate_hz`). numpy + onnxruntime only.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..config import DetectorConfig
from ..runtime import OnnxRecognizer
from .debounce import Trigger, TriggerDetector
from .hop_inference import hop_inference

__all__ = [
    "MAX_BATCH",
    "DetectorConfig",
    "Detection",
    "StreamingDetector",
    "detect_file",
    "detect_stream",
]

MAX_BATCH = 64  # hop windows classified per onnxruntime call (transcribe.py uses it too)
GATE_FRAME_MS = 100.0  # the energy gate compares the loudest frame of this length


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    start_s: float  # the window that fired: [start_s, end_s] of the stream
    end_s: float
    model: str = ""  # the model that heard it (api.Detector names each; "" when unnamed)

    def to_json(self) -> dict:
        out = {
            "label": self.label,
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "score": round(self.score, 4),
        }
        if self.model:
            out["model"] = self.model
        return out


@dataclass
class DetectorStats:
    hops: int = 0  # windows due
    inferences: int = 0  # windows the model actually ran on (the gate skips the rest)
    detections: int = 0
    verified: int = 0  # candidates the verifier ruled on
    rejected: int = 0  # of those, the ones it turned down
    relabelled: int = 0  # and the ones it reported as another command (relabel)
    per_label: dict = field(default_factory=dict)


class StreamingDetector:
    """Audio in, detections out: the ring buffer, the hops, the energy gate and
    smoothing live here; how the model runs a hop is `inference`
    (hop_inference.py, the recognizer's choice) and the decision is `decision`.

    `decision`: any object with `update(probs, end_samples) -> Trigger | None`,
    `flush()` and `reset()`, handed the smoothed posteriors of every hop
    (default: debounce.TriggerDetector at `cfg`). One that needs the audio
    may also have `hear_window(end_samples, window)` (each hop's window,
    before its update) and `hear_samples(samples)` (the stream's samples as
    they are pushed), and a `stats` dataclass whose counts are reported with
    the detector's (a verifier's rulings: cascade.py builds that detector).
    The detector tuner (tuning.py) records every hop through it once and
    replays many thresholds over the recording."""

    def __init__(
        self,
        recognizer: OnnxRecognizer,
        cfg: DetectorConfig = DetectorConfig(),
        decision=None,
        name: str = "",
        inference=None,
    ):
        self.rec = recognizer
        self.name = name  # what each Detection's `model` says
        rate = recognizer.sample_rate
        self.rate_hz = rate
        self.window = recognizer.clip_samples
        self.inference = inference or hop_inference(recognizer)
        # An embedding model streams at its own hop (one frame): its settings say so.
        cfg = self.inference.settings(cfg)
        self.cfg = cfg
        self.hop = self.inference.hop_samples(cfg.hop_ms)
        self.n_smooth = max(1, round(cfg.smoothing_ms / cfg.hop_ms))
        self.decision = decision or TriggerDetector.from_config(
            recognizer.labels, recognizer.background, cfg, rate
        )
        self._hear_samples = getattr(self.decision, "hear_samples", None)
        self._hear_window = getattr(self.decision, "hear_window", None)
        # What a gated window "predicts": certain silence (all zeros without a _silence_ class).
        silence = [i for i, lab in enumerate(recognizer.labels) if lab == "_silence_"]
        self.silence_probs = np.zeros(len(recognizer.labels), np.float32)
        if silence:
            self.silence_probs[silence[0]] = 1.0
        self.gate_power = 10 ** (cfg.gate_dbfs / 10) if cfg.gate else None
        # At most the window: a window shorter than one frame is gated as a whole.
        self.gate_frame = min(self.window, max(1, round(rate * GATE_FRAME_MS / 1000)))
        self.reset()

    def reset(self) -> None:
        self.buffer = np.zeros(self.window, dtype=np.float32)  # the last `window` samples
        self.samples = 0  # samples pushed since reset
        self.next_hop = self.hop  # stream position (samples) of the next window end
        self.history: deque[np.ndarray] = deque(maxlen=self.n_smooth)
        self.decision.reset()
        self.inference.reset()
        self.counts = DetectorStats()  # this detector's own; `stats` adds the decision's
        self._due: list[tuple[int, np.ndarray]] = []  # (window end, window) awaiting the model

    @property
    def stats(self) -> DetectorStats:
        """The counts since reset, the decision's own (`decision.stats`) included."""
        extra = getattr(self.decision, "stats", None)
        if extra is None:
            return self.counts
        return replace(self.counts, **asdict(extra))

    def push(self, chunk: np.ndarray) -> list[Detection]:
        """Feed float32 samples at `rate_hz`; returns the detections they complete."""
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
        reaches the middle of a window, then report a candidate still rising."""
        found = self.push(np.zeros(self.window // 2, dtype=np.float32))
        return found + self._report(self.decision.flush())

    def _append(self, samples: np.ndarray) -> None:
        n = samples.size
        if self._hear_samples is not None:
            self._hear_samples(samples)
        if n >= self.window:
            self.buffer[:] = samples[-self.window :]
        elif n:
            self.buffer[:-n] = self.buffer[n:]
            self.buffer[-n:] = samples
        self.samples += n

    def _gate(self, windows: np.ndarray) -> np.ndarray:
        """(B,) True where the window is loud enough to run the model on."""
        if self.gate_power is None:
            return np.ones(len(windows), dtype=bool)
        n_frames = self.window // self.gate_frame
        frames = windows[:, : n_frames * self.gate_frame].reshape(len(windows), n_frames, -1)
        return (frames.astype(np.float64) ** 2).mean(axis=2).max(axis=1) >= self.gate_power

    def _run_due(self) -> list[Detection]:
        due = self._due
        if not due:
            return []
        ends = [end for end, _ in due]
        windows = np.stack([w for _, w in due])  # (B, window)
        due.clear()
        self.counts.hops += len(ends)
        probs = np.tile(self.silence_probs, (len(ends), 1))  # (B, classes)
        self.counts.inferences += self.inference.run(windows, self._gate(windows), probs)
        out = []
        for end, p, window in zip(ends, probs, windows):
            if self._hear_window is not None:
                self._hear_window(end, window)
            self.history.append(p)
            out += self._report(self.decision.update(np.mean(self.history, axis=0), end))
        return out

    def _report(self, trigger: Trigger | None) -> list[Detection]:
        """The decision as a Detection of its window, in seconds; counted in stats."""
        if trigger is None:
            return []
        label = trigger.label
        self.counts.detections += 1
        self.counts.per_label[label] = self.counts.per_label.get(label, 0) + 1
        end = trigger.end_samples
        start_s = max(0, end - self.window) / self.rate_hz
        return [Detection(label, trigger.score, start_s, end / self.rate_hz, self.name)]


def detect_file(
    detector: StreamingDetector, waveform: np.ndarray, chunk_samples: int | None = None
) -> list[Detection]:
    """Run a whole recording (at `detector.rate_hz`) through the streaming path,
    faster than real time; `chunk_samples` defaults to one second."""
    chunk_samples = chunk_samples or detector.rate_hz
    detector.reset()
    found = []
    for start in range(0, len(waveform), chunk_samples):
        found += detector.push(waveform[start : start + chunk_samples])
    return found + detector.flush()


def detect_stream(detector: StreamingDetector, blocks) -> tuple[list[Detection], int]:
    """`detect_file` over blocks of a recording (audio.stream_audio): the
    detections and the length in samples, in memory bounded by one block."""
    detector.reset()
    found, total = [], 0
    for block in blocks:
        total += len(block)
        found += detector.push(block)
    return found + detector.flush(), total
