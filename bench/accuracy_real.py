"""Train the default recipe on real speech and report 12-class test accuracy.

Trains on the subset's unlisted clips, selects on validation_list.txt, tests
on testing_list.txt (speakers never heard in training). Prints accuracy,
per-class recall, wall time, training throughput and the machine.

    python bench/accuracy_real.py [--epochs N] [--set section.key=value ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, machine, require_subset  # noqa: E402

from speechlstm.bank import default_cache_dir  # noqa: E402
from speechlstm.config import RunConfig, apply_overrides, parse_set_option  # noqa: E402
from speechlstm.train.trainer import run_training  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], dest="settings")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "accuracy_real")
    args = parser.parse_args()
    subset = require_subset()
    overrides = parse_set_option(args.settings)
    overrides["data.task"] = "sc12"
    if args.epochs:
        overrides["train.epochs"] = args.epochs
    cfg = apply_overrides(RunConfig(), overrides)
    if args.out.exists():
        import shutil

        shutil.rmtree(args.out)
    started = time.perf_counter()
    report = run_training(subset, args.out, cfg, cache_dir=default_cache_dir(), show_progress=False)
    wall_s = time.perf_counter() - started
    rates = [h["clips_per_s"] for h in report["history"]]
    result = {
        "benchmark": "accuracy_real",
        "machine": machine(),
        "device": report["summary"]["device"],
        "test_accuracy_12class": round(report["test_accuracy"], 4),
        "test_balanced_accuracy": round(report["test_balanced_accuracy"], 4),
        "test_clips": report["test_clips"],
        "best_val_accuracy": round(report["best_val_accuracy"], 4),
        "epochs_run": len(report["history"]),
        "best_epoch": report["best_epoch"],
        "wall_s": round(wall_s, 1),
        "train_clips_per_s_median": round(sorted(rates)[len(rates) // 2], 1),
        "per_class_recall": {k: round(v["recall"], 3) for k, v in report["per_class"].items()},
        "goal": "0.95 test accuracy on unseen speakers",
        "overrides": {k: str(v) for k, v in overrides.items()},
    }
    (args.out / "bench.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
