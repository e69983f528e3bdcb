"""Where a two-stage detector's matched share is capped, on the validation streams.

With the first stage at a low threshold (default 0.5; 300 ms smoothing):
1. each command of the stream: matched, another command's label, its own
   label but outside the match tolerance, or no detection at all;
2. the verifier's posteriors on the candidates that sit on a command: its
   top-1 accuracy there, and the share whose true label reaches each verifier
   threshold: times the candidates, the most any cascade with that first stage
   can match (a renaming verifier included);
3. the same verifier judging a word-centred window instead (1 s centred on
   the loudest 300 ms of the candidate's window, optionally of the 200 ms
   after it too): the cascade's matched share and false alarms an hour, beside
   the plain window.

    python bench/cascade_ceiling.py --model M --verifier V [--streams data/streams]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, machine, validation_streams  # noqa: E402

from speechlstm.debounce import TriggerDetector  # noqa: E402
from speechlstm.runtime import OnnxRecognizer  # noqa: E402
from speechlstm.tuning import (  # noqa: E402
    MATCH_TOLERANCE_S,
    evaluate_detector,
    record_all,
    replay,
)
from speechlstm.verify import Verifier, WaveVerifier, centred_window  # noqa: E402

VERIFIER_THRESHOLDS = (0.5, 0.7, 0.8, 0.85, 0.9)


def miss_kinds(rec, cfg, hops, truth) -> dict:
    """How each command of the stream fares with the first stage alone."""
    ends, scores = hops
    detections = replay(rec, cfg, ends, scores)
    kinds = {"matched": 0, "wrong label": 0, "own label, off by > 0.5 s": 0, "no detection": 0}
    for t in truth:
        centre = (t["start_s"] + t["end_s"]) / 2
        near = [d for d in detections if abs(d["centre_s"] - centre) <= MATCH_TOLERANCE_S]
        if any(d["label"] == t["label"] for d in near):
            kinds["matched"] += 1
        elif near:
            kinds["wrong label"] += 1
        elif any(
            d["label"] == t["label"] and abs(d["centre_s"] - centre) <= 2 * MATCH_TOLERANCE_S
            for d in detections
        ):
            kinds["own label, off by > 0.5 s"] += 1
        else:
            kinds["no detection"] += 1
    return kinds


def candidates_on_commands(rec, cfg, hops, truth) -> list[tuple[dict, int]]:
    """(command, window end in samples) of the candidate nearest each command."""
    ends, scores = hops
    trigger = TriggerDetector.from_config(rec.labels, rec.background, cfg, rec.sample_rate)
    fired = [f for f in (trigger.update(p, int(e)) for e, p in zip(ends, scores)) if f]
    half = rec.clip_samples / rec.sample_rate / 2
    out = []
    for t in truth:
        centre = (t["start_s"] + t["end_s"]) / 2
        near = [
            f
            for f in fired
            if abs(f.end_samples / rec.sample_rate - half - centre) <= MATCH_TOLERANCE_S
        ]
        if near:
            best = min(near, key=lambda f: abs(f.end_samples / rec.sample_rate - half - centre))
            out.append((t, best.end_samples))
    return out


class CentredWave:
    """WaveVerifier's interface, the verifier judging a word-centred window:
    the 1 s centred on the loudest LOUDEST_MS of the candidate's window (and of
    `after` samples past it, which a live detector would wait for)."""

    def __init__(self, verifier: Verifier, wave: np.ndarray, after: int = 0):
        self.verifier, self.wave, self.after = verifier, wave, after
        self.cache: dict[int, np.ndarray] = {}

    def probs(self, end: int) -> np.ndarray:
        if end not in self.cache:
            w = self.verifier.window
            hi = min(len(self.wave), end + self.after)
            audio = np.zeros(w + w // 2 + self.after, np.float32)
            piece = self.wave[max(0, hi - audio.size) : hi]
            audio[audio.size - piece.size :] = piece
            region = min(w + hi - end, audio.size)
            clip = centred_window(audio, w, region, self.verifier.rec.sample_rate)
            self.cache[end] = self.verifier.probs(clip)
        return self.cache[end]

    def ruling(self, label: str, end: int, threshold: float | None = None) -> str | None:
        return self.verifier.rule(label, self.probs(end), threshold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("speechlstm/assets/sc12.int8.onnx"))
    parser.add_argument("--verifier", type=Path, default=Path("models/sc12.verifier.onnx"))
    parser.add_argument("--streams", type=Path, default=Path("data/streams"))
    parser.add_argument("--first", type=float, default=0.5, help="first-stage threshold")
    parser.add_argument("--smoothing-ms", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=OUT_DIR / "cascade_ceiling.json")
    args = parser.parse_args()
    rec = OnnxRecognizer(args.model, threads=1)
    streams = validation_streams(args.streams)
    base = dataclasses.replace(
        rec.description.detector, smoothing_ms=args.smoothing_ms, thresholds=()
    )
    cfg = dataclasses.replace(base, threshold=args.first)
    hops = record_all(rec, base, streams)
    n = len(streams.truth)
    kinds = miss_kinds(rec, cfg, hops["stream"], streams.truth)
    print(f"first stage {args.first}: {kinds} of {n} commands")

    verifier = Verifier(OnnxRecognizer(args.verifier, threads=1), 0.5, rec.labels)
    vlabels = verifier.rec.labels
    plain = WaveVerifier(verifier, streams.commands)
    cands = candidates_on_commands(rec, cfg, hops["stream"], streams.truth)
    p_true = np.array([plain.probs(end)[vlabels.index(t["label"])] for t, end in cands])
    top_right = np.mean(
        [vlabels[int(np.argmax(plain.probs(end)))] == t["label"] for t, end in cands]
    )
    ceiling = {str(v): round(float(np.sum(p_true >= v)) / n, 4) for v in VERIFIER_THRESHOLDS}
    print(
        f"verifier on the {len(cands)} candidates that sit on a command: top-1 "
        f"{top_right:.3f}; the most a cascade can match, by verifier threshold: {ceiling}"
    )

    rate = rec.sample_rate
    variants = {
        "plain window": {"stream": plain, "negative": WaveVerifier(verifier, streams.negative)},
        "centred on the word": {
            "stream": CentredWave(verifier, streams.commands),
            "negative": CentredWave(verifier, streams.negative),
        },
        "centred, 200 ms after too": {
            "stream": CentredWave(verifier, streams.commands, rate // 5),
            "negative": CentredWave(verifier, streams.negative, rate // 5),
        },
    }
    rows = []
    for relabel in (False, True):
        verifier.relabel = relabel
        for name, waves in variants.items():
            for first in (0.5, 0.7, 0.8, 0.9):
                for vthr in (0.8, 0.85, 0.9):
                    verify = {
                        k: functools.partial(w.ruling, threshold=vthr) for k, w in waves.items()
                    }
                    row = evaluate_detector(
                        rec, dataclasses.replace(base, threshold=first), hops, streams, verify
                    )
                    rows.append(
                        {
                            "window": name,
                            "relabel": relabel,
                            "first": first,
                            "verifier": vthr,
                            **row,
                        }
                    )
                    print(
                        f"{name:26} relabel={relabel!s:5} first {first:.2f} verifier {vthr:.2f}: "
                        f"matched {row['matched']:.3f}  FA/h {row['false_per_hour']:5.1f}  "
                        f"latency {row['latency_median_ms']:.0f} ms",
                        flush=True,
                    )
    result = {
        "benchmark": "cascade_ceiling",
        "machine": machine(),
        "model": str(args.model),
        "verifier": str(args.verifier),
        "first": args.first,
        "commands": n,
        "first_stage_alone": kinds,
        "candidates_on_commands": len(cands),
        "verifier_top1_on_candidates": round(float(top_right), 4),
        "ceiling_by_verifier_threshold": ceiling,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
