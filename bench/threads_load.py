"""CPU training next to another busy job: the thread default against the old one.

Trains the shipped recipe's model (its [model] and [augment]; a short
schedule) on a generated Speech Commands-style set, in a fresh process each,
on an idle machine and next to one single-threaded busy process (a Python
loop on one core), in these settings:

- old default: torch's own thread count (its default, the physical cores:
  pinned to 2 on this 2-core machine), threads spinning while they wait;
- new default: `speechlstm train` as shipped: threads from the cores free
  now (train.threads = 0), re-measured each epoch;
- 2 threads with OMP_WAIT_POLICY=PASSIVE (waiting threads sleep): the other
  remedy, measured and not taken (slow on an idle machine);
- 1 thread: `--threads 1`, the issue's reference under load.

It prints the median training rate (clips/s over epochs after the first)
and the ratio of each to the old default under the same load.

    python bench/threads_load.py [--epochs 4]

Run it on an otherwise idle machine: it makes the load it measures.
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

from speechlstm.testing.synth_audio import make_dataset  # noqa: E402

RECIPE = ROOT / "recipes/sc12.recipe.toml"
WORDS = ("yes", "no", "up", "down", "left", "right", "stop")  # synth_audio's tone words
# name: (--threads value, extra environment)
SETTINGS = {
    "old default (torch's count, 2 here)": ("2", {}),
    "new default (cores free now, per epoch)": ("0", {}),
    "2 threads, passive waits (OMP_WAIT_POLICY)": ("2", {"OMP_WAIT_POLICY": "PASSIVE"}),
    "1 thread": ("1", {}),
}
BUSY = "while True: pass"


def train(threads: str, extra_env: dict, data: Path, out: Path, epochs: int) -> dict:
    bindir = Path(sys.executable).parent
    cmd = [str(bindir / "speechlstm"), "train", str(data), "--out", str(out),
           "--config", str(RECIPE), "--epochs", str(epochs), "--set", "train.patience=0",
           "--device", "cpu", "--threads", threads, "--no-progress"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env.update(extra_env)
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"training failed ({' '.join(cmd)}):\n{done.stderr[-2000:]}")
    m = json.loads((out / "metrics.json").read_text())
    rates = [h["clips_per_s"] for h in m["history"][1:]]  # the first epoch warms up
    return {
        "clips_per_s_median": round(float(np.median(rates)), 1),
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="speechlstm-threads-"))
    rows = {}
    try:
        data = make_dataset(tmp / "data", words=WORDS, speakers=20, takes=3)
        for load in ("idle", "one busy process"):
            busy = None
            if load != "idle":
                busy = subprocess.Popen([sys.executable, "-c", BUSY])
                time.sleep(1.0)  # let it own its core before the run measures free cores
            try:
                for i, (name, (entry, threads)) in enumerate(SETTINGS.items()):
                    out = tmp / f"run-{load[:4]}-{i}"
                    rows.setdefault(name, {})[load] = train(entry, threads, data, out, args.epochs)
                    print(f"{load:17s} {name:45s} {rows[name][load]}", flush=True)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    old = next(iter(rows.values()))
    for r in rows.values():
        for load in r:
            r[load]["vs_old_default"] = round(
                r[load]["clips_per_s_median"] / old[load]["clips_per_s_median"], 2
            )
    result = {
        "benchmark": "threads_load",
        "machine": machine(),
        "cores": len(os.sched_getaffinity(0)),
        "epochs": args.epochs,
        "rows": rows,
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "threads_load.json").write_text(json.dumps(result, indent=2))
    print(f"machine: {result['machine']}")
    print("| setting | idle clips/s | vs old | loaded clips/s | vs old |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        i, b = r["idle"], r["one busy process"]
        print(
            f"| {name} | {i['clips_per_s_median']} | {i['vs_old_default']:.2f} | "
            f"{b['clips_per_s_median']} | {b['vs_old_default']:.2f} |"
        )


if __name__ == "__main__":
    main()
