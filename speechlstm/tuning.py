"""Tune a model's streaming detector on labelled streams (`speechlstm tune-detector`).

Inputs: a command stream (a recording with the true command times: label,
start_s, end_s) and negative audio (noise and non-command speech, an hour or
more so that 1 false alarm an hour is resolvable). The detector's per-hop
inputs (buffer, gate, smoothing) are recorded once per smoothing span through
`StreamingDetector`'s `decision` seam, and every threshold is replayed over
them, so a full search costs a few passes over the audio.

The choice: the most commands matched with at most `max_false_per_hour` false
alarms on the negative audio and a median latency within `max_latency_ms`; a
global threshold per smoothing span, then each label's own threshold lowered
(at most MAX_LABEL_DROP under the global one, and only where it adds no false
alarm). A detection matches a command when its label is right and its
window's centre lies within MATCH_TOLERANCE_S of the word's centre; latency
runs from the word's end to the hop the detection is reported at.

numpy and onnxruntime only: the inference install tunes too.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import DetectorConfig
from .debounce import TriggerDetector
from .labels import BACKGROUND_LABELS
from .settings import to_dict
from .stream import StreamingDetector, detect_file

MATCH_TOLERANCE_S = 0.5
# Fine steps near the top: with label smoothing 0.1 over 12 classes a model's
# posteriors stop near 0.91, so 0.9 to 0.95 is where the false alarms go
# from a handful an hour to none (and most of the matches with them). A
# calibrated model (export --calibrate, temperature under 1) reaches 0.99 and
# more, so the grid goes on to 0.995.
THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.88, 0.9, 0.91, 0.92, 0.93, 0.94, 0.95)
THRESHOLDS += (0.96, 0.97, 0.98, 0.99, 0.995)
SMOOTHING_MS = (200.0, 300.0, 500.0)
# A label's own threshold may sit at most this far under the global one, and
# lowering it may not add a single false alarm on the tuning hour: with ~1
# alarm an hour to spend, a per-label step that buys a few matches at the
# price of one alarm is tuning to the noise of that hour.
MAX_LABEL_DROP = 0.05


@dataclass
class LabelledStreams:
    """What the tuner measures on: the command stream, its truth, the negatives."""

    commands: np.ndarray  # float32 at the model's rate
    truth: list[dict]  # {"label", "start_s", "end_s"} per spoken command
    negative: np.ndarray  # float32 at the model's rate: nothing in it is a command
    rate_hz: int = 16_000

    @property
    def negative_hours(self) -> float:
        return len(self.negative) / self.rate_hz / 3600


def read_truth(path: str | Path) -> list[dict]:
    """A truth CSV: `label,start_s,end_s` per spoken command (header required)."""
    from .files import read_text_capped

    text = read_text_capped(path, 64 << 20, "truth file")
    rows = list(csv.DictReader(text.splitlines()))
    truth = []
    for i, row in enumerate(rows, start=2):
        try:
            start, end = float(row["start_s"]), float(row["end_s"])
            label = row["label"].strip()
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"{path}: line {i} is not label,start_s,end_s (the header names them)"
            ) from None
        if not label or not np.isfinite([start, end]).all() or end < start or start < 0:
            raise ValueError(f"{path}: line {i}: {row} is not a command with 0 <= start <= end")
        truth.append({"label": label, "start_s": start, "end_s": end})
    if not truth:
        raise ValueError(f"{path}: no commands listed")
    return truth


class HopRecorder:
    """A `decision` that keeps every smoothed hop instead of deciding."""

    def __init__(self):
        self.reset()

    def update(self, probs: np.ndarray, end_samples: int):
        self.ends.append(end_samples)
        self.scores.append(probs)
        return None

    def flush(self):
        return None

    def reset(self) -> None:
        self.ends: list[int] = []
        self.scores: list[np.ndarray] = []


def record_hops(rec, cfg: DetectorConfig, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact per-hop inputs `StreamingDetector` gives its decision (buffer, gate,
    smoothing) over `wave`: (window ends in samples, smoothed posteriors)."""
    recorder = HopRecorder()
    detect_file(StreamingDetector(rec, cfg, decision=recorder), wave)
    if not recorder.ends:
        return np.zeros(0, np.int64), np.zeros((0, len(rec.labels)), np.float32)
    return np.asarray(recorder.ends), np.stack(recorder.scores)


