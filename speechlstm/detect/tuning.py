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

import dataclasses
import json

import numpy as np

from ..config import DetectorConfig, OperatingPoint
from ..config_text import to_dict
from ..labels import BACKGROUND_LABELS
from .debounce import TriggerDetector
from .labelled import LabelledStreams, Recording
from .stream import StreamingDetector, detect_stream

MATCH_TOLERANCE_S = 0.5
# Fine steps near the top: with label smoothing 0.1 over 12 classes a model's
# posteriors stop near 0.91, so 0.9 to 0.95 is where the false alarms go
# from a handful an hour to none (and most of the matches with them). A
# calibrated model (export --calibrate, temperature under 1) reaches 0.99 and
# more, so the grid goes on to 0.995.
THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.88, 0.9, 0.91, 0.92, 0.93, 0.94, 0.95)
THRESHOLDS += (0.96, 0.97, 0.98, 0.99, 0.995)
SMOOTHING_MS = (200.0, 300.0, 500.0)
# The false-alarm budgets (an hour of negatives) of the operating points stored
# with a model: `--sensitivity` 0 to 1 walks them evenly.
POINT_BUDGETS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
# A label's own threshold may sit at most this far under the global one, and
# lowering it may not add a single false alarm on the tuning hour: with ~1
# alarm an hour to spend, a per-label step that buys a few matches at the
# price of one alarm is tuning to the noise of that hour.
MAX_LABEL_DROP = 0.05


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


