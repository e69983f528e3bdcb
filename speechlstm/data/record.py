"""Record a user's own command clips from the microphone, prompted word by word.

Each take records a little more than the clip length, keeps the loudest 1 s
(the word, not the lead-in), and is written as `<word>/<speaker>_nohash_<n>.wav`,
continuing the numbering of clips already there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ..audio import SAMPLE_RATE, crop_loudest, level_dbfs
from ..files import FolderLock
from ..mic import Microphone
from .synth import write_wav

MIN_LEVEL_DBFS = -50.0  # quieter than this: nothing was said, the take is repeated


def next_take(folder: Path, speaker: str) -> int:
    pattern = re.compile(rf"^{re.escape(speaker)}_nohash_(\d+)\.wav$")
    taken = [int(m.group(1)) for p in folder.glob("*.wav") if (m := pattern.match(p.name))]
    return max(taken, default=-1) + 1


def record_takes(
    words: list[str],
    takes: int,
    out_dir: Path,
    speaker: str,
    device=None,
    seconds: float = 1.5,
    retries: int = 2,
    prompt: Callable[[str], None] = print,
) -> dict[str, int]:
    """Record `takes` clips of each word; returns clips written per word."""
    written = {w: 0 for w in words}
    with FolderLock(out_dir, "dataset folder"), Microphone(device) as mic:
        prompt(f"recording from [{mic.device.index}] {mic.device.name}")
        for word in words:
            folder = Path(out_dir) / word
            folder.mkdir(parents=True, exist_ok=True)
            n = next_take(folder, speaker)
            for k in range(takes):
                for attempt in range(retries + 1):
                    prompt(f"say {word!r}  ({k + 1}/{takes})")
                    clip = crop_loudest(mic.record(seconds), SAMPLE_RATE)
                    if level_dbfs(clip) >= MIN_LEVEL_DBFS:
                        break
                    prompt("  heard nothing" + (", again" if attempt < retries else ", skipped"))
                else:
                    continue
                # Atomic: a take is whole or absent, and an interrupted session
                # keeps every take before it.
                write_wav(folder / f"{speaker}_nohash_{n}.wav", clip)
                n += 1
                written[word] += 1
        if mic.overflows:
            prompt(f"note: {mic.overflows} audio block(s) were dropped (overflow)")
    return written
