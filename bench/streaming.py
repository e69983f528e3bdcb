"""Streaming accuracy, false alarms, latency and CPU of the live detector; tunes its defaults.

Streams are built from the real-speech subset, one speaker group at a time:

- a command stream: the split's command clips (yes no up down left right on
  off stop go) at random times over its background noise, with a non-command
  word (the other Speech Commands words, same speakers) in every other gap,
  the true word times recorded (like TensorFlow's streaming accuracy test);
- a negative stream of at least an hour: background noise and non-command
  words only, so a false-alarm rate of 1 an hour is resolvable.

`--tune` picks the detector defaults (threshold per label, smoothing; the
library's tuner, speechlstm/tuning.py, the search `speechlstm tune-detector`
runs on a user's recordings) on the VALIDATION speakers' streams: the most
commands matched with at most `--max-false-per-hour` false alarms on the negative
stream and a median
latency within `--max-latency-ms` (300); a label's own threshold may sit up to
0.05 under the global one, and only where it adds no false alarm. `--write-detector
FILE` saves them as a [detector] TOML section that `speechlstm export
--detector FILE` stores in the model. The report always runs on the TEST
speakers' streams (never used for tuning) with the model's stored defaults,
the detector `speechlstm live` and `transcribe` use: matched (right label,
detection window centre within 500 ms of the word centre), wrong label, false
alarms per hour, latency from the word's end to the report (median, p95: the
hop the decision is made at, after waiting for the peak), and CPU.

    python bench/streaming.py [--model M] [--minutes 12] [--negative-minutes 60]
    python bench/streaming.py --model M --tune --write-detector tuned.toml
    python bench/streaming.py --model A --det B --det C --det-png docs/det.png  # DET curves
    python bench/streaming.py --model M --verifier V --verifier-thresholds 0.5,0.7,0.9
    python bench/streaming.py --write-streams data/streams --skip-report   # then:
    speechlstm tune-detector -m M --commands data/streams/validation_commands.wav \
        --truth data/streams/validation_truth.csv \
        --negatives data/streams/validation_negatives.wav --write M.detector.toml

`--write-streams DIR` saves the validation speakers' streams (16 kHz WAV, the
truth as CSV) for `speechlstm tune-detector`, the product's tuner: the same
search as `--tune`, from the command line a user runs on their own recordings;
and the TRAINING speakers' negative stream (`--mining-minutes`, noise and
non-command words only) for `speechlstm data mine`: hard negatives mined from
it never touch the speakers the detector is tuned or reported on.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, ROOT, machine, require_subset  # noqa: E402

from speechlstm.audio import SAMPLE_RATE, load_audio  # noqa: E402
from speechlstm.config import DetectorConfig  # noqa: E402
from speechlstm.data.datasets import discover  # noqa: E402
from speechlstm.labels import BACKGROUND_LABELS, SC12_WORDS  # noqa: E402
from speechlstm.runtime import OnnxRecognizer, default_model_path  # noqa: E402
from speechlstm.settings import to_dict  # noqa: E402
from speechlstm.stream import StreamingDetector, detect_file  # noqa: E402
from speechlstm.tuning import (  # noqa: E402
    LabelledStreams,
    detector_toml,
    evaluate_detector,
    record_all,
    tune,
)
from speechlstm.verify import Verifier, WaveVerifier  # noqa: E402

NOISE_LEVEL = 0.05  # peak of the background noise stretches


def word_span(
    clip: np.ndarray, top_db: float = 30.0, floor_margin_db: float = 10.0, bridge_ms: float = 150.0
) -> tuple[int, int]:
    """First and last sample of the word in a clip: of the runs of 10 ms frames
    that stand out from the clip's own noise (within top_db of the peak and
    floor_margin_db over the clip's 20th-percentile frame; gaps up to
    bridge_ms, a stop's closure, bridged), the one holding the most energy.
    Within top_db of the peak alone, a recording with noise 30 dB under the
    word spans the whole clip and puts the word's centre where it is not; the
    run with the loudest frame can be a click."""
    frame = 160
    n = len(clip) // frame
    power = (clip[: n * frame].reshape(n, frame) ** 2).mean(axis=1)
    energy = 10 * np.log10(power + 1e-10)
    floor = float(np.percentile(energy, 20))
    loud = np.flatnonzero(energy > max(energy.max() - top_db, floor + floor_margin_db))
    if not loud.size:  # nothing stands out (silence, steady noise): the whole clip
        return 0, n * frame
    # Runs: a new one starts where the gap to the previous loud frame exceeds the bridge.
    starts = np.r_[0, np.flatnonzero(np.diff(loud) > round(bridge_ms / 10)) + 1]
    ends = np.r_[starts[1:], len(loud)]
    totals = [power[loud[a] : loud[b - 1] + 1].sum() for a, b in zip(starts, ends)]
    best = int(np.argmax(totals))
    return int(loud[starts[best]] * frame), int((loud[ends[best] - 1] + 1) * frame)


def background(waves: list[np.ndarray], n: int, rng) -> np.ndarray:
    out = np.zeros(n, dtype=np.float32)
    pos = 0
    while pos < n:  # 5-20 s stretches of randomly chosen noise recordings
        w = waves[rng.integers(len(waves))]
        length = min(n - pos, int(rng.uniform(5, 20) * SAMPLE_RATE), len(w))
        start = rng.integers(0, len(w) - length + 1)
        seg = w[start : start + length]
        out[pos : pos + length] = seg / (np.abs(seg).max() + 1e-9) * NOISE_LEVEL
        pos += length
    return out


class Streams(LabelledStreams):
    """The command and negative streams of one split's speakers (what
    `speechlstm tune-detector` takes as --commands, --truth and --negatives)."""

    def __init__(self, subset: Path, split: str, minutes: float, negative_minutes: float, seed=0):
        rng = np.random.default_rng([seed, {"train": 0, "validation": 1, "test": 2}[split]])
        index = discover(subset)
        noise = [load_audio(p) for p in index.noise_files]
        clips = index.split(split)
        commands = [c for c in clips if c.word in SC12_WORDS]
        others = [c for c in clips if c.word not in SC12_WORDS and c.word not in BACKGROUND_LABELS]
        self.split, self.speakers = split, len({c.speaker for c in clips})
        stream, truth = self._build(commands, others, noise, minutes, rng, True)
        negative, _ = self._build([], others, noise, negative_minutes, rng, False)
        super().__init__(stream, truth, negative, SAMPLE_RATE)

    @property
    def stream(self) -> np.ndarray:
        return self.commands

    @staticmethod
    def _build(commands, others, noise, minutes, rng, with_commands: bool):
        n = int(minutes * 60 * SAMPLE_RATE)
        out = background(noise, n, rng)
        truth, pos, k = [], SAMPLE_RATE, 0
        order = rng.permutation(len(commands)) if commands else []
        while pos + SAMPLE_RATE < n:
            # Commands alternate with non-command words; the negative stream has only the latter.
            is_command = with_commands and k % 2 == 0
            if is_command:
                clip = commands[order[(k // 2) % len(order)]]
            else:
                clip = others[rng.integers(len(others))]
            k += 1
            wave = load_audio(clip.path)[:SAMPLE_RATE] * rng.uniform(0.5, 1.0)
            lo, hi = word_span(wave)
            out[pos : pos + len(wave)] += wave
            if is_command:
                truth.append(
                    {"label": clip.word, "start_s": (pos + lo) / SAMPLE_RATE,
                     "end_s": (pos + hi) / SAMPLE_RATE}
                )  # fmt: skip
            pos += len(wave) + int(rng.uniform(1.0, 3.0) * SAMPLE_RATE)
        return np.clip(out, -1, 1), truth


def write_streams(streams: Streams, folder: Path) -> None:
    """SPLIT_commands.wav, SPLIT_truth.csv (label,start_s,end_s), SPLIT_negatives.wav."""
    import csv

    folder.mkdir(parents=True, exist_ok=True)
    name = streams.split
    sf.write(folder / f"{name}_commands.wav", streams.commands, SAMPLE_RATE, subtype="PCM_16")
    sf.write(folder / f"{name}_negatives.wav", streams.negative, SAMPLE_RATE, subtype="PCM_16")
    with open(folder / f"{name}_truth.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["label", "start_s", "end_s"])
        writer.writeheader()
        for row in streams.truth:
            writer.writerow({k: (round(v, 3) if k != "label" else v) for k, v in row.items()})


def wave_verifiers(verifier, streams) -> dict | None:
    """The second stage over a stream pair, as the tuner's replay takes it."""
    if verifier is None:
        return None
    return {
        "stream": WaveVerifier(verifier, streams.commands).ruling,
        "negative": WaveVerifier(verifier, streams.negative).ruling,
    }


