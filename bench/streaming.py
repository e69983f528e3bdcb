"""Streaming accuracy, false alarms, latency and CPU of the live detector, on the
test speakers' streams (never tuned on), for every shipped set-up.

The streams are `speechlstm data streams`'s (default folder data/streams):
per split a command stream with its truth (12 minutes, a command every other
word, the others non-command words) and 5 hours of negatives (other words,
synthesized conversation, television, music-like sound, noise). A detection
matches a command when its label is right and its window's centre lies within
500 ms of the word's centre; latency runs from the word's end to the report.

Rows: the model's stored detector (what `live` runs with no flag), each of its
operating points (`live --sensitivity S`), and with `--verifier` the cascade
at its stored pair settings and at each of the pair's points (`live
--verifier V [--sensitivity S]`); the DET figure draws both. CPU: share of
one core while `live` runs 5 minutes of the command stream at 50 ms blocks,
with and without the verifier. `--tune` first tunes the model (or the pair)
on the VALIDATION streams exactly as `speechlstm tune-detector` does, and
reports the tuned settings instead (`--write-detector FILE` saves them).

    speechlstm data streams ../shared/data/speech_commands_subset -o data/streams \
        --split validation --split test
    python bench/streaming.py [--model sc12] [--verifier sc12] [--det-png docs/images/det.png]
    python bench/streaming.py --model M --tune --write-detector M.detector.toml
    python bench/streaming.py --curves A.json B.json --det-png docs/images/det.png

Writes bench/out/streaming.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, ROOT, machine  # noqa: E402

from speechlstm.config import DetectorConfig  # noqa: E402
from speechlstm.config_text import to_dict  # noqa: E402
from speechlstm.detect.cascade import cascade, rulings  # noqa: E402
from speechlstm.detect.labelled import LabelledStreams, read_truth  # noqa: E402
from speechlstm.detect.stream import detect_file  # noqa: E402
from speechlstm.detect.tuning import (  # noqa: E402
    POINT_BUDGETS,
    Tuner,
    detector_toml,
)
from speechlstm.detect.verify import Verifier  # noqa: E402
from speechlstm.runtime import OnnxRecognizer, resolve_model  # noqa: E402
from speechlstm.shipped_verifier import first_stage, pair_settings, resolve_verifier  # noqa: E402

GOALS = (
    "test speakers: best set-up >= 0.90 matched at <= 1 false alarm an hour, median latency "
    "<= 300 ms; the default with no extra >= 0.80 matched at <= 2 an hour"
)
VERIFIER_POINT_THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95)


def streams_of(folder: Path, split: str, rate_hz: int) -> LabelledStreams:
    files = [folder / f"{split}_{kind}" for kind in ("commands.wav", "truth.csv", "negatives.wav")]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise SystemExit(
            f"{missing[0]} is missing; make the streams first: speechlstm data streams "
            f"SPEECH_COMMANDS_TREE -o {folder} --split validation --split test"
        )
    return LabelledStreams(files[0], read_truth(files[1]), [files[2]], rate_hz)


def cpu_share(rec, cfg: DetectorConfig, wave: np.ndarray, verifier=None) -> float:
    """CPU seconds per audio second x 100: % of one core at real time."""
    det = cascade(rec, verifier, cfg)
    started = time.process_time()
    detect_file(det, wave, chunk_samples=round(det.rate_hz * 0.05))  # 50 ms blocks
    return round(100 * (time.process_time() - started) / (len(wave) / det.rate_hz), 2)


def rows_at(tuner: Tuner, cfg: DetectorConfig, verifier_threshold=None) -> dict:
    """The stored settings' row, and one per operating point (by sensitivity)."""
    out = {"stored": tuner.evaluate(cfg, verifier_threshold)}
    n = len(cfg.points)
    for i, point in enumerate(cfg.points):
        at, _ = cfg.at_sensitivity(i / (n - 1) if n > 1 else 0.0)
        row = tuner.evaluate(at, point.verifier_threshold or verifier_threshold)
        out[f"sensitivity {i / max(1, n - 1):.1f}"] = {
            "tuned_for_per_hour": point.max_false_per_hour,
            "validation": {"matched": point.matched, "false_per_hour": point.false_per_hour},
            **row,
        }
    return out


