"""How far does synthetic speech get on real speakers?

1. Accuracy of the synthetic-only preset (speechlstm/assets/sc12_synthetic.int8.onnx,
   trained only on synthetic speech, `make synthetic-model`) on
   the real-speech subset's testing_list.txt, 12-class, overall and per class.
2. Synthesis speed (clips/s) on this machine.
3. Time and CPU cost of the README demo (scripts/demo.sh), set-up excluded.

    python bench/synthetic_to_real.py [--model M] [--skip-demo]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, ROOT, machine, require_subset  # noqa: E402

from speechlstm import metrics  # noqa: E402
from speechlstm.audio import load_audio  # noqa: E402
from speechlstm.data.datasets import discover  # noqa: E402
from speechlstm.labels import SILENCE, UNKNOWN  # noqa: E402
from speechlstm.runtime import ASSETS_DIR, OnnxRecognizer  # noqa: E402


def real_accuracy(model: Path, subset: Path, split: str = "test") -> dict:
    """12-class accuracy of `model` on the subset's `split` list ("test" or "validation")."""
    rec = OnnxRecognizer(model, threads=2)
    labels = rec.labels
    test = discover(subset).split(split)
    targets, waves = [], []
    for clip in test:
        word = clip.word if clip.word in labels else (SILENCE if clip.word == SILENCE else UNKNOWN)
        targets.append(labels.index(word))
        waves.append(load_audio(clip.path)[: rec.clip_samples])
    batch = np.stack([np.pad(w, (0, rec.clip_samples - len(w))) for w in waves])
    probs = np.concatenate([rec.predict(batch[i : i + 256]) for i in range(0, len(batch), 256)])
    cm = metrics.confusion_matrix(np.array(targets), probs.argmax(1), len(labels))
    per_class = metrics.per_class(cm, labels)
    return {
        "model": str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model),
        "test_clips": len(targets),
        "accuracy_12class": round(metrics.accuracy(cm), 4),
        "balanced_accuracy": round(metrics.balanced_accuracy(cm), 4),
        "per_class_recall": {k: round(v["recall"], 3) for k, v in per_class.items()},
        "goal": 0.85,
    }


def synthesis_speed(n_words: int = 4, clips: int = 25) -> dict:
    from speechlstm.data.synth import SynthConfig, synthesize_dataset

    words = ("alpha", "bravo", "charlie", "delta")[:n_words]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SynthConfig(words=words, clips_per_word=clips, unknown_clips=0, noise_seconds=1.0)
        started = time.perf_counter()
        summary = synthesize_dataset(cfg, Path(tmp) / "d", show_progress=False)
        wall_s = time.perf_counter() - started
    return {
        "clips": summary["made"],
        "wall_s": round(wall_s, 1),
        "clips_per_s": round(summary["made"] / wall_s, 1),
        "engines": summary["engines"],
        "per_engine": summary["per_engine"],
    }


def demo_cost() -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        ["bash", str(ROOT / "scripts/demo.sh")],
        cwd=ROOT,
        env={**__import__("os").environ, "DEMO_DIR": "bench/out/demo"},
        capture_output=True,
        text=True,
    )
    wall_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    tail = done.stdout.strip().splitlines()[-8:]
    return {
        "exit_code": done.returncode,
        "wall_s": round(wall_s, 1),
        "cpu_s": round(cpu_s, 1),
        "cores_busy": round(cpu_s / wall_s, 2),
        "goal_wall_s": 300,
        "output_tail": tail,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--skip-demo", action="store_true")
    args = parser.parse_args()
    subset = require_subset()
    model = args.model or ASSETS_DIR / "sc12_synthetic.int8.onnx"  # the synthetic-only preset
    if model is None:
        raise SystemExit("no default model shipped; run `make default-model` or pass --model")
    result = {
        "benchmark": "synthetic_to_real",
        "machine": machine(),
        "real_speech": real_accuracy(model, subset),
        "synthesis": synthesis_speed(),
    }
    if not args.skip_demo:
        result["demo"] = demo_cost()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "synthetic_to_real.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
