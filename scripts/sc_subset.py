"""Link the exact Speech Commands clips a recipe uses into a dataset folder.

    python scripts/sc_subset.py SC_ROOT LIST.csv OUT_DIR

SC_ROOT is any Speech Commands tree: the official v0.02 archive
(`speechlstm data download speech-commands`, WAV) or a copy that stores the
same clips as FLAC. LIST.csv (`clip,split`, the clip as `word/file` without
extension) names every clip and its split; OUT_DIR becomes a Speech Commands
folder of symbolic links (no audio is copied) with its own
validation_list.txt and testing_list.txt, and `_background_noise_` linked.
A clip of the list missing from SC_ROOT is an error naming it: the model
would not be the same.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

from speechlstm.data.links import link_clip  # noqa: E402

SUFFIXES = (".wav", ".flac")
LISTS = {"validation": "validation_list.txt", "test": "testing_list.txt"}


def build(root: Path, clip_list: Path, out: Path) -> dict[str, int]:
    if not root.is_dir():
        raise SystemExit(f"error: {root}: no such Speech Commands folder")
    with clip_list.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    listed: dict[str, list[str]] = {"validation": [], "test": []}
    counts = {"train": 0, "validation": 0, "test": 0}
    missing = []
    out.mkdir(parents=True, exist_ok=True)
    for row in rows:
        clip, split = row["clip"], row["split"]
        if split not in counts or "/" not in clip or ".." in clip.split("/"):
            raise SystemExit(f"error: {clip_list}: bad row {row}")
        source = next((root / (clip + s) for s in SUFFIXES if (root / (clip + s)).is_file()), None)
        if source is None:
            missing.append(clip)
            continue
        link_clip(source, out / (clip + source.suffix))
        counts[split] += 1
        if split in listed:
            listed[split].append(clip + source.suffix)
    if missing:
        raise SystemExit(
            f"error: {len(missing)} listed clip(s) not in {root}, e.g. {missing[0]} "
            "(.wav or .flac); the recipe needs every one"
        )
    for split, name in LISTS.items():
        (out / name).write_text("".join(f"{c}\n" for c in listed[split]))
    noise = root / "_background_noise_"
    link = out / "_background_noise_"
    if noise.is_dir() and not link.exists():
        link_clip(noise, link)
    return counts


def main() -> None:
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    counts = build(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
    print(f"linked {counts} clips into {sys.argv[3]}", file=sys.stderr)


if __name__ == "__main__":
    os.umask(0o022)
    main()