def false_by_kind(tuner: Tuner, cfg: DetectorConfig, folder: Path, verifier_threshold=None):
    """The stored settings' false alarms on the test negatives by kind of audio
    (`data streams` lists each stretch's kind) and by label."""
    import csv
    import functools

    from speechlstm.detect.tuning import replay

    with open(folder / "test_negatives.csv", newline="") as fh:
        stretches = [
            (r["kind"], float(r["start_s"]), float(r["end_s"])) for r in csv.DictReader(fh)
        ]
    hours: dict[str, float] = {}
    for kind, a, b in stretches:
        hours[kind] = hours.get(kind, 0.0) + (b - a) / 3600
    ends, scores = tuner.hops(cfg.smoothing_ms)["negative"][0]
    verify = None
    if tuner.verify:
        verify = functools.partial(tuner.verify["negative"][0], threshold=verifier_threshold)
    by_kind: dict[str, int] = {k: 0 for k in hours}
    by_label: dict[str, int] = {}
    starts = np.array([a for _, a, _ in stretches])
    for det in replay(tuner.rec, cfg, ends, scores, verify):
        kind = stretches[max(0, int(np.searchsorted(starts, det["centre_s"], "right")) - 1)][0]
        by_kind[kind] += 1
        by_label[det["label"]] = by_label.get(det["label"], 0) + 1
    return {
        "per_hour_by_kind": {k: round(by_kind[k] / hours[k], 2) for k in hours},
        "hours_by_kind": {k: round(v, 2) for k, v in hours.items()},
        "by_label": dict(sorted(by_label.items(), key=lambda kv: -kv[1])),
    }