def replay(rec, cfg: DetectorConfig, ends, scores, verify=None) -> list[dict]:
    """Detections of `cfg`'s decision over recorded hops, with the time each is
    reported; `verify(label, end_samples)` is the second stage, as
    StreamingDetector applies it: the label to report, or None to drop the
    candidate (verify.WaveVerifier.ruling)."""
    trigger = TriggerDetector.from_config(rec.labels, rec.background, cfg, rec.sample_rate)
    out = []
    fired_at = [(trigger.update(probs, int(end)), int(end)) for end, probs in zip(ends, scores)]
    if len(ends):
        fired_at.append((trigger.flush(), int(ends[-1])))
    for fired, reported in fired_at:
        if fired is None:
            continue
        label = fired.label if verify is None else verify(fired.label, fired.end_samples)
        if label is not None:
            out.append(_detection(rec, fired, reported, label))
    return out


def _detection(rec, fired, reported_at: int, label: str) -> dict:
    end_s = fired.end_samples / rec.sample_rate
    return {
        "label": label,
        "centre_s": end_s - rec.clip_samples / rec.sample_rate / 2,
        "reported_s": reported_at / rec.sample_rate,
    }


def score_detections(detections: list[dict], truth: list[dict]) -> dict:
    """Matched and wrong-label shares of the commands, latency, and detections
    that match no command (on a command stream: a word that is not one)."""
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
        "matched": round(matched / max(1, len(truth)), 4),
        "wrong_label": round(wrong / max(1, len(truth)), 4),
        "unmatched_detections": len(detections) - len(used),
        "latency_median_ms": round(float(np.median(lat)) * 1000, 1),
        "latency_p95_ms": round(float(np.percentile(lat, 95)) * 1000, 1),
    }


def record_all(rec, cfg: DetectorConfig, streams: LabelledStreams) -> dict:
    return {
        "stream": record_hops(rec, cfg, streams.commands),
        "negative": record_hops(rec, cfg, streams.negative),
    }


def evaluate_detector(
    rec, cfg: DetectorConfig, hops: dict, streams: LabelledStreams, verify=None
) -> dict:
    """matched/wrong/latency on the command stream and false alarms an hour on the
    negative; `verify`: {"stream": f, "negative": f}, each as replay takes it."""
    verify = verify or {}
    ends, scores = hops["stream"]
    row = score_detections(replay(rec, cfg, ends, scores, verify.get("stream")), streams.truth)
    false = replay(rec, cfg, *hops["negative"], verify=verify.get("negative"))
    row["false_per_hour"] = round(len(false) / max(streams.negative_hours, 1e-9), 2)
    row["false_alarms"] = len(false)
    return row


def tune(
    rec,
    base: DetectorConfig,
    streams: LabelledStreams,
    max_false_per_hour: float,
    max_latency_ms: float | None = None,
    progress=None,
    verify=None,
):
    """(detector settings, their row, the trace of every setting tried). `verify`:
    a second stage (evaluate_detector), tuned for: the first stage may then fire
    more freely.

    The row's "budget" says what the settings meet: "all" (false alarms and
    latency), "false_alarms" (no setting met the latency bound: the most
    commands within the false-alarm budget, however late), or "none" (nothing
    met the false-alarm budget: the strictest setting). A detector that
    matches nothing is never chosen while one within the false-alarm budget
    matches something."""

    def within_alarms(row: dict) -> bool:
        return row["false_per_hour"] <= max_false_per_hour and row["matched"] > 0

    def eligible(row: dict) -> bool:
        return within_alarms(row) and (
            max_latency_ms is None or row["latency_median_ms"] <= max_latency_ms
        )

    recorded = {}
    for smoothing_ms in SMOOTHING_MS:
        cfg0 = dataclasses.replace(base, smoothing_ms=smoothing_ms, thresholds=())
        recorded[smoothing_ms] = (cfg0, record_all(rec, cfg0, streams))
        if progress:
            progress(1)
    trace: list[dict] = []
    best = _search(rec, recorded, streams, eligible, within_alarms, verify, trace)
    budget = "all"
    if best is None and max_latency_ms is not None:
        best = _search(rec, recorded, streams, within_alarms, within_alarms, verify, trace)
        budget = "false_alarms"
    if best is None:  # nothing met the false-alarm budget: the strictest setting
        cfg0, hops = recorded[SMOOTHING_MS[0]]
        cfg = dataclasses.replace(cfg0, threshold=max(THRESHOLDS))
        best = (cfg, evaluate_detector(rec, cfg, hops, streams, verify))
        budget = "none"
    return best[0], {**best[1], "budget": budget}, trace