def record_hops(rec, cfg: DetectorConfig, audio, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """The exact per-hop inputs `StreamingDetector` gives its decision (buffer, gate,
    smoothing) over `audio` (an array at the model's rate or a Recording): (window
    ends in samples, smoothed posteriors)."""
    recording = audio if isinstance(audio, Recording) else Recording(audio, rec.sample_rate)
    recorder = HopRecorder()
    detector = StreamingDetector(rec, cfg, decision=recorder)

    def blocks():
        for block in recording.blocks():
            if progress:
                progress(len(block) / recording.rate_hz)
            yield block

    detect_stream(detector, blocks())
    if not recorder.ends:
        return np.zeros(0, np.int64), np.zeros((0, len(rec.labels)), np.float32)
    return np.asarray(recorder.ends), np.stack(recorder.scores)


def smooth(raw: np.ndarray, n: int) -> np.ndarray:
    """Posteriors averaged over the last `n` hops exactly as StreamingDetector
    averages them (np.mean of its deque), from the unsmoothed ones."""
    if n <= 1:
        return raw
    out = np.empty_like(raw)
    for i in range(len(raw)):
        out[i] = np.mean(raw[max(0, i - n + 1) : i + 1], axis=0)
    return out


def compress(rec, ends: np.ndarray, scores: np.ndarray, floor: float):
    """Only the hops a decision with every threshold at or over `floor` can act
    on: those whose best command score reaches `floor`, the hop after each run
    of them (it reports or re-arms) and the last (the flush's time). A hop
    under every threshold after one that was too changes nothing in the
    TriggerDetector, so replaying the rest gives the same detections."""
    if not len(ends):
        return ends, scores
    foreground = ~np.asarray(rec.background, dtype=bool)
    loud = scores[:, foreground].max(axis=1) >= floor
    keep = loud.copy()
    keep[1:] |= loud[:-1]
    keep[-1] = True
    return ends[keep], scores[keep]


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


def record_all(rec, cfg: DetectorConfig, streams: LabelledStreams, progress=None) -> dict:
    """Hops of the command stream and of each negative recording at `cfg`."""
    return {
        "stream": record_hops(rec, cfg, streams.recording, progress),
        "negative": [record_hops(rec, cfg, n, progress) for n in streams.negatives],
    }


def evaluate_detector(
    rec, cfg: DetectorConfig, hops: dict, streams: LabelledStreams, verify=None
) -> dict:
    """matched/wrong/latency on the command stream and false alarms an hour on the
    negatives; `verify`: {"stream": f, "negative": [f per negative recording]},
    each as replay takes it."""
    verify = verify or {}
    ends, scores = hops["stream"]
    row = score_detections(replay(rec, cfg, ends, scores, verify.get("stream")), streams.truth)
    rulings = verify.get("negative") or [None] * len(hops["negative"])
    false = sum(
        len(replay(rec, cfg, e, sc, verify=f)) for (e, sc), f in zip(hops["negative"], rulings)
    )
    row["false_per_hour"] = round(false / max(streams.negative_hours, 1e-9), 2)
    row["false_alarms"] = false
    return row


class Tuner:
    """The search's measurements: the model's posteriors recorded once per
    recording (unsmoothed), smoothed per span and cut to the hops a decision
    can act on (`compress`), and every setting's row memoized, so searching
    at several false-alarm budgets and verifier thresholds costs one pass
    over the audio."""

    FLOOR = min(THRESHOLDS) - MAX_LABEL_DROP  # the lowest threshold the search tries

    def __init__(self, rec, base: DetectorConfig, streams: LabelledStreams, verify=None,
                 progress=None):  # fmt: skip
        self.rec, self.streams, self.verify = rec, streams, verify
        self.base = dataclasses.replace(base, thresholds=(), points=())
        once = dataclasses.replace(self.base, smoothing_ms=self.base.hop_ms)
        # The hop the detector really runs at (an embedding model's is its frame).
        self.hop_ms = StreamingDetector(rec, once, decision=HopRecorder()).cfg.hop_ms
        self.raw = record_all(rec, once, streams, progress)
        self._hops: dict[tuple, dict] = {}
        self._rows: dict[tuple, dict] = {}
        self.trace: list[dict] = []
        self._noted: set[str] = set()

    def forget(self) -> None:
        """Drop what was derived from `raw` (after changing it: a gate applied)."""
        self._hops.clear()
        self._rows.clear()

    def hops(self, smoothing_ms: float, exact: bool = False) -> dict:
        """Smoothed hops, cut to those a threshold at or over FLOOR acts on
        (`exact`: every hop, for a threshold under it)."""
        key = (smoothing_ms, exact)
        if key not in self._hops:
            n = max(1, round(smoothing_ms / self.hop_ms))

            def cut(pair):
                ends, raw = pair
                return compress(self.rec, ends, smooth(raw, n), 0.0 if exact else self.FLOOR)

            self._hops[key] = {
                "stream": cut(self.raw["stream"]),
                "negative": [cut(pair) for pair in self.raw["negative"]],
            }
        return self._hops[key]

    def evaluate(self, cfg: DetectorConfig, verifier_threshold: float | None = None) -> dict:
        key = (cfg.smoothing_ms, cfg.threshold, cfg.thresholds, verifier_threshold)
        if key not in self._rows:
            verify = self.verify
            if verify and verifier_threshold is not None:
                import functools

                def at(f):
                    return functools.partial(f, threshold=verifier_threshold)

                verify = {"stream": at(verify["stream"]),
                          "negative": [at(f) for f in verify["negative"]]}  # fmt: skip
            lowest = min([cfg.threshold, *(v for _, v in cfg.thresholds)])
            hops = self.hops(cfg.smoothing_ms, exact=lowest < self.FLOOR)
            row = evaluate_detector(self.rec, cfg, hops, self.streams, verify)
            self._rows[key] = row
        return dict(self._rows[key])

    def search(
        self,
        max_false_per_hour: float,
        max_latency_ms: float | None = None,
        verifier_threshold: float | None = None,
    ) -> tuple[DetectorConfig, dict]:
        """The most commands matched within the budgets (the row's "budget" says
        which were met: "all", "false_alarms" (no setting met the latency
        bound) or "none" (nothing met the false-alarm budget: the strictest
        setting)). A detector that matches nothing is never chosen while one
        within the false-alarm budget matches something."""

        def within_alarms(row: dict) -> bool:
            return row["false_per_hour"] <= max_false_per_hour and row["matched"] > 0

        def eligible(row: dict) -> bool:
            return within_alarms(row) and (
                max_latency_ms is None or row["latency_median_ms"] <= max_latency_ms
            )

        best = self._search(eligible, within_alarms, verifier_threshold)
        budget = "all"
        if best is None and max_latency_ms is not None:
            best = self._search(within_alarms, within_alarms, verifier_threshold)
            budget = "false_alarms"
        if best is None:
            cfg = dataclasses.replace(self.base, smoothing_ms=SMOOTHING_MS[0],
                                      threshold=max(THRESHOLDS))  # fmt: skip
            best = (cfg, self.evaluate(cfg, verifier_threshold))
            budget = "none"
        return best[0], {**best[1], "budget": budget}

    def _search(self, eligible, start_ok, vthr):
        """Per smoothing span, each global threshold, then per-label steps from
        every one within the false-alarm budget (a global threshold just over
        the latency bound can become eligible once some labels fire sooner)."""
        best = None

        def keep(cfg, row):
            nonlocal best
            if eligible(row) and (best is None or row["matched"] > best[1]["matched"]):
                best = (cfg, row)

        for smoothing_ms in SMOOTHING_MS:
            cfg0 = dataclasses.replace(self.base, smoothing_ms=smoothing_ms)
            starts = []
            for thr in THRESHOLDS:
                cfg = dataclasses.replace(cfg0, threshold=thr)
                row = self.evaluate(cfg, vthr)
                self._note(cfg, row, vthr)
                keep(cfg, row)
                if start_ok(row):  # per-label steps add no false alarm: the budget holds
                    starts.append((cfg, row))
            if not starts:  # none within the budget: per-label steps from the strictest
                cfg = dataclasses.replace(cfg0, threshold=max(THRESHOLDS))
                starts = [(cfg, self.evaluate(cfg, vthr))]
            for start in starts:
                cfg, row = self.per_label_steps(*start, eligible, vthr)
                if cfg.thresholds:
                    self._note(cfg, row, vthr)
                keep(cfg, row)
        return best

    def _note(self, cfg: DetectorConfig, row: dict, vthr) -> None:
        entry = {"smoothing_ms": cfg.smoothing_ms, "threshold": cfg.threshold}
        if cfg.thresholds:
            entry["per_label"] = dict(cfg.thresholds)
        if vthr is not None:
            entry["verifier_threshold"] = vthr
        key = json.dumps(entry, sort_keys=True)
        if key not in self._noted:  # the searches at other budgets meet it again
            self._noted.add(key)
            self.trace.append({**entry, **row})

    def per_label_steps(self, cfg: DetectorConfig, row: dict, eligible, vthr=None):
        """Each command label's threshold lowered (at most MAX_LABEL_DROP under the
        global one) to the lowest step that matches more and adds no false alarm."""
        floor = cfg.threshold - MAX_LABEL_DROP - 1e-9
        for label in [lab for lab in self.rec.labels if lab not in BACKGROUND_LABELS]:
            for thr in sorted(t for t in THRESHOLDS if floor <= t < cfg.threshold_for(label)):
                per_label = dict(cfg.thresholds) | {label: thr}
                trial = dataclasses.replace(cfg, thresholds=tuple(sorted(per_label.items())))
                trial_row = self.evaluate(trial, vthr)
                if (
                    eligible(trial_row)
                    and trial_row["false_alarms"] <= row["false_alarms"]
                    and trial_row["matched"] > row["matched"]
                ):
                    cfg, row = trial, trial_row
                    break
        return cfg, row

    def points(
        self,
        max_latency_ms: float | None,
        budgets: tuple[float, ...] = POINT_BUDGETS,
        verifier_thresholds: tuple[float, ...] = (),
    ) -> tuple[OperatingPoint, ...]:
        """An operating point per false-alarm budget: the search's choice there
        (with a second stage, over each verifier threshold too: the most
        commands matched, budgets met first), never fewer commands than the
        point before."""
        rank = {"all": 2, "false_alarms": 1, "none": 0}
        out = []
        for budget in budgets:
            best = None
            for vthr in verifier_thresholds or (None,):
                cfg, row = self.search(budget, max_latency_ms, vthr)
                score = (rank[row["budget"]], row["matched"], -row["false_per_hour"])
                if best is None or score > best[0]:
                    best = (score, cfg, row, vthr)
            _, cfg, row, vthr = best
            if out and row["matched"] < out[-1].matched:
                # A larger budget never gives fewer commands: the previous point
                # fits it too (a setting meeting the latency bound at this budget
                # can match fewer than one that did not at the smaller).
                out.append(dataclasses.replace(out[-1], max_false_per_hour=budget))
                continue
            out.append(
                OperatingPoint(
                    max_false_per_hour=budget,
                    threshold=cfg.threshold,
                    smoothing_ms=cfg.smoothing_ms,
                    thresholds=cfg.thresholds,
                    verifier_threshold=vthr or 0.0,
                    matched=row["matched"],
                    false_per_hour=row["false_per_hour"],
                    latency_median_ms=0.0
                    if np.isnan(row["latency_median_ms"])
                    else row["latency_median_ms"],
                )
            )
        return tuple(out)


def tune(
    rec,
    base: DetectorConfig,
    streams: LabelledStreams,
    max_false_per_hour: float,
    max_latency_ms: float | None = None,
    progress=None,
    verify=None,
):
    """(detector settings, their row, the trace of every setting tried): the
    Tuner's search at one false-alarm budget."""
    tuner = Tuner(rec, base, streams, verify, progress)
    cfg, row = tuner.search(max_false_per_hour, max_latency_ms)
    return cfg, row, tuner.trace


def detector_toml(cfg: DetectorConfig) -> str:
    """A [detector] TOML section with its operating points (`speechlstm export
    --detector FILE` reads it); written by hand: the inference install has no
    TOML writer."""

    def value(v) -> str:
        return ("true" if v else "false") if isinstance(v, bool) else repr(float(v))

    def table(pairs) -> list[str]:
        return [f"{json.dumps(label)} = {float(v)!r}" for label, v in pairs]

    lines = ["[detector]"]
    lines += [
        f"{k} = {value(v)}" for k, v in to_dict(cfg).items() if k not in ("thresholds", "points")
    ]
    lines += ["", "[detector.thresholds]", *table(cfg.thresholds)]
    for point in cfg.points:
        lines += ["", "[[detector.points]]"]
        lines += [f"{k} = {value(v)}" for k, v in to_dict(point).items() if k != "thresholds"]
        lines += ["[detector.points.thresholds]", *table(point.thresholds)]
    return "\n".join(lines) + "\n"