def plot(curves: dict[str, list[dict]], path: Path, hours: float) -> None:
    """Matched (y) against false alarms an hour (x, log; 0 drawn at the
    resolution of the negatives), one line per set-up, its points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 0.5 / max(hours, 1e-9)
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    for name, rows in curves.items():
        rows = sorted(rows, key=lambda r: (r["false_per_hour"], r["matched"]))
        ax.plot([max(r["false_per_hour"], floor) for r in rows], [r["matched"] for r in rows],
                marker="o", ms=4, label=name)  # fmt: skip
    ax.set_xscale("log")
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.axhline(0.9, color="grey", lw=0.8, ls=":")
    ax.set_xlabel(f"false alarms an hour (test speakers; {floor:.2g} = none in {hours:.1f} h)")
    ax.set_ylabel("commands matched")
    ax.set_title("Shipped set-ups at their operating points (bench/streaming.py)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_runs(runs: list[Path], png: Path) -> None:
    """One DET figure of the set-ups of earlier runs (their JSON), each once."""
    curves: dict[str, list[dict]] = {}
    hours = 0.0
    for path in runs:
        run = json.loads(path.read_text())
        test = run["test_speakers"]
        hours = test["negative_hours"]
        curves.setdefault(run["model"], list(test["first_stage"].values()))
        if "cascade" in test:
            name = f"{run['model']} + verifier {run['verifier']}"
            curves.setdefault(name, list(test["cascade"].values()))
    png.parent.mkdir(parents=True, exist_ok=True)
    plot(curves, png, hours)
    print(f"wrote {png}: {', '.join(curves)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=None, help="default: sc12, or with --verifier sc12 its sc12_mined"
    )
    parser.add_argument("--verifier", default=None, help="a second stage: sc12 or a file")
    parser.add_argument("--streams", type=Path, default=ROOT / "data" / "streams")
    parser.add_argument("--tune", action="store_true", help="tune on validation first")
    parser.add_argument("--max-false-per-hour", type=float, default=1.0)
    parser.add_argument("--max-latency-ms", type=float, default=300.0)
    parser.add_argument("--write-detector", type=Path, default=None)
    parser.add_argument("--det-png", type=Path, default=None, help="default bench/out/det.png")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "streaming.json")
    parser.add_argument(
        "--curves",
        type=Path,
        nargs="+",
        default=None,
        help="measure nothing: draw --det-png from these runs' JSON (every set-up in one figure)",
    )
    args = parser.parse_args()
    if args.curves:
        return plot_runs(args.curves, args.det_png or OUT_DIR / "det.png")
    args.model = first_stage(args.verifier, args.model) or "sc12"
    rec = OnnxRecognizer(resolve_model(args.model), threads=1)
    verifier = None
    cfg = rec.description.detector
    if args.verifier:
        pair_cfg, pair_threshold = pair_settings(args.verifier)
        cfg = pair_cfg or cfg
        second = OnnxRecognizer(resolve_verifier(args.verifier), threads=1)
        verifier = Verifier(second, pair_threshold or 0.5, rec.labels)
    result = {"benchmark": "streaming", "machine": machine(), "model": args.model,
              "verifier": args.verifier, "goals": GOALS}  # fmt: skip
    if args.tune:
        val = streams_of(args.streams, "validation", rec.sample_rate)
        tuner = Tuner(rec, cfg, val, rulings(verifier, val) if verifier else None)
        tuned, row = tuner.search(args.max_false_per_hour, args.max_latency_ms or None)
        vthr = VERIFIER_POINT_THRESHOLDS if verifier else ()
        points = tuner.points(args.max_latency_ms or None, POINT_BUDGETS, vthr)
        cfg = dataclasses.replace(tuned, points=points)
        result["tuned_on_validation"] = {"negative_hours": round(val.negative_hours, 2),
                                         "detector": to_dict(cfg), **row}  # fmt: skip
        if args.write_detector:
            args.write_detector.write_text(detector_toml(cfg))
    test = streams_of(args.streams, "test", rec.sample_rate)
    started = time.perf_counter()
    # The model alone at its own stored settings (what `live` runs), and with a
    # verifier the pair at the pair's settings (what `live --verifier` runs).
    own = rec.description.detector if verifier is not None else cfg
    first = Tuner(rec, own, test)
    result["test_speakers"] = {
        "negative_hours": round(test.negative_hours, 2),
        "commands": len(test.truth),
        "first_stage": rows_at(first, own),
    }
    if (args.streams / "test_negatives.csv").is_file():
        result["test_speakers"]["first_stage_false_alarms"] = false_by_kind(
            first, own, args.streams
        )
    five_min = test.commands[: 5 * 60 * rec.sample_rate]
    cpu = {"first_stage": cpu_share(rec, own, five_min)}
    curves = {f"{args.model}": list(result["test_speakers"]["first_stage"].values())}
    if verifier is not None:
        pair = Tuner(rec, cfg, test, rulings(verifier, test))
        result["test_speakers"]["cascade"] = rows_at(pair, cfg, verifier.threshold)
        if (args.streams / "test_negatives.csv").is_file():
            result["test_speakers"]["cascade_false_alarms"] = false_by_kind(
                pair, cfg, args.streams, verifier.threshold
            )
        cpu["cascade"] = cpu_share(rec, cfg, five_min, verifier)
        curves[f"{args.model} + verifier {args.verifier}"] = list(
            result["test_speakers"]["cascade"].values()
        )
    result["test_speakers"]["cpu_percent_of_one_core"] = cpu
    result["seconds"] = round(time.perf_counter() - started, 1)
    png = args.det_png or OUT_DIR / "det.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    plot(curves, png, test.negative_hours)
    result["det_png"] = str(png)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
