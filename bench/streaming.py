"""Streaming accuracy, false alarms, latency and CPU of the live detector; tunes its defaults.

Streams are built from the real-speech subset, one speaker group at a time:

- a command stream: the split's command clips (yes no up down left right on
  off stop go) at random times over its background noise, with a non-command
  word (the other Speech Commands words, same speakers) in every other gap,
  the true word times recorded (like TensorFlow's streaming accuracy test);
- a negative stream of at least an hour: background noise and non-command
  words only, so a false-alarm rate of 1 an hour is resolvable.

`--tune` picks the detector defaults (threshold per label, smoothing) on the
VALIDATION speakers' streams: the most commands matched with at most
`--max-false-per-hour` false alarms on the negative stream and a median
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
from common import OUT_DIR, ROOT, machine, require_subset  # noqa: E402

from speechlstm.audio import SAMPLE_RATE, load_audio  # noqa: E402
from speechlstm.config import DetectorConfig, to_dict  # noqa: E402
from speechlstm.datasets import discover  # noqa: E402
from speechlstm.debounce import TriggerDetector  # noqa: E402
from speechlstm.labels import BACKGROUND_LABELS, SC12_WORDS  # noqa: E402
from speechlstm.runtime import OnnxRecognizer, default_model_path  # noqa: E402
from speechlstm.stream import StreamingDetector, detect_file  # noqa: E402

MATCH_TOLERANCE_S = 0.5
# Fine steps near the top: with label smoothing 0.1 over 12 classes a model's
# posteriors stop near 0.91, so 0.9 to 0.95 is where the false alarms go
# from a handful an hour to none (and most of the matches with them).
THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.88, 0.9, 0.91, 0.92, 0.93, 0.94, 0.95)
SMOOTHING_MS = (200.0, 300.0, 500.0)
NOISE_LEVEL = 0.05  # peak of the background noise stretches


def word_span(clip: np.ndarray, top_db: float = 30.0) -> tuple[int, int]:
    """First and last sample of the speech in a clip (10 ms frames within top_db of the peak)."""
    frame = 160
    n = len(clip) // frame
    energy = 10 * np.log10((clip[: n * frame].reshape(n, frame) ** 2).mean(axis=1) + 1e-10)
    loud = np.flatnonzero(energy > energy.max() - top_db)
    return int(loud[0] * frame), int((loud[-1] + 1) * frame)


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


class Streams:
    """The command and negative streams of one split's speakers."""

    def __init__(self, subset: Path, split: str, minutes: float, negative_minutes: float, seed=0):
        rng = np.random.default_rng([seed, {"validation": 1, "test": 2}[split]])
        index = discover(subset)
        noise = [load_audio(p) for p in index.noise_files]
        clips = index.split(split)
        commands = [c for c in clips if c.word in SC12_WORDS]
        others = [c for c in clips if c.word not in SC12_WORDS and c.word not in BACKGROUND_LABELS]
        self.split, self.speakers = split, len({c.speaker for c in clips})
        self.stream, self.truth = self._build(commands, others, noise, minutes, rng, True)
        self.negative, _ = self._build([], others, noise, negative_minutes, rng, False)

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

    @property
    def negative_hours(self) -> float:
        return len(self.negative) / SAMPLE_RATE / 3600


class _Recorder:
    """Stands in for the detector's decision and keeps every smoothed hop instead."""

    def __init__(self):
        self.ends: list[int] = []
        self.scores: list[np.ndarray] = []

    def update(self, probs, end_samples):
        self.ends.append(end_samples)
        self.scores.append(probs)

    def flush(self):
        return None

    def reset(self):
        self.ends, self.scores = [], []


