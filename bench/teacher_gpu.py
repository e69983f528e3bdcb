"""Distillation from a larger teacher, the recipe lever the CPU could not afford:
a wide, deep BiLSTM (width 256, 3 layers: 4x the parameters) trained with the
shipped recipe, then the shipped size distilled from it, beside the same
recipe without a teacher, same seeds, same data, on the same GPU.

    # here: a compact copy of the real and the synthetic clips (~45 MB together)
    python bench/gpu_train.py --data data/sc12_real --pack data/gpu_pack2/real --pack-level 0.95
    python bench/gpu_train.py --data data/synth_sc12 --pack data/gpu_pack2/synth --pack-level 0.95
    # there (`device` run, carry data/gpu_pack2):
    python bench/teacher_gpu.py --data data/gpu_pack2 --out "$OUT"

Batch 256 with the learning rate scaled by sqrt(4) (bench/gpu_train.py: same
accuracy as batch 64 within seed noise, 4x the clips/s) keeps the whole
comparison inside one GPU session; `--recipe-b64` adds the recipe exactly as
shipped (batch 64) for the wall time of `make default-model`'s training on a
GPU. Output: teacher_gpu.json and a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, ROOT, machine  # noqa: E402

RECIPE = ROOT / "recipes/sc12.recipe.toml"
FAST = ["train.batch_size=256", "train.lr=0.006"]
TEACHER = ["model.hidden_size=256", "model.num_layers=3"]


def train(name: str, data: Path, runs: Path, device: str, overrides: list[str]) -> dict:
    run = runs / name
    cmd = [sys.executable, "-m", "speechlstm", "train", str(data / "real"),
           "--add", str(data / "synth"), "--out", str(run), "--config", str(RECIPE),
           "--device", device, "--no-progress", "--no-cache"]  # fmt: skip
    for o in overrides:
        cmd += ["--set", o]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    m = json.loads((run / "metrics.json").read_text())
    row = {
        "overrides": overrides,
        "wall_s": round(time.perf_counter() - started, 1),
        "params": m["n_params"],
        "best_epoch": m["best_epoch"],
        "val": round(m["best_val_accuracy"], 4),
        "test": round(m["test_accuracy"], 4),
    }
    print(name, row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data/gpu_pack2")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--recipe-b64", action="store_true")
    parser.add_argument("--epochs", type=int, default=None, help="Override (a smoke run).")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/speechlstm-teacher"))
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    if args.epochs is not None:
        FAST.append(f"train.epochs={args.epochs}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict] = {}
    result = {"benchmark": "teacher_gpu", "machine": machine(), "device": args.device,
              "rows": rows}  # fmt: skip

    def save() -> None:  # after every run: a cut-off session keeps what finished
        (args.out / "teacher_gpu.json").write_text(json.dumps(result, indent=2))

    teacher = args.runs / "teacher-w256l3" / "best.pt"
    rows["teacher-w256l3"] = train("teacher-w256l3", args.data, args.runs, args.device,
                                   FAST + TEACHER)  # fmt: skip
    save()
    for seed in (int(s) for s in args.seeds.split(",")):
        for name, extra in (
            (f"base-s{seed}", []),
            (f"distill-s{seed}", [f"train.teacher={teacher}", "train.distill_weight=0.5"]),
        ):
            rows[name] = train(name, args.data, args.runs, args.device,
                               FAST + [f"train.seed={seed}"] + extra)  # fmt: skip
            save()
    if args.recipe_b64:
        rows["recipe-b64"] = train("recipe-b64", args.data, args.runs, args.device, [])
        save()
    print(f"{args.device} ({result['machine']})")
    print("| run | params | val | test | best epoch | wall s |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['params']:,} | {r['val']:.4f} | {r['test']:.4f} | "
            f"{r['best_epoch']} | {r['wall_s']} |"
        )


if __name__ == "__main__":
    main()
