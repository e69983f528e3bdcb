"""Cut the listed mined windows out of the training speakers' negative stream.

    python scripts/mined_windows.py SUBSET LIST OUT
    python scripts/mined_windows.py SUBSET LIST OUT --stream WAV

The stream is rebuilt from the Speech Commands tree SUBSET as it was mined:
two hours of the training speakers' non-command words over the tree's
background noise (speechlstm.data.streams.words_over_noise, seed 0; the same
subset gives the same stream, to within two 16-bit steps of the one mined).
LIST names one window a line as `speechlstm data mine` names it
(`mined_<source>_<start>ms.wav`); each becomes OUT/_unknown_/<name>, the 1 s
from its start, what `data mine` wrote (to within those steps; but for a
detection in the stream's first second, which `data mine` pads with zeros
after the detection; none is listed). recipes/mined_r1.txt holds
the 519 windows the shipped default model (the feature-distilled student of
2026-12-03) fired on at 0.5; `make verifier` trains on them, so that
rebuilding the verifier does not depend on which default model is installed
(another model would mine other windows and train another verifier).

With `--stream WAV` the windows are cut from that file instead: the training
speakers' 5 hours of negatives `speechlstm data streams SUBSET --split train`
writes (train_negatives.wav, seeded). recipes/mined_r2.txt holds the 1,836
windows the default model fired on there at 0.5 and recipes/mined_r3.txt the
317 its first retrained model fired on: the mined first stage of the shipped
pair (`make pair-first-stage`, scripts/pair_first_stage.sh) learns both.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from speechlstm.detect.mining import write_window
from speechlstm.labels import UNKNOWN

SAMPLE_RATE = 16000
# `data mine`'s names: source, offset, and (since 2026-12-07) a hash of the window.
NAME = re.compile(r"^mined_[A-Za-z0-9._-]+_(\d{9})ms(?:_[0-9a-f]{10})?\.wav$")


def cut(wave, names: list[str], out: Path) -> int:
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
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        match = NAME.match(name)
        if match is None:
            raise SystemExit(f"{name}: not a mined window's name (mined_<source>_<ms>ms.wav)")
        start = int(match.group(1)) * SAMPLE_RATE // 1000
        if start >= len(wave):
            raise SystemExit(
                f"{name}: starts after the end of the stream ({len(wave) / SAMPLE_RATE:.1f} s)"
            )
        write_window(folder / name, wave[start : start + SAMPLE_RATE], SAMPLE_RATE, SAMPLE_RATE)
    return len(names)


def mining_stream(subset: Path, minutes: float = 120.0, seed: int = 0):
    """The training speakers' words-over-noise stream the list was mined from
    (the random draws in the order they were made then: the command order's
    permutation first)."""
    import numpy as np

    from speechlstm.data.datasets import discover
    from speechlstm.data.streams import SplitSource, words_over_noise

    source = SplitSource(discover(subset), "train")
    rng = np.random.default_rng([seed, 0])
    rng.permutation(len(source.commands))
    wave, _ = words_over_noise([], source.others, source.noise, minutes * 60, rng, False)
    # As the 16-bit WAV held it: libsndfile writes round(x * 32767), reads n / 32768.
    return (np.round(wave * 32767) / 32768).astype(np.float32)


def stream_file(path: Path):
    """A mining stream written to a WAV file, as `data mine` read it (float32)."""
    import soundfile as sf

    wave, rate = sf.read(str(path), dtype="float32", always_2d=False)
    if rate != SAMPLE_RATE or wave.ndim != 1:
        raise SystemExit(f"{path}: not a {SAMPLE_RATE} Hz mono stream")
    return wave


def main(argv: list[str]) -> None:
    stream = None
    if len(argv) == 5 and argv[3] == "--stream":
        stream = Path(argv[4])
        argv = argv[:3]
    if len(argv) != 3:
        raise SystemExit(__doc__)
    subset, listing, out = (Path(a) for a in argv)
    names = [n.strip() for n in listing.read_text().splitlines() if n.strip()]
    wave = mining_stream(subset) if stream is None else stream_file(stream)
    count = cut(wave, names, out)
    print(f"{count} mined windows in {out}/{UNKNOWN} (listed in {listing})")


if __name__ == "__main__":
    main(sys.argv[1:])