def cpu_share(rec, cfg: DetectorConfig, wave: np.ndarray, verifier=None) -> float:
    """CPU seconds per audio second x 100: % of one core at real time."""
    det = StreamingDetector(rec, cfg, verifier=verifier)
    block_samples = round(det.rate_hz * 0.05)  # 50 ms blocks, as from the microphone
    started = time.process_time()
    detect_file(det, wave, chunk_samples=block_samples)
    return round(100 * (time.process_time() - started) / (len(wave) / det.rate_hz), 2)


# The DET curve's thresholds: the tuner's grid, finer at the top, and the extremes.
DET_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.88, 0.9, 0.91, 0.92, 0.93,
                  0.94, 0.95, 0.96, 0.97, 0.98, 0.99)  # fmt: skip


def det_points(rec, cfg: DetectorConfig, hops: dict, streams) -> list[dict]:
    """Matched against false alarms an hour, one point per global threshold (the
    model's smoothing and other settings; per-label thresholds dropped)."""
    points = []
    for thr in DET_THRESHOLDS:
        trial = dataclasses.replace(cfg, threshold=thr, thresholds=())
        row = evaluate_detector(rec, trial, hops, streams)
        points.append({"threshold": thr, "matched": row["matched"], "fph": row["false_per_hour"]})
    return points


