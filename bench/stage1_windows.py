"""A second stage trained on what it is asked to judge (issue 44's lever): the
first stage's candidates in the TRAINING speakers' command stream, each cut as
the verifier sees it at detection time (its window ending where the firing
window ends) and labelled by the truth (the command whose word the detection
lies on, within 500 ms of its centre; `_unknown_` for a detection on another
word). Written as a dataset folder for `speechlstm train --add`.

    speechlstm data streams SC --split train --minutes 60 --negative-hours 0 \
        -o data/streams_train60
    python bench/stage1_windows.py data/streams_train60 data/stage1_windows \
        [--model sc12] [--threshold 0.5]
    speechlstm train ... --add data/stage1_windows --frontend embedding ...

The first stage runs with the shipped cascade's pair settings at the loosest
useful threshold (`--threshold`, every label), so the verifier learns the
candidates it will be shown.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from speechlstm.audio import load_audio  # noqa: E402
from speechlstm.detect.labelled import read_truth  # noqa: E402
from speechlstm.detect.mining import write_window  # noqa: E402
from speechlstm.detect.stream import StreamingDetector, detect_file  # noqa: E402
from speechlstm.detect.tuning import MATCH_TOLERANCE_S  # noqa: E402
from speechlstm.labels import UNKNOWN  # noqa: E402
from speechlstm.runtime import OnnxRecognizer, resolve_model  # noqa: E402
from speechlstm.shipped_verifier import pair_settings  # noqa: E402


def label_of(centre_s: float, truth: list[dict]) -> str:
    """The command whose word this detection lies on, else _unknown_."""
    near = [
        t for t in truth if abs((t["start_s"] + t["end_s"]) / 2 - centre_s) <= MATCH_TOLERANCE_S
    ]
    if not near:
        return UNKNOWN
    return min(near, key=lambda t: abs((t["start_s"] + t["end_s"]) / 2 - centre_s))["label"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("streams", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", default="sc12")
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args()
    rec = OnnxRecognizer(resolve_model(args.model), threads=1)
    cfg = (pair_settings("sc12")[0] or rec.description.detector).with_overrides(
        threshold=args.threshold
    )
    cfg = dataclasses.replace(cfg, points=())
    wave = load_audio(args.streams / "train_commands.wav", rec.sample_rate)
    truth = read_truth(args.streams / "train_truth.csv")
    window = rec.clip_samples
    counts: dict[str, int] = {}
    for det in detect_file(StreamingDetector(rec, cfg), wave):
        end = round(det.end_s * rec.sample_rate)
        centre_s = det.end_s - window / rec.sample_rate / 2
        label = label_of(centre_s, truth)
        folder = args.out / label
        folder.mkdir(parents=True, exist_ok=True)
        start = max(0, end - window)
        write_window(folder / f"stage1_{start:010d}.wav", wave[start:end], window, rec.sample_rate)
        counts[label] = counts.get(label, 0) + 1
    matched = sum(v for k, v in counts.items() if k != UNKNOWN)
    result = {"windows": counts, "commands": len(truth), "on_a_command": matched,
              "first_stage": {"threshold": cfg.threshold, "smoothing_ms": cfg.smoothing_ms},
              "out": str(args.out)}  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
