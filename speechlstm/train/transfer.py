"""Unlabelled audio for feature distillation (`train.feature_distill_audio`).

The embedding's frames need no label, so any speech or noise can teach the
student's encoder (the teacher issue's transfer set "may hold audio without
labels"): long recordings such as the training speakers' stream
(bench/streaming.py --write-streams) give word fragments, pairs of words and
noise at every alignment, which the labelled clips, each centred on one word,
never show. Each file is cut into clip-long windows every half clip; the
windows are embedded once (cached by content, like the clips) and drawn at
random each step. The audio stays one int16 array with window starts, so two
hours cost 230 MB, not the 460 MB of copied overlapping windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import InvalidAudio, float_to_int16, load_audio
from ..data.datasets import AUDIO_SUFFIXES
from ..progress import note

HOP_SHARE = 0.5  # a window every half clip: each moment is heard at two alignments


@dataclass(frozen=True)
class TransferAudio:
    """The unlabelled audio (all files end to end, int16) and each window's start."""

    audio: np.ndarray  # (samples,) int16
    starts: np.ndarray  # (windows,) int64; a window never crosses a file's end
    clip_samples: int

    def __len__(self) -> int:
        return len(self.starts)

    def windows(self, index: np.ndarray) -> np.ndarray:
        """The windows `index` as (len(index), clip_samples) int16."""
        return self.audio[self.starts[index, None] + np.arange(self.clip_samples)]


def audio_files(paths: tuple[str, ...]) -> list[Path]:
    """The audio files named, folders searched recursively (sorted, so a run
    draws the same windows wherever the files sit)."""
    files = []
    for name in paths:
        p = Path(name)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise ValueError(
                    f"train.feature_distill_audio {name}: a folder with no audio files"
                )
            files += found
        elif p.exists():  # load_audio refuses what is not a regular file, by name
            files.append(p)
        else:
            raise ValueError(f"train.feature_distill_audio {name}: no such file or folder")
    return files


def load_transfer(paths: tuple[str, ...], clip_samples: int, sample_rate: int) -> TransferAudio:
    """Decode the files and lay out their windows. A file that cannot be decoded
    is skipped with a warning naming it (the rest still teach); a file shorter
    than a clip is one window, padded with silence."""
    parts, starts, offset = [], [], 0
    hop = max(1, int(clip_samples * HOP_SHARE))
    for path in audio_files(paths):
        try:
            wave = float_to_int16(load_audio(path, sample_rate))
        except InvalidAudio as exc:
            note(f"train.feature_distill_audio: skipped {path}: {exc.reason}")
            continue
        if len(wave) < clip_samples:
            wave = np.pad(wave, (0, clip_samples - len(wave)))
        starts.append(offset + np.arange(0, len(wave) - clip_samples + 1, hop, dtype=np.int64))
        parts.append(wave)
        offset += len(wave)
    if not parts:
        raise ValueError(
            f"train.feature_distill_audio {', '.join(paths)}: none of the files could be decoded"
        )
    return TransferAudio(np.concatenate(parts), np.concatenate(starts), clip_samples)
