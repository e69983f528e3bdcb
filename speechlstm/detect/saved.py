"""`live --save-detections DIR`: each detection's audio kept for the user to judge.

    blocks (the model's rate) -> a bounded history of the last few seconds
    detection -> waits until AFTER_S past its window has arrived
      -> DIR/<time>_<model>_<label>.wav: 1.5 s, its 1 s window and 0.25 s each side
      -> DIR/<time>_<model>_<label>.json: label, score, model, start_s, end_s, time

As Precise's `precise-listen --save-dir`: the user moves the wrong ones into
DIR/false/, and `speechlstm data mine DIR/false -m MODEL --out data/negatives`
turns each into a negative for `train --add data/negatives`
(docs/streaming.md shows the loop). Writing never stops listening: a full
disk or an unwritable folder gets one line on stderr, and later failures are
only counted. Files are written whole (files.write_atomic) with the mode an
ordinary write would give them. numpy + soundfile only.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..files import write_atomic
from .stream import Detection
from .verify import AudioHistory

BEFORE_S = 0.25  # kept before the detection's window
AFTER_S = 0.25  # and after it: 1.5 s around a 1 s window
HISTORY_S = 6.0  # how far back a detection may reach when it is reported


class SaveError(ValueError):
    """A save folder that cannot be used; the message names it."""


@dataclass
class SaveStats:
    saved: int = 0
    failed: int = 0
    paths: list[Path] = field(default_factory=list)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:40] or "x"


class DetectionSaver:
    """Writes each detection's audio and sidecar into `folder` (see module doc)."""

    def __init__(
        self,
        folder: str | Path,
        rate_hz: int,
        window_samples: int,
        log: Callable[[str], None],
    ):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise SaveError(f"{self.folder}: is a file; --save-detections names a folder")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SaveError(f"{self.folder}: cannot create ({exc.strerror or exc})") from None
        self.rate = rate_hz
        self.window = window_samples
        self.before = round(BEFORE_S * rate_hz)
        self.after = round(AFTER_S * rate_hz)
        self.history = AudioHistory(max(round(HISTORY_S * rate_hz), window_samples * 3))
        self.pending: list[tuple[Detection, float]] = []
        self.log = log
        self.stats = SaveStats()

    def feed(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """The blocks, unchanged, each kept in the history on its way through."""
        for block in blocks:
            self.push(block)
            yield block

    def push(self, samples: np.ndarray) -> None:
        self.history.push(np.asarray(samples, np.float32))
        self._write_ready(final=False)

    def add(self, det: Detection, wall_time: float | None = None) -> None:
        self.pending.append((det, time.time() if wall_time is None else wall_time))
        self._write_ready(final=False)

    def close(self) -> SaveStats:
        """Write what is still waiting (with what audio there is) and return the counts."""
        self._write_ready(final=True)
        return self.stats

    def _write_ready(self, final: bool) -> None:
        keep = []
        for det, wall in self.pending:
            end = round(det.end_s * self.rate) + self.after
            if end <= self.history.total or final:
                self._write(det, wall, min(end, self.history.total))
            else:
                keep.append((det, wall))
        self.pending = keep

    def _write(self, det: Detection, wall: float, end: int) -> None:
        import soundfile as sf

        length = self.window + self.before + self.after
        try:
            clip = self.history.window(end, length)
        except IndexError:  # older than the history: reported too late to keep
            self.stats.failed += 1
            return
        stamp = (
            time.strftime("%Y%m%d-%H%M%S", time.localtime(wall)) + f"-{int(wall % 1 * 1000):03d}"
        )
        stem = f"{stamp}_{_safe(det.model or 'model')}_{_safe(det.label)}"
        wav, meta = self.folder / f"{stem}.wav", self.folder / f"{stem}.json"
        buf = io.BytesIO()
        sf.write(buf, clip, self.rate, subtype="PCM_16", format="WAV")
        sidecar = {
            "label": det.label,
            "score": round(det.score, 4),
            "model": det.model,
            "start_s": round(det.start_s, 3),
            "end_s": round(det.end_s, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(wall)),
            "audio": wav.name,
            "audio_start_s": round((end - length) / self.rate, 3),
        }
        try:
            write_atomic(wav, buf.getvalue(), fsync=False)
            write_atomic(meta, json.dumps(sidecar, indent=1) + "\n", fsync=False)
        except OSError as exc:
            if self.stats.failed == 0:
                self.log(
                    f"error: {self.folder}: cannot save detections ({exc.strerror or exc}); "
                    "listening goes on, later failures are counted"
                )
            self.stats.failed += 1
            return
        self.stats.saved += 1
        self.stats.paths.append(wav)
