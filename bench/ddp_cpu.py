"""One process against two torchrun processes on this machine's cores: clips/s and accuracy.

Trains the same recipe (default: the shipped recipe's model, a short
schedule) on the real-speech clips `make default-model` links into
data/sc12_real, once as a single process with --threads 2 and once as
`torchrun --standalone --nproc-per-node 2` with --threads 1 a rank, the
same global batch, and prints the training rate (median over epochs) and
the accuracies side by side.

    python bench/ddp_cpu.py [--epochs 3] [--data data/sc12_real]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, ROOT, machine  # noqa: E402

RECIPE = ROOT / "recipes/sc12.recipe.toml"


def train(cmd: list[str], out: Path, env: dict) -> dict:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - started
    m = json.loads((out / "metrics.json").read_text())
    rates = [h["clips_per_s"] for h in m["history"][1:] or m["history"]]  # the first warms up
    return {
        "clips_per_s_median": round(float(np.median(rates)), 1),
        "wall_s": round(wall, 1),
        "best_val_accuracy": round(m["best_val_accuracy"], 4),
        "test_accuracy": round(m["test_accuracy"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data", type=Path, default=ROOT / "data/sc12_real")
    args = parser.parse_args()
    if not (args.data / "testing_list.txt").is_file():
        raise SystemExit(f"{args.data}: run `make default-model` first (it links the clips)")
    bindir = Path(sys.executable).parent
    tmp = Path(tempfile.mkdtemp(prefix="speechlstm-ddp-"))
    common = [str(args.data), "--config", str(RECIPE), "--epochs", str(args.epochs),
              "--set", "train.patience=0", "--device", "cpu", "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        one = train(
            [
                str(bindir / "speechlstm"),
                "train",
                *common,
                "--threads",
                "2",
                "--out",
                str(tmp / "a"),
            ],
            tmp / "a",
            env,
        )
        two = train(
            [str(bindir / "torchrun"), "--standalone", "--nproc-per-node", "2", "-m",
             "speechlstm", "train", *common, "--threads", "1", "--out", str(tmp / "b")],
            tmp / "b",
            env,
        )  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "benchmark": "ddp_cpu",
        "machine": machine(),
        "epochs": args.epochs,
        "one process, 2 threads": one,
        "two processes (gloo), 1 thread each": two,
        "speedup": round(two["clips_per_s_median"] / one["clips_per_s_median"], 2),
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "ddp_cpu.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
