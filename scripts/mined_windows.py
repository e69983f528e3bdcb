"""Cut the listed mined windows out of the training speakers' negative stream.

    python scripts/mined_windows.py STREAM LIST OUT

STREAM is `bench/streaming.py --write-streams`'s train_negatives.wav (seeded:
the same subset gives the same stream); LIST names one window a line as
`speechlstm data mine` names it (`mined_<source>_<start>ms.wav`); each becomes
OUT/_unknown_/<name>, the 1 s from its start, byte for byte what `data mine`
wrote (but for a detection in the stream's first second, which `data mine` pads
with zeros after the detection; none is listed). recipes/mined_r1.txt holds
the 519 windows the shipped default model (the feature-distilled student of
2026-12-03) fired on at 0.5; `make verifier` trains on them, so that
rebuilding the verifier does not depend on which default model is installed
(another model would mine other windows and train another verifier).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from speechlstm.audio import load_audio
from speechlstm.labels import UNKNOWN
from speechlstm.mining import write_window

SAMPLE_RATE = 16000
NAME = re.compile(r"^mined_[A-Za-z0-9._-]+_(\d{9})ms\.wav$")


def cut(stream: Path, names: list[str], out: Path) -> int:
    """Write every listed window (one already there is kept); returns how many
    the folder holds. A name that is not a mined window's, or a window past the
    stream's end, is refused: the stream is not the one the list was made from."""
    folder = out / UNKNOWN
    if folder.is_dir():
        # A folder mined by other means (another model, another stream) would
        # silently add its windows to the teacher's training data.
        strangers = sorted(set(p.name for p in folder.iterdir()) - set(names))
        if strangers:
            raise SystemExit(
                f"{folder}: holds {len(strangers)} clip(s) not in the list "
                f"(first: {strangers[0]}); move it away or choose another folder"
            )
    wave = load_audio(str(stream), SAMPLE_RATE)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        match = NAME.match(name)
        if match is None:
            raise SystemExit(f"{name}: not a mined window's name (mined_<source>_<ms>ms.wav)")
        start = int(match.group(1)) * SAMPLE_RATE // 1000
        if start >= len(wave):
            raise SystemExit(
                f"{name}: starts after the end of {stream} ({len(wave) / SAMPLE_RATE:.1f} s)"
            )
        write_window(folder / name, wave[start : start + SAMPLE_RATE], SAMPLE_RATE, SAMPLE_RATE)
    return len(names)


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        raise SystemExit(__doc__)
    stream, listing, out = (Path(a) for a in argv)
    names = [n.strip() for n in listing.read_text().splitlines() if n.strip()]
    count = cut(stream, names, out)
    print(f"{count} mined windows in {out}/{UNKNOWN} (listed in {listing})")


if __name__ == "__main__":
    main(sys.argv[1:])
