"""The shipped models on speakers they never heard: 12-class accuracy on testing_list.txt.

Evaluates, in one run, the shipped default model (real + synthetic speech)
and the synthetic-only preset beside it (or any --model) on the real-speech
subset's test split: accuracy, balanced accuracy, per-class recall, the most
confused pairs, and the machine. Goal of the default: 0.95.

With `--verifier V` (`sc12`, the shipped one, or a file) each model is also
scored as `transcribe --verifier V` answers a clip: the two models'
probabilities averaged (transcribe.clip_probs), on the same clips and the
same generated `_silence_` clips.

    python bench/accuracy_real.py [--model M ...] [--verifier sc12]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, ROOT, machine, require_subset  # noqa: E402

from speechlstm.data.datasets import discover  # noqa: E402
from speechlstm.evaluation import evaluate, report  # noqa: E402
from speechlstm.runtime import ASSETS_DIR, OnnxRecognizer, resolve_model  # noqa: E402

SHIPPED = (ASSETS_DIR / "sc12.int8.onnx", ASSETS_DIR / "sc12_synthetic.int8.onnx")


def ensemble(rec: OnnxRecognizer, subset: Path, verifier: str) -> dict:
    """Accuracy of `transcribe --verifier` on the test split: each clip's
    probabilities averaged with the verifier's, as the product averages them."""
    import numpy as np

    from speechlstm.audio import load_audio
    from speechlstm.detect.cascade import cascade
    from speechlstm.detect.verify import Verifier
    from speechlstm.evaluation import _silence_clips
    from speechlstm.shipped_verifier import resolve_verifier
    from speechlstm.transcribe import clip_probs

    ev = evaluate(rec, subset, "test", parallel_batches=2)
    second = Verifier(OnnxRecognizer(resolve_verifier(verifier), threads=1), 0.5, rec.labels)
    detector = cascade(rec, second, rec.description.detector)
    silence = iter(_silence_clips(discover(subset), rec, sum(p.startswith("<") for p in ev.paths)))
    waves = (
        next(silence) if p.startswith("<silence:") else load_audio(p, rec.sample_rate)
        for p in ev.paths
    )
    mixed = np.array([clip_probs(rec, w, detector) for w in waves])
    return {
        "verifier": verifier,
        "clips": len(ev.paths),
        "accuracy_alone": round(float((ev.predictions == ev.targets).mean()), 4),
        "accuracy_with_verifier": round(float((mixed.argmax(1) == ev.targets).mean()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=None, help="a file or shipped name")
    parser.add_argument("--verifier", default=None, help="also score the clip ensemble with it")
    args = parser.parse_args()
    subset = require_subset()
    models = [resolve_model(m) for m in args.model] if args.model else None
    models = models or [m for m in SHIPPED if m.is_file()]
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
            **({"with_verifier": ensemble(rec, subset, args.verifier)} if args.verifier else {}),
            "seconds": round(time.perf_counter() - started, 1),
        }
    result["goal"] = "default model: accuracy >= 0.95 on speakers it never heard"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "accuracy_real.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