def plot_det(curves: dict[str, list[dict]], path: Path, hours: float) -> None:
    """One line per model: matched (y) against false alarms an hour (x, log scale;
    0 drawn at the resolution of the negative audio)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 0.5 / max(hours, 1e-9)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, points in curves.items():
        xs = [max(p["fph"], floor) for p in points]
        ax.plot(xs, [p["matched"] for p in points], marker="o", ms=3, label=name)
    ax.set_xscale("log")
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.axhline(0.9, color="grey", lw=0.8, ls=":")
    ax.set_xlabel(f"false alarms an hour (test speakers; {floor:.2g} = none in {hours:.1f} h)")
    ax.set_ylabel("commands matched")
    ax.set_title("Streaming detector: DET curve (bench/streaming.py)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--minutes", type=float, default=12.0, help="command stream length")
    parser.add_argument("--negative-minutes", type=float, default=60.0)
    parser.add_argument("--tune", action="store_true", help="choose defaults on validation")
    parser.add_argument("--max-false-per-hour", type=float, default=1.0)
    parser.add_argument(
        "--max-latency-ms",
        type=float,
        default=300.0,
        help="with --tune: median latency bound (the goal); 0 for none",
    )
    parser.add_argument("--write-detector", type=Path, default=None)
    parser.add_argument("--skip-report", action="store_true", help="with --tune: only tune")
    parser.add_argument(
        "--out", type=Path, default=None, help="report file (default bench/out/streaming.json)"
    )
    parser.add_argument(
        "--det",
        type=Path,
        action="append",
        default=None,
        help="also draw the DET curve of this model on the test streams (repeatable; "
        "the --model is drawn too)",
    )
    parser.add_argument("--det-png", type=Path, default=None, help="default bench/out/det.png")
    parser.add_argument(
        "--write-streams",
        type=Path,
        default=None,
        help="save the validation streams as WAV + truth CSV for `speechlstm tune-detector`",
    )
    parser.add_argument(
        "--mining-minutes",
        type=float,
        default=120.0,
        help="with --write-streams: the training speakers' negative stream's length",
    )
    parser.add_argument(
        "--verifier",
        type=Path,
        default=None,
        help="a second-stage model (speechlstm/verify.py): report (and --tune) with it",
    )
    parser.add_argument(
        "--verifier-thresholds",
        default="0.5",
        help="comma-separated verifier thresholds to report; the first is tuned for",
    )
    parser.add_argument(
        "--verifier-relabel",
        action="store_true",
        help="a candidate the verifier hears as another command is reported as that command",
    )
    parser.add_argument(
        "--verifier-centre",
        action="store_true",
        help="the verifier judges the window centred on the loudest 300 ms of the detection's",
    )
    args = parser.parse_args()
    subset = require_subset()
    model = args.model or default_model_path()
    rec = OnnxRecognizer(model, threads=1)
    stored = rec.description.detector
    result = {
        "benchmark": "streaming",
        "machine": machine(),
        "model": str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model),
        "stored_detector": to_dict(stored),
        "goals": "test speakers: matched >= 0.90, <= 1 false alarm an hour, median latency "
        "<= 300 ms",
    }
    if args.write_streams:
        write_streams(
            Streams(subset, "validation", args.minutes, args.negative_minutes), args.write_streams
        )
        train = Streams(subset, "train", 0.0, args.mining_minutes)
        sf.write(args.write_streams / "train_negatives.wav", train.negative, SAMPLE_RATE,
                 subtype="PCM_16")  # fmt: skip
        result["wrote_streams"] = str(args.write_streams)
    verifier = None
    vthresholds = [float(x) for x in args.verifier_thresholds.split(",")]
    if args.verifier:
        verifier = Verifier(
            OnnxRecognizer(args.verifier, threads=1),
            vthresholds[0],
            rec.labels,
            relabel=args.verifier_relabel,
            centre=args.verifier_centre,
        )
        result["verifier"] = str(args.verifier)
        result["verifier_relabel"] = args.verifier_relabel
        result["verifier_centre"] = args.verifier_centre
    if args.tune:
        val = Streams(subset, "validation", args.minutes, args.negative_minutes)
        tuned, row, trace = tune(
            rec,
            stored,
            val,
            args.max_false_per_hour,
            args.max_latency_ms or None,
            verify=wave_verifiers(verifier, val),
        )
        result["tuned_on_validation"] = {
            "speakers": val.speakers,
            "stream_minutes": args.minutes,
            "negative_hours": round(val.negative_hours, 2),
            "detector": to_dict(tuned),
            **row,
            "sweep": trace,
        }
        if args.write_detector:
            args.write_detector.write_text(detector_toml(tuned))
            result["wrote"] = str(args.write_detector)
        stored = tuned
    if not args.skip_report:
        test = Streams(subset, "test", args.minutes, args.negative_minutes)
        hops = record_all(rec, stored, test)
        five_min = test.stream[: 5 * 60 * SAMPLE_RATE]
        ungated = dataclasses.replace(stored, gate=False)
        result["test_speakers"] = {
            "speakers": test.speakers,
            "stream_minutes": args.minutes,
            "negative_hours": round(test.negative_hours, 2),
            **evaluate_detector(rec, stored, hops, test),
            "cpu_percent_of_one_core": {
                "stream": cpu_share(rec, stored, five_min),
                "stream_gate_off": cpu_share(rec, ungated, five_min),
            },
        }
        if verifier is not None:
            rows = {}
            verify = wave_verifiers(verifier, test)
            for vthr in vthresholds:
                thresholded = {k: functools.partial(f, threshold=vthr) for k, f in verify.items()}
                rows[str(vthr)] = evaluate_detector(rec, stored, hops, test, thresholded)
            calls = verifier.calls
            share = cpu_share(rec, stored, five_min, verifier)
            result["test_speakers"]["with_verifier"] = {
                "by_verifier_threshold": rows,
                "verifier_runs": calls,
                "cpu_percent_of_one_core": share,
            }
    if args.det and not args.skip_report:
        curves = {result["model"]: det_points(rec, stored, hops, test)}
        for other in args.det:
            orec = OnnxRecognizer(other, threads=1)
            ocfg = orec.description.detector
            curves[str(other)] = det_points(orec, ocfg, record_all(orec, ocfg, test), test)
        png = args.det_png or OUT_DIR / "det.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        plot_det(curves, png, test.negative_hours)
        result["det"] = {"png": str(png), "curves": curves}
    out = args.out or OUT_DIR / "streaming.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    summary = {k: v for k, v in result.items() if k != "tuned_on_validation"}
    if "tuned_on_validation" in result:
        summary["tuned_on_validation"] = {
            k: v for k, v in result["tuned_on_validation"].items() if k != "sweep"
        }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
