"""File transcription: each file -> label, score and top-k (inference side, no torch).

A clip no longer than the model window is padded and classified once. A longer
recording goes through the streaming detector (stream.py) and gets a timeline
of commands, exactly as live mode would report them. `classify_waveform` is
the single-label view of a long recording used by batch scoring: windows every
`hop_ms` (the detector's hop, DetectorConfig), batched MAX_BATCH per call as in
stream.py, and the one with the strongest non-background class wins. Audio is
decoded at the recognizer's rate.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .audio import InvalidAudio, load_audio
from .config import DetectorConfig
from .runtime import OnnxRecognizer
from .stream import MAX_BATCH, StreamingDetector, detect_file


@dataclass
class FileResult:
    path: str
    label: str | None = None
    score: float | None = None
    top: list[tuple[str, float]] = field(default_factory=list)
    duration_s: float | None = None
    error: str | None = None
    detections: list | None = None  # long recordings: the streaming detector's timeline

    def to_json(self) -> dict:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        if self.detections is not None:
            return {"path": self.path, "detections": [d.to_json() for d in self.detections]}
        return {
            "path": self.path,
            "label": self.label,
            "score": round(self.score, 6),
            "top": [[lab, round(s, 6)] for lab, s in self.top],
        }


def top_k(probs: np.ndarray, labels: tuple[str, ...], k: int) -> list[tuple[str, float]]:
    return batch_top_k(probs[None], labels, k)[0]


def batch_top_k(
    probs: np.ndarray, labels: tuple[str, ...], k: int
) -> list[list[tuple[str, float]]]:
    """The k most likely (label, probability) of each row of (B, classes), one argsort."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, : max(1, k)]
    picked = np.take_along_axis(probs, order, axis=1).tolist()
    return [
        [(labels[i], s) for i, s in zip(row, scores)] for row, scores in zip(order.tolist(), picked)
    ]


def windows(waveform: np.ndarray, window_samples: int, hop_samples: int) -> np.ndarray:
    """(n_windows, window_samples) view of a waveform longer than one window;
    the last window is aligned to the end so no tail is skipped."""
    starts = list(range(0, len(waveform) - window_samples + 1, hop_samples))
    if starts[-1] != len(waveform) - window_samples:
        starts.append(len(waveform) - window_samples)
    return np.stack([waveform[s : s + window_samples] for s in starts])


def classify_waveform(
    recognizer: OnnxRecognizer, waveform: np.ndarray, hop_ms: float = DetectorConfig().hop_ms
) -> np.ndarray:
    """Probabilities (classes,) for a waveform of any length at the recognizer's
    rate; longer than the window: windows every `hop_ms` (see module doc)."""
    n = recognizer.clip_samples
    if len(waveform) <= n:
        return recognizer.predict_clip(waveform)
    hop = max(1, round(recognizer.sample_rate * hop_ms / 1000))
    frames = windows(waveform, n, hop)  # (n_windows, clip_samples)
    probs = np.concatenate(
        [recognizer.predict(frames[i : i + MAX_BATCH]) for i in range(0, len(frames), MAX_BATCH)]
    )
    foreground = np.where(recognizer.background, -1.0, probs).max(axis=1)
    best = int(np.argmax(foreground)) if (~recognizer.background).any() else 0
    return probs[best]


def transcribe_file(
    recognizer: OnnxRecognizer,
    path: str | os.PathLike,
    k: int = 1,
    detector: StreamingDetector | None = None,
) -> FileResult:
    """Never raises for bad audio: the reason goes into `FileResult.error`.

    With a `detector` (stream.StreamingDetector), a recording longer than the
    model window gets a timeline of detections instead of a single label.
    """
    try:
        wave = load_audio(path, recognizer.sample_rate)
    except InvalidAudio as exc:
        return FileResult(str(path), error=exc.reason)
    duration_s = len(wave) / recognizer.sample_rate
    if detector is not None and len(wave) > recognizer.clip_samples:
        return FileResult(str(path), duration_s=duration_s, detections=detect_file(detector, wave))
    probs = classify_waveform(recognizer, wave)
    top = top_k(probs, recognizer.labels, k)
    return FileResult(str(path), top[0][0], top[0][1], top, duration_s)


def transcribe_files(
    recognizer: OnnxRecognizer,
    paths: Iterable[str | os.PathLike],
    k: int = 1,
    detector: StreamingDetector | None = None,
) -> Iterator[FileResult]:
    for path in paths:
        yield transcribe_file(recognizer, path, k, detector)
