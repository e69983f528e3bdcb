"""The synthesized vocabulary's words outside Speech Commands, as one `--add` folder.

    python scripts/vocab_unknown.py [SYNTH_DIR] [OUT_DIR]

(defaults: data/synth_vocab, data/vocab_unknown). Links (no audio copied)
to SYNTH_DIR's clips of every word that is not one of the 35 Speech
Commands words: given to `train --add`, they join training as
`_unknown_` (words outside the task), the negatives a stream meets between
commands. SYNTH_DIR comes from scripts/synth_vocab.sh.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from speechlstm.data.links import link_folder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MARKER = ".vocab_unknown"


def link_unknown(synth: Path, out: Path) -> Path:
    """Make `out` (once; an existing one made by this function is kept)."""
    from speechlstm.labels import SC35_WORDS

    if (out / MARKER).is_file():
        return out
    if out.exists():
        raise SystemExit(f"error: {out} exists and was not made by this script; refusing")
    if not synth.is_dir():
        raise SystemExit(f"error: {synth} is missing: run scripts/synth_vocab.sh first")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for folder in sorted(p for p in synth.iterdir() if p.is_dir()):
        if folder.name in SC35_WORDS or folder.name.startswith("_"):
            continue
        (tmp / folder.name).mkdir(parents=True)
        link_folder(folder, tmp / folder.name)
    (tmp / MARKER).write_text(f"links to {synth} made by scripts/vocab_unknown.py\n")
    tmp.rename(out)
    return out


def main() -> None:
    args = sys.argv[1:]
    synth = Path(args[0]) if args else ROOT / "data/synth_vocab"
    out = Path(args[1]) if len(args) > 1 else ROOT / "data/vocab_unknown"
    made = link_unknown(synth, out)
    words = sum(1 for p in made.iterdir() if p.is_dir())
    clips = sum(1 for _ in made.glob("*/*.wav"))
    print(f"{made}: {clips} clips of {words} words outside Speech Commands (as _unknown_)")


if __name__ == "__main__":
    main()