def _search(rec, recorded: dict, streams, eligible, start_ok, verify, trace: list):
    """The most commands matched by an `eligible` setting: per smoothing span, each
    global threshold, then per-label steps from every one that matches something
    within the false-alarm budget (a global threshold just over the latency
    bound can become eligible once some labels fire sooner); None if none is."""
    best = None

    def keep(cfg, row):
        nonlocal best
        if eligible(row) and (best is None or row["matched"] > best[1]["matched"]):
            best = (cfg, row)

    for smoothing_ms, (cfg0, hops) in recorded.items():
        starts = []
        for thr in THRESHOLDS:
            cfg = dataclasses.replace(cfg0, threshold=thr)
            row = evaluate_detector(rec, cfg, hops, streams, verify)
            trace.append({"smoothing_ms": smoothing_ms, "threshold": thr, **row})
            keep(cfg, row)
            if start_ok(row):  # per-label steps add no false alarm: the budget holds
                starts.append((cfg, row))
        if not starts:  # none within the budget: per-label steps from the strictest
            cfg = dataclasses.replace(cfg0, threshold=max(THRESHOLDS))
            starts = [(cfg, evaluate_detector(rec, cfg, hops, streams, verify))]
        for start in starts:
            cfg, row = per_label_steps(rec, *start, hops, streams, eligible, verify)
            if cfg.thresholds:
                trace.append({"smoothing_ms": smoothing_ms, "per_label": to_dict(cfg), **row})
            keep(cfg, row)
    return best


def per_label_steps(
    rec, cfg: DetectorConfig, row: dict, hops: dict, streams, eligible, verify=None
):
    """Each command label's threshold lowered (at most MAX_LABEL_DROP under the
    global one) to the lowest step that matches more and adds no false alarm."""
    floor = cfg.threshold - MAX_LABEL_DROP - 1e-9
    for label in [lab for lab in rec.labels if lab not in BACKGROUND_LABELS]:
        for thr in sorted(t for t in THRESHOLDS if floor <= t < cfg.threshold_for(label)):
            per_label = dict(cfg.thresholds) | {label: thr}
            trial = dataclasses.replace(cfg, thresholds=tuple(sorted(per_label.items())))
            trial_row = evaluate_detector(rec, trial, hops, streams, verify)
            if (
                eligible(trial_row)
                and trial_row["false_alarms"] <= row["false_alarms"]
                and trial_row["matched"] > row["matched"]
            ):
                cfg, row = trial, trial_row
                break
    return cfg, row


def detector_toml(cfg: DetectorConfig) -> str:
    """A [detector] TOML section (`speechlstm export --detector FILE` reads it);
    written by hand: the inference install has no TOML writer."""
    lines = ["[detector]"]
    for key, value in to_dict(cfg).items():
        if key == "thresholds":
            continue
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        else:
            lines.append(f"{key} = {float(value)!r}")
    lines.append("")
    lines.append("[detector.thresholds]")
    for label, value in cfg.thresholds:
        lines.append(f"{json.dumps(label)} = {float(value)!r}")
    return "\n".join(lines) + "\n"
