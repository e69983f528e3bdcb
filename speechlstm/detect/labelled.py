"""Labelled audio the detector tuner reads (`speechlstm tune-detector`, bench/):
recordings (an array at the model's rate, or a file decoded block by block and
read at a candidate's window without loading it whole), the streams (a
command recording, its truth, negative recordings) and the truth CSV.

numpy and soundfile only.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np


class Recording:
    """Audio the tuner reads: an array at the model's rate, or a file decoded
    block by block (an hour of negatives never sits in memory whole)."""

    def __init__(self, source, rate_hz: int = 16_000):
        self.rate_hz = rate_hz
        self.wave = source if isinstance(source, np.ndarray) else None
        self.path = None if self.wave is not None else Path(source)
        if self.wave is not None:
            self.samples = len(self.wave)
        else:
            from ..audio import InvalidAudio, _check_file, sound_file

            with sound_file(self.path, _check_file(self.path)) as f:  # the file and its header
                if f.frames <= 0:
                    raise InvalidAudio(self.path, "no audio frames (empty or truncated)")
                self.samples = round(f.frames * rate_hz / f.samplerate)

    @property
    def name(self) -> str:
        return str(self.path) if self.path else "audio"

    def blocks(self):
        if self.wave is not None:
            for start in range(0, len(self.wave), self.rate_hz):
                yield self.wave[start : start + self.rate_hz]
        else:
            from ..audio import stream_audio

            yield from stream_audio(self.path, self.rate_hz)

    def window(self, end: int, length: int) -> np.ndarray:
        """The `length` samples ending at `end` (zeros before the start)."""
        lo = max(0, end - length)
        piece = self.wave[lo:end] if self.wave is not None else self._read(lo, end)
        clip = np.zeros(length, np.float32)
        clip[length - len(piece) :] = piece
        return clip

    def _read(self, lo: int, end: int) -> np.ndarray:
        import soundfile as sf

        with sf.SoundFile(os.fsencode(self.path)) as f:
            scale = f.samplerate / self.rate_hz
            f.seek(min(f.frames, int(lo * scale)))
            data = f.read(max(0, int(np.ceil((end - lo) * scale))), dtype="float32", always_2d=True)
        mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
        if scale != 1:
            import soxr

            # A file at another rate: its window is resampled alone (the stream's
            # resampler carries state between blocks; the two differ only at the edges).
            mono = soxr.resample(mono, f.samplerate, self.rate_hz)
        return np.clip(mono[: end - lo], -1.0, 1.0)


class LabelledStreams:
    """What the tuner measures on: the command stream, its truth, the negatives
    (arrays at the model's rate or audio files; several negative recordings are
    each run from their own start)."""

    def __init__(self, commands, truth: list[dict], negative, rate_hz: int = 16_000):
        self.rate_hz = rate_hz
        self.truth = truth
        self.recording = Recording(commands, rate_hz)
        negatives = negative if isinstance(negative, list | tuple) else [negative]
        self.negatives = [Recording(n, rate_hz) for n in negatives]

    @property
    def commands(self) -> np.ndarray:
        """The command stream in memory (it is minutes long, the negatives hours)."""
        if self.recording.wave is None:
            self.recording.wave = np.concatenate(list(self.recording.blocks()))
        return self.recording.wave

    @property
    def negative_hours(self) -> float:
        return sum(n.samples for n in self.negatives) / self.rate_hz / 3600


def read_truth(path: str | Path) -> list[dict]:
    """A truth CSV: `label,start_s,end_s` per spoken command (header required)."""
    from ..files import read_text_capped

    text = read_text_capped(path, 64 << 20, "truth file")
    rows = list(csv.DictReader(text.splitlines()))
    truth = []
    for i, row in enumerate(rows, start=2):
        try:
            start, end = float(row["start_s"]), float(row["end_s"])
            label = row["label"].strip()
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"{path}: line {i} is not label,start_s,end_s (the header names them)"
            ) from None
        if not label or not np.isfinite([start, end]).all() or end < start or start < 0:
            raise ValueError(f"{path}: line {i}: {row} is not a command with 0 <= start <= end")
        truth.append({"label": label, "start_s": start, "end_s": end})
    if not truth:
        raise ValueError(f"{path}: no commands listed")
    return truth