def smoothed_hops(rec, cfg: DetectorConfig, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact per-hop inputs `StreamingDetector` gives its decision (buffer, gate,
    smoothing), computed once so that many decision settings can be replayed."""
    det = StreamingDetector(rec, cfg)
    det.trigger = recorder = _Recorder()
    detect_file(det, wave)
    return np.asarray(recorder.ends), np.stack(recorder.scores)


def replay(rec, cfg: DetectorConfig, ends, scores) -> list[dict]:
    """Detections of `cfg`'s decision over recorded hops, with the time each is reported."""
    trigger = TriggerDetector.from_config(rec.labels, rec.background, cfg, rec.sample_rate)
    out = []
    for end, probs in zip(ends, scores):
        fired = trigger.update(probs, int(end))
        if fired is not None:
            out.append(_detection(rec, fired, int(end)))
    fired = trigger.flush()
    if fired is not None:
        out.append(_detection(rec, fired, int(ends[-1])))
    return out


def _detection(rec, fired, reported_at: int) -> dict:
    end_s = fired.end_samples / rec.sample_rate
    return {
        "label": fired.label,
        "centre_s": end_s - rec.clip_samples / rec.sample_rate / 2,
        "reported_s": reported_at / rec.sample_rate,
    }


def score(detections: list[dict], truth: list[dict]) -> dict:
    used, matched, wrong, latencies = set(), 0, 0, []
    for t in truth:
        centre = (t["start_s"] + t["end_s"]) / 2
        near = sorted(
            (abs(d["centre_s"] - centre), i, d)
            for i, d in enumerate(detections)
            if i not in used and abs(d["centre_s"] - centre) <= MATCH_TOLERANCE_S
        )
        right = [x for x in near if x[2]["label"] == t["label"]]
        if right:
            _, i, d = right[0]
            used.add(i)
            matched += 1
            latencies.append(d["reported_s"] - t["end_s"])
        elif near:
            wrong += 1
            used.add(near[0][1])
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {
        "commands": len(truth),
        "matched": round(matched / len(truth), 4),
        "wrong_label": round(wrong / len(truth), 4),
        "unmatched_detections": len(detections) - len(used),
        "latency_median_ms": round(float(np.median(lat)) * 1000, 1),
        "latency_p95_ms": round(float(np.percentile(lat, 95)) * 1000, 1),
    }


def evaluate(rec, cfg: DetectorConfig, hops: dict, streams: Streams) -> dict:
    """matched/wrong/latency on the command stream and false alarms an hour on the negative."""
    ends, scores = hops["stream"]
    row = score(replay(rec, cfg, ends, scores), streams.truth)
    false = replay(rec, cfg, *hops["negative"])
    row["false_per_hour"] = round(len(false) / streams.negative_hours, 2)
    row["false_alarms"] = len(false)
    return row


def record_all(rec, cfg: DetectorConfig, streams: Streams) -> dict:
    return {
        "stream": smoothed_hops(rec, cfg, streams.stream),
        "negative": smoothed_hops(rec, cfg, streams.negative),
    }


# A label's own threshold may sit at most this far under the global one, and
# lowering it may not add a single false alarm on the validation hour: with
# ~1 alarm an hour to spend, a per-label step that buys a few matches at the
# price of one alarm is tuning to the noise of that hour (final-vocab's free
# tune went to 0.6 on some labels: 1 an hour on validation, 45 on test).
MAX_LABEL_DROP = 0.05


def tune(
    rec,
    base: DetectorConfig,
    streams: Streams,
    max_false_per_hour: float,
    max_latency_ms: float | None = None,
):
    """Most commands matched with at most `max_false_per_hour` (and a median
    latency within `max_latency_ms`): a global threshold per smoothing span,
    then each label's threshold lowered while that holds and adds no alarm."""

    def eligible(row: dict) -> bool:
        return row["false_per_hour"] <= max_false_per_hour and (
            max_latency_ms is None or row["latency_median_ms"] <= max_latency_ms
        )

    best, trace = None, []
    for smoothing_ms in SMOOTHING_MS:
        cfg0 = dataclasses.replace(base, smoothing_ms=smoothing_ms, thresholds=())
        hops = record_all(rec, cfg0, streams)
        start = None  # this span's best global threshold within the budget
        for thr in THRESHOLDS:
            cfg = dataclasses.replace(cfg0, threshold=thr)
            row = evaluate(rec, cfg, hops, streams)
            trace.append({"smoothing_ms": smoothing_ms, "threshold": thr, **row})
            if eligible(row) and (start is None or row["matched"] > start[1]["matched"]):
                start = (cfg, row)
        if start is None:  # none within the budget: per-label steps from the strictest
            cfg = dataclasses.replace(cfg0, threshold=max(THRESHOLDS))
            start = (cfg, evaluate(rec, cfg, hops, streams))
        cfg, row = per_label_steps(rec, *start, hops, streams, eligible)
        trace.append({"smoothing_ms": smoothing_ms, "per_label": to_dict(cfg), **row})
        if eligible(row) and (best is None or row["matched"] > best[1]["matched"]):
            best = (cfg, row)
    if best is None:  # nothing met the budget: the strictest setting
        cfg = dataclasses.replace(base, threshold=max(THRESHOLDS), thresholds=())
        hops = record_all(rec, cfg, streams)
        return cfg, evaluate(rec, cfg, hops, streams), trace
    return best[0], best[1], trace


def per_label_steps(rec, cfg: DetectorConfig, row: dict, hops: dict, streams, eligible):
    """Each command label's threshold lowered (at most MAX_LABEL_DROP under the
    global one) to the lowest step that matches more and adds no false alarm."""
    floor = cfg.threshold - MAX_LABEL_DROP - 1e-9
    for label in [lab for lab in rec.labels if lab not in BACKGROUND_LABELS]:
        for thr in sorted(t for t in THRESHOLDS if floor <= t < cfg.threshold_for(label)):
            per_label = dict(cfg.thresholds) | {label: thr}
            trial = dataclasses.replace(cfg, thresholds=tuple(sorted(per_label.items())))
            trial_row = evaluate(rec, trial, hops, streams)
            if (
                eligible(trial_row)
                and trial_row["false_alarms"] <= row["false_alarms"]
                and trial_row["matched"] > row["matched"]
            ):
                cfg, row = trial, trial_row
                break
    return cfg, row


def cpu_share(rec, cfg: DetectorConfig, wave: np.ndarray) -> float:
    """CPU seconds per audio second x 100: % of one core at real time."""
    det = StreamingDetector(rec, cfg)
    block_samples = round(det.rate_hz * 0.05)  # 50 ms blocks, as from the microphone
    started = time.process_time()
    detect_file(det, wave, chunk_samples=block_samples)
    return round(100 * (time.process_time() - started) / (len(wave) / det.rate_hz), 2)


def write_detector(cfg: DetectorConfig, path: Path) -> None:
    import tomli_w

    path.write_text(tomli_w.dumps({"detector": to_dict(cfg)}))


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
    if args.tune:
        val = Streams(subset, "validation", args.minutes, args.negative_minutes)
        tuned, row, trace = tune(
            rec, stored, val, args.max_false_per_hour, args.max_latency_ms or None
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
            write_detector(tuned, args.write_detector)
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
            **evaluate(rec, stored, hops, test),
            "cpu_percent_of_one_core": {
                "stream": cpu_share(rec, stored, five_min),
                "stream_gate_off": cpu_share(rec, ungated, five_min),
            },
        }
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
