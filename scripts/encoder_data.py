"""The pretrained encoder's training set: real Speech Commands clips plus synthesized
speech of a large vocabulary, linked into one Speech Commands folder (no audio copied).

    python scripts/encoder_data.py SC_ROOT LIST.csv SYNTH_DIR OUT_DIR [--exclude w1,w2]

The real clips are those LIST.csv names (sc_subset.py), with their validation
and test lists, so selection and reports stay on real speakers; every
synthesized clip of SYNTH_DIR is training data (its speakers are in no list).
`--exclude` leaves words out of both (bench/experiment_data.py builds an
encoder that never heard the ten command words).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sc_subset import build  # noqa: E402

from speechlstm.data.links import link_folder  # noqa: E402


def fresh(out: Path) -> Path:
    """`out` emptied (a folder this script made: links only) and marked as its own."""
    marker = out / ".encoder_data"
    if out.exists():
        if not marker.is_file():
            raise SystemExit(f"error: {out} exists and was not made by this script; refusing")
        shutil.rmtree(out)  # links only: rebuilt from the list every time
    out.mkdir(parents=True)
    marker.write_text("links made by scripts/encoder_data.py; rebuilt on every run\n")
    return out


def link_real(root: Path, rows: list[dict], out: Path) -> dict[str, int]:
    """Link the real clips of `rows` into `out` with their lists (sc_subset.build)."""
    with tempfile.TemporaryDirectory() as tmp:
        kept = Path(tmp) / "clips.csv"
        with kept.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["clip", "split"])
            writer.writeheader()
            writer.writerows({"clip": r["clip"], "split": r["split"]} for r in rows)
        return build(root, kept, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("clip_list", type=Path)
    parser.add_argument("synth", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--exclude", default="", help="Comma-separated words to leave out.")
    args = parser.parse_args()
    exclude = {w.strip() for w in args.exclude.split(",") if w.strip()}
    with args.clip_list.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["clip"].split("/", 1)[0] not in exclude]
    counts = link_real(args.root, rows, fresh(args.out))
    synthetic = 0
    for folder in sorted(p for p in args.synth.iterdir() if p.is_dir()):
        if folder.name in exclude or folder.name.startswith("_"):
            continue  # _unknown_ and _background_noise_: the real set has its own
        target = args.out / folder.name
        target.mkdir(exist_ok=True)
        synthetic += link_folder(folder, target)
    words = sorted(p.name for p in args.out.iterdir() if p.is_dir() and not p.name.startswith("_"))
    print(
        f"linked {counts} real and {synthetic} synthesized clips of {len(words)} words "
        f"into {args.out}" + (f" (left out: {', '.join(sorted(exclude))})" if exclude else ""),
        file=sys.stderr,
    )


if __name__ == "__main__":
    os.umask(0o022)
    main()
