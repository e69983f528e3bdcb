"""GPU-resident training: clips/s, epoch time on 85,000 clips, peak memory, time to the
first batch, and accuracy against the CPU path on the same machine and data.

The training set is the default model's real clips (data/sc12_real) repeated to
85,000 (each repeat sees fresh augmentation: shift, gain, reverberation, noise,
SpecAugment, all drawn on the GPU). The sample bank, augmentation, MFCC and
model all live on the device; the only per-step transfers are the batch's
indices and targets.

    # here: a compact copy to carry to the GPU machine (Opus, ~40 MB)
    python bench/gpu_train.py --pack data/gpu_pack
    # there (`device` run, carry data/gpu_pack): everything, into $OUT
    python bench/gpu_train.py --data data/gpu_pack --out "$OUT" [--parity-epochs 15]

Output: gpu_train.json (and the table on stdout). `--device cpu --clips 2000
--batch-sizes 64 --parity-epochs 0` is a smoke run on any machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, ROOT, machine  # noqa: E402

from speechlstm.config_text import load_toml  # noqa: E402

RECIPE = ROOT / "recipes/sc12.recipe.toml"


def pack(src: Path, out: Path, level: float | None = None) -> None:
    """Re-encode a Speech Commands folder (WAV or FLAC) to Ogg Opus (lists and noise kept).

    `level` is libsndfile's compression level (0-1; None: its default, ~32 kbit/s,
    4 kB a clip; 0.95: ~2.8 kB, to fit real and synthetic clips in one carry).
    """
    import soundfile as sf

    from speechlstm.audio import load_audio

    files = sorted(
        Path(d) / f
        for d, _, names in os.walk(src, followlinks=True)  # noise is a linked folder
        for f in names
        if f.endswith((".wav", ".flac"))
    )
    out.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(files):
        rel = path.relative_to(src)
        target = (out / rel).with_suffix(".ogg")
        if target.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        wave = load_audio(path)
        tmp = target.with_suffix(".part")
        extra = {} if level is None else {"compression_level": level}
        sf.write(tmp, wave, 16000, format="OGG", subtype="OPUS", **extra)
        tmp.replace(target)
        if i % 1000 == 0:
            print(f"{i}/{len(files)}", file=sys.stderr, flush=True)
    for name in ("validation_list.txt", "testing_list.txt"):
        if not (src / name).is_file():  # an --add folder (synthetic speech) has none
            continue
        lines = (src / name).read_text().split()
        (out / name).write_text("".join(str(Path(x).with_suffix(".ogg")) + "\n" for x in lines))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"packed {len(files)} files into {out} ({size / 1e6:.1f} MB)")


def tiled(split, n: int):
    from speechlstm.data.prepare import SplitData

    reps = np.resize(np.arange(len(split.targets)), n)
    return SplitData(split.audio[reps], split.targets[reps], [split.paths[i] for i in reps])


def throughput(data, cfg, device: str, clips: int, batch: int) -> dict:
    import torch

    from speechlstm.train.trainer import Trainer

    run_cfg = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, device=device, batch_size=batch, epochs=1)
    )
    big = dataclasses.replace(
        data, splits={**data.splits, "train": tiled(data.splits["train"], clips)}
    )
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(run_cfg, big, Path(tmp), "bench")
        first = {}
        real_step = trainer._step

        def timed_step(idx, seed):
            out = real_step(idx, seed)
            if not first:
                if cuda:
                    torch.cuda.synchronize()
                first["s"] = time.perf_counter() - started
            return out

        trainer._step = timed_step
        epoch_started = time.perf_counter()
        trainer._train_epoch(show_progress=False)
        if cuda:
            torch.cuda.synchronize()
        epoch_s = time.perf_counter() - epoch_started
    return {
        "batch_size": batch,
        "clips": clips,
        "epoch_s": round(epoch_s, 2),
        "clips_per_s": round(clips / epoch_s),
        "time_to_first_batch_s": round(first["s"], 2),
        "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None,
    }


def parity(data_dir: Path, runs: str, epochs: int, out: Path) -> dict:
    """The recipe for `epochs` on the GPU and on this machine's CPU: the same result?

    `runs` is a comma list of DEVICE:BATCH[:SEED]; a batch other than the recipe's
    scales the learning rate by sqrt(batch / recipe batch) (the usual rule for Adam).
    """
    recipe = load_toml(RECIPE).train
    rows = {}
    # The runs go to a temporary folder: a GPU machine returns only 8 files from $OUT.
    out = Path(tempfile.mkdtemp(prefix="speechlstm-parity-"))
    for spec in runs.split(","):
        dev, batch, *rest = spec.split(":")
        batch, seed = int(batch), int(rest[0]) if rest else 0
        lr = recipe.lr * (batch / recipe.batch_size) ** 0.5
        name = f"{dev}-b{batch}-s{seed}"
        run = out / f"parity-{name}"
        cmd = [sys.executable, "-m", "speechlstm", "train", str(data_dir), "--out", str(run),
               "--config", str(RECIPE), "--epochs", str(epochs), "--set", "train.patience=0",
               "--set", f"train.batch_size={batch}", "--set", f"train.lr={lr:.6g}",
               "--set", f"train.seed={seed}",
               "--device", dev, "--no-progress", "--no-cache"]  # fmt: skip
        if dev == "cpu":
            cmd += ["--threads", str(min(16, os.cpu_count() or 1))]
        started = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        m = json.loads((run / "metrics.json").read_text())
        rows[name] = {
            "lr": round(lr, 6),
            "wall_s": round(time.perf_counter() - started, 1),
            "best_val_accuracy": round(m["best_val_accuracy"], 4),
            "test_accuracy": round(m["test_accuracy"], 4),
        }
        print(name, rows[name], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", type=Path, default=None, help="Write a compact copy and stop.")
    parser.add_argument("--pack-level", type=float, default=None, help="Opus compression, 0-1.")
    parser.add_argument("--data", type=Path, default=ROOT / "data/sc12_real")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--clips", type=int, default=85_000)
    parser.add_argument("--batch-sizes", default="64,256,1024")
    parser.add_argument("--parity-epochs", type=int, default=15)
    parser.add_argument(
        "--parity-runs",
        default="cuda:64,cuda:256,cpu:64",
        help="DEVICE:BATCH[:SEED],... trained for --parity-epochs each",
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    if args.pack is not None:
        pack(args.data, args.pack, args.pack_level)
        return
    import torch

    from speechlstm.data.prepare import prepare

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; run it on the GPU machine or pass --device cpu")
    cfg = load_toml(RECIPE)
    started = time.perf_counter()
    data = prepare(args.data, cfg.data, cfg.features, 0, cache_dir=None, show_progress=False)
    decode_s = time.perf_counter() - started
    rows = [
        throughput(data, cfg, args.device, args.clips, int(b))
        for b in args.batch_sizes.split(",")
        if b.strip()
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "gpu_train",
        "machine": machine(),
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "decode_s": round(decode_s, 1),
        "bank_clips": len(data.splits["train"].targets),
        "goal_epoch_s": 5.0,
        "throughput": rows,
    }
    if args.parity_epochs:
        result["parity"] = parity(args.data, args.parity_runs, args.parity_epochs, args.out)
    (args.out / "gpu_train.json").write_text(json.dumps(result, indent=2))
    print(f"{result['device']} ({result['machine']}), torch {result['torch']}")
    print(
        f"| batch | epoch of {args.clips:,} clips (s) | clips/s | first batch (s) | peak GPU MB |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['batch_size']} | {r['epoch_s']} | {r['clips_per_s']} | "
            f"{r['time_to_first_batch_s']} | {r['peak_gpu_memory_mb']} |"
        )
    if "parity" in result:
        print(json.dumps(result["parity"], indent=2))


if __name__ == "__main__":
    main()
