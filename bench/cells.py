"""Compare the recurrent cells on real speech with the same recipe and budget.

Each cell (lstm, peephole, coupled, gru, rnn; all bidirectional) is trained on
the subset's training clips with identical settings and epochs, selected on
validation_list.txt, and tested on testing_list.txt (unseen speakers). For
each: 12-class test accuracy, parameters, training clips/s (median over
epochs), ONNX CPU latency of one 1 s clip (batch 1, one thread; fp32 and
int8) and int8 top-1 agreement with fp32. Prints a Markdown table.

A cell whose result is already in the output folder is not retrained
(--force retrains), so an interrupted comparison continues where it stopped.

    python bench/cells.py [--epochs 12] [--cells lstm,gru] [--threads 1] [--force | --remeasure]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, machine, median_ms, require_subset  # noqa: E402

from speechlstm.config import CELLS, RunConfig  # noqa: E402
from speechlstm.config_text import given_settings, layered_config  # noqa: E402
from speechlstm.data.bank import default_cache_dir  # noqa: E402


def latency_ms(path: Path, clip_samples: int) -> float:
    from speechlstm.runtime import OnnxRecognizer

    rec = OnnxRecognizer(path, threads=1)
    wave = (np.random.default_rng(0).standard_normal((1, clip_samples)) * 0.1).astype(np.float32)
    return median_ms(lambda: rec.predict(wave), repeats=200)


def measure_onnx(cell: str, out: Path, clip_samples: int) -> dict:
    """Export best.pt (fp32 and int8) and time both on one thread."""
    from speechlstm.train.export import export

    fp32 = export(out / "best.pt", out / f"{cell}.onnx")
    # min_agreement 0: record the agreement instead of refusing the export
    int8 = export(out / "best.pt", out / f"{cell}.int8.onnx", int8=True, min_agreement=0.0)
    return {
        "latency_ms_fp32": round(latency_ms(fp32.path, clip_samples), 3),
        "latency_ms_int8": round(latency_ms(int8.path, clip_samples), 3),
        "int8_agreement": round(int8.int8_agreement, 4),
        "onnx_fp32_max_abs_diff": fp32.max_abs_diff,
        "model_bytes_int8": int8.size_bytes,
    }


def run_cell(cell: str, subset: Path, out: Path, overrides: dict) -> dict:
    from speechlstm.train.run import run_training

    cfg = layered_config(RunConfig(), None, [], {**overrides, "model.cell": cell})
    if out.exists():
        shutil.rmtree(out)
    started = time.perf_counter()
    report = run_training(subset, out, cfg, cache_dir=default_cache_dir(), show_progress=False)
    wall_s = time.perf_counter() - started
    rates = sorted(h["clips_per_s"] for h in report["history"])
    last = report["history"][-1]["grad_norm"]
    first = report["history"][0]["grad_norm"]
    result = {
        "cell": cell,
        "test_accuracy_12class": round(report["test_accuracy"], 4),
        "test_balanced_accuracy": round(report["test_balanced_accuracy"], 4),
        "best_val_accuracy": round(report["best_val_accuracy"], 4),
        "n_params": report["n_params"],
        "train_clips_per_s_median": round(rates[len(rates) // 2], 1),
        "epochs_run": len(report["history"]),
        "wall_s": round(wall_s, 1),
        **measure_onnx(cell, out, cfg.features.clip_samples),
        "grad_norm_first_epoch": first,
        "grad_norm_last_epoch": last,
    }
    (out / "bench.json").write_text(json.dumps(result, indent=2))
    return result


def table(results: list[dict]) -> str:
    lines = [
        "| cell | test acc | balanced | params | train clips/s | ONNX fp32 ms | ONNX int8 ms "
        "| int8 agree |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['cell']} | {r['test_accuracy_12class']:.3f} | "
            f"{r['test_balanced_accuracy']:.3f} | {r['n_params']:,} | "
            f"{r['train_clips_per_s_median']:.0f} | {r['latency_ms_fp32']:.2f} | "
            f"{r['latency_ms_int8']:.2f} | {r['int8_agreement']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--cells", default=",".join(CELLS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training")
    parser.add_argument("--set", action="append", default=[], dest="settings")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "cells")
    parser.add_argument("--force", action="store_true", help="retrain cells already measured")
    parser.add_argument(
        "--remeasure",
        action="store_true",
        help="re-export and re-time cells already trained (after an export change)",
    )
    args = parser.parse_args()
    subset = require_subset()
    overrides = given_settings(
        args.settings,
        {"data.task": "sc12", "train.epochs": args.epochs, "train.threads": args.threads},
    )
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    unknown = sorted(set(cells) - set(CELLS))
    if unknown:
        raise SystemExit(f"unknown cell(s) {unknown}; choose from {', '.join(CELLS)}")
    results = []
    for cell in cells:
        done = args.out / cell / "bench.json"
        if done.is_file() and not args.force:
            result = json.loads(done.read_text())
            if args.remeasure:
                result.update(
                    measure_onnx(cell, args.out / cell, RunConfig().features.clip_samples)
                )
                done.write_text(json.dumps(result, indent=2))
            results.append(result)
            print(f"{cell}: already trained ({done})", flush=True)
            continue
        print(f"{cell}: training {args.epochs} epochs ...", flush=True)
        results.append(run_cell(cell, subset, args.out / cell, overrides))
        print(json.dumps(results[-1]), flush=True)
    summary = {
        "benchmark": "cells",
        "machine": machine(),
        "recipe": {k: str(v) for k, v in overrides.items()},
        "results": results,
    }
    (args.out / "cells.json").write_text(json.dumps(summary, indent=2))
    print(f"\nmachine: {summary['machine']}; recipe: default + {summary['recipe']}")
    print(table(results))


if __name__ == "__main__":
    main()
