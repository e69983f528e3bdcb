"""The shipped models on speakers they never heard: 12-class accuracy on testing_list.txt.

Evaluates, in one run, the shipped default model (real + synthetic speech)
and the synthetic-only preset beside it (or any --model) on the real-speech
subset's test split: accuracy, balanced accuracy, per-class recall, the most
confused pairs, and the machine. Goal of the default: 0.95.

    python bench/accuracy_real.py [--model M ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, ROOT, machine, require_subset  # noqa: E402

from speechlstm.evaluation import evaluate, report  # noqa: E402
from speechlstm.runtime import ASSETS_DIR, OnnxRecognizer  # noqa: E402

SHIPPED = (ASSETS_DIR / "sc12.int8.onnx", ASSETS_DIR / "sc12_synthetic.int8.onnx")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", default=None)
    args = parser.parse_args()
    subset = require_subset()
    models = args.model or [m for m in SHIPPED if m.is_file()]
    result = {"benchmark": "accuracy_real", "machine": machine(), "split": "test", "models": {}}
    for model in models:
        started = time.perf_counter()
        rec = OnnxRecognizer(model, threads=1)
        rep = report(evaluate(rec, subset, "test", parallel_batches=2))
        name = str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model)
        result["models"][name] = {
            "trained_on": rec.description.training.source,
            "clips": rep["clips"],
            "accuracy": round(rep["accuracy"], 4),
            "balanced_accuracy": round(rep["balanced_accuracy"], 4),
            "per_class_recall": {k: round(v["recall"], 3) for k, v in rep["per_class"].items()},
            "most_confused": rep["most_confused"][:5],
            "seconds": round(time.perf_counter() - started, 1),
        }
    result["goal"] = "default model: accuracy >= 0.95 on speakers it never heard"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "accuracy_real.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
