"""First-stage threshold x verifier threshold, on the validation speakers' streams.

Reads the streams `bench/streaming.py --write-streams DIR` saved, records the
first stage's smoothed posteriors once (library tuner, speechlstm/tuning.py)
and replays every pair of thresholds, the verifier's rulings cached per
candidate (speechlstm/verify.py). Without --verifier, the first stage alone.

    python bench/cascade_grid.py --model M [--verifier V] [--streams data/streams] \
        [--smoothing-ms 300] [--relabel] [--verifier-thresholds 0.8,0.9]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, machine, validation_streams  # noqa: E402

from speechlstm.runtime import OnnxRecognizer  # noqa: E402
from speechlstm.tuning import evaluate_detector, record_all  # noqa: E402
from speechlstm.verify import Verifier, WaveVerifier  # noqa: E402

FIRST = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.92, 0.94)
SECOND = (0.5, 0.7, 0.8, 0.9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--verifier", type=Path, default=None)
    parser.add_argument("--streams", type=Path, default=Path("data/streams"))
    parser.add_argument("--smoothing-ms", type=float, default=300.0)
    parser.add_argument(
        "--verifier-lookback-ms",
        type=float,
        default=0.0,
        help="the verifier also judges windows ending up to this long before the detection",
    )
    parser.add_argument(
        "--relabel",
        action="store_true",
        help="a candidate the verifier hears as another command is reported as that command",
    )
    parser.add_argument(
        "--verifier-thresholds",
        default=",".join(map(str, SECOND)),
        help="comma-separated verifier thresholds to replay",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    vthresholds = tuple(float(t) for t in args.verifier_thresholds.split(","))
    rec = OnnxRecognizer(args.model, threads=1)
    streams = validation_streams(args.streams)
    base = dataclasses.replace(
        rec.description.detector, smoothing_ms=args.smoothing_ms, thresholds=()
    )
    hops = record_all(rec, base, streams)
    waves = None
    if args.verifier:
        second = Verifier(
            OnnxRecognizer(args.verifier, threads=1),
            0.5,
            rec.labels,
            args.verifier_lookback_ms,
            relabel=args.relabel,
        )
        waves = {k: WaveVerifier(second, getattr(streams, a))
                 for k, a in (("stream", "commands"), ("negative", "negative"))}  # fmt: skip
    rows = []
    for first in FIRST:
        for vthr in vthresholds if waves else (None,):
            verify = (
                {k: functools.partial(w.ruling, threshold=vthr) for k, w in waves.items()}
                if waves
                else None
            )
            cfg = dataclasses.replace(base, threshold=first)
            row = evaluate_detector(rec, cfg, hops, streams, verify)
            rows.append({"first": first, "verifier": vthr, **row})
            print(
                f"{first:5.2f} {vthr if vthr is not None else '-':>5}  matched "
                f"{row['matched']:.3f}  FA/h {row['false_per_hour']:6.1f}  "
                f"latency {row['latency_median_ms']:.0f} ms",
                flush=True,
            )
    result = {
        "benchmark": "cascade_grid",
        "machine": machine(),
        "model": str(args.model),
        "verifier": str(args.verifier) if args.verifier else None,
        "smoothing_ms": args.smoothing_ms,
        "verifier_lookback_ms": args.verifier_lookback_ms,
        "relabel": args.relabel,
        "negative_hours": round(streams.negative_hours, 2),
        "rows": rows,
    }
    out = args.out or OUT_DIR / f"cascade_grid_{args.model.parent.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
