"""CPU inference: per-clip latency, batch scoring throughput, and memory on 100,000 files.

1. Latency of one 1 s clip, batch 1, one thread, waveform in: onnxruntime fp32,
   onnxruntime int8, PyTorch eager (same weights), and librosa MFCC outside +
   onnxruntime classifier. Median of repeated runs; ratios against PyTorch.
2. `speechlstm score` throughput on 16 kHz WAV files (its defaults: all cores)
   against a naive loop (decode one file, run the model, next) over the same
   files, with what one file costs on one core and the best ratio those costs
   allow on this machine.
3. Peak memory (max RSS) of `speechlstm score` on 10,000 and 100,000 files.

    python bench/inference.py [--checkpoint runs/default/best.pt] [--files 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, ROOT, machine, median_ms  # noqa: E402


def _head(model):
    """MFCC -> classifier + softmax: what the librosa path feeds (this benchmark only)."""
    import torch

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.classifier = model.classifier

        def forward(self, mfcc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.classifier(mfcc)
            return torch.softmax(logits, dim=-1), logits

    return Head()


def latency(checkpoint: Path, workdir: Path) -> dict:
    import librosa
    import onnxruntime as ort
    import torch

    from speechlstm.runtime import OnnxRecognizer
    from speechlstm.train.checkpoint import load_model
    from speechlstm.train.export import dynamo_export, export

    torch.set_num_threads(1)
    fp32, int8 = workdir / "m.onnx", workdir / "m.int8.onnx"
    export(checkpoint, fp32)
    export(checkpoint, int8, int8=True)
    model, _, cfg = load_model(checkpoint)
    fc = cfg.features
    head_path = workdir / "head.onnx"
    with torch.no_grad():
        mfcc = model.features(torch.zeros(1, fc.clip_samples))
    import onnx

    onnx.save(
        dynamo_export(
            _head(model),
            mfcc,
            ("mfcc", ("probabilities", "logits")),
            {},  # fixed 1 s clips: frame stacking's padding cannot be traced over a dynamic length
        ),
        str(head_path),
    )
    wave = (np.random.default_rng(0).standard_normal((1, fc.clip_samples)) * 0.1).astype(np.float32)
    rec32, rec8 = OnnxRecognizer(fp32, threads=1), OnnxRecognizer(int8, threads=1)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    head = ort.InferenceSession(str(head_path), opts, providers=["CPUExecutionProvider"])

    def librosa_path():
        mel = librosa.feature.melspectrogram(
            y=wave[0],
            sr=fc.sample_rate,
            n_fft=fc.n_fft,
            hop_length=fc.hop_samples,
            win_length=fc.window_samples,
            center=True,
            pad_mode="constant",
            power=2.0,
            n_mels=fc.n_mels,
            fmin=fc.f_min_hz,
            fmax=fc.f_max_hz,
            htk=True,
            norm=None,
        )
        m = librosa.feature.mfcc(
            S=librosa.power_to_db(mel, amin=fc.log_floor, top_db=None),
            n_mfcc=fc.n_mfcc,
            norm="ortho",
        ).T
        m = (m - m.mean(axis=0))[None].astype(np.float32)
        return head.run(["probabilities"], {"mfcc": m})

    tw = torch.from_numpy(wave)

    def torch_path():
        with torch.no_grad():
            return model(tw)

    rows = {
        "onnxruntime fp32": median_ms(lambda: rec32.predict(wave)),
        "onnxruntime int8": median_ms(lambda: rec8.predict(wave)),
        "pytorch eager": median_ms(torch_path),
        "librosa MFCC + onnxruntime": median_ms(librosa_path, repeats=100),
    }
    base = rows["pytorch eager"]
    return {
        "median_ms": {k: round(v, 3) for k, v in rows.items()},
        "speedup_vs_pytorch": {k: round(base / v, 2) for k, v in rows.items()},
        "goal": "int8 <= 1.0 ms and >= 3x faster than PyTorch eager",
        "model_bytes": {"fp32": fp32.stat().st_size, "int8": int8.stat().st_size},
    }


def make_files(folder: Path, n: int, seconds: float = 1.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = (rng.standard_normal((16, int(16000 * seconds))) * 0.1).astype(np.float32)
    for i in range(n):
        sub = folder / f"{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir(exist_ok=True)
        sf.write(sub / f"c{i:06d}.wav", base[i % 16], 16000, subtype="PCM_16")
    return folder


def run_score(model: Path, folder: Path, out: Path, extra: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one `speechlstm score` process.

    The peak is read from /proc (VmHWM) while it runs: getrusage would report
    the fork of this (torch-sized) benchmark process instead.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "speechlstm",
            "score",
            str(folder),
            "-m",
            str(model),
            "--out",
            str(out),
            "--no-progress",
            *extra,
        ],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    peak_kib = 0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kib = max(peak_kib, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.05)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"score failed with status {proc.returncode}")
    return wall, peak_kib


def stage_costs(model: Path, files: list[Path]) -> dict:
    """What one file costs on one core: decoding, and the model at batch 1 and at
    the batch `score` uses by default (8)."""
    from speechlstm.audio import load_audio
    from speechlstm.runtime import OnnxRecognizer

    rec = OnnxRecognizer(model, threads=1)
    sample = files[:500]

    def decode_all():
        for f in sample:
            load_audio(f)

    one = np.zeros((1, rec.clip_samples), np.float32)
    block = (np.random.default_rng(0).standard_normal((8, rec.clip_samples)) * 0.1).astype(
        np.float32
    )
    return {
        "decode_ms_per_file": round(median_ms(decode_all, repeats=7) / len(sample), 4),
        "model_ms_batch1": round(median_ms(lambda: rec.predict(one)), 3),
        "model_ms_per_clip_batch8": round(median_ms(lambda: rec.predict(block), 100) / 8, 3),
    }


def throughput(model: Path, workdir: Path, n: int, repeats: int = 3) -> dict:
    """`speechlstm score` with its defaults (both cores) against a naive loop,
    alternating, `repeats` times each; medians."""
    from speechlstm.audio import load_audio
    from speechlstm.runtime import OnnxRecognizer

    folder = make_files(workdir / "files", n)
    files = sorted(folder.rglob("*.wav"))
    # Warm the page cache so both sides read from memory.
    for f in files:
        f.read_bytes()
    rec = OnnxRecognizer(model, threads=1)
    naive, scored = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        for f in files:
            rec.predict_clip(load_audio(f))
        naive.append(time.perf_counter() - started)
        scored.append(run_score(model, folder, workdir / "out.csv", [])[0])
    naive_s, wall = float(np.median(naive)), float(np.median(scored))
    costs = stage_costs(model, files)
    cores = len(os.sched_getaffinity(0))
    # Best case for the ratio: every core busy and batching's per-clip gain,
    # with decoding the same work on both sides.
    bound = cores * (costs["decode_ms_per_file"] + costs["model_ms_batch1"])
    bound /= costs["decode_ms_per_file"] + costs["model_ms_per_clip_batch8"]
    return {
        "files": n,
        "repeats": repeats,
        "score_files_per_s": round(n / wall, 1),
        "naive_files_per_s": round(n / naive_s, 1),
        "ratio": round(naive_s / wall, 2),
        "ratio_bound_on_this_machine": round(bound, 2),
        "one_core_costs": costs,
        "cores": cores,
        "note": "score wall time includes process start-up and model load; "
        "naive = load_audio + the same int8 model at batch 1, one thread",
        "goal": ">= 2000 files/s and >= 5x the naive loop",
    }


def memory(model: Path, workdir: Path, sizes=(10_000, 100_000)) -> dict:
    folder = workdir / "mem"
    made, result = 0, {}
    for n in sizes:
        make_files_range(folder, made, n)
        made = n
        wall, rss_kib = run_score(
            model, folder, workdir / f"mem{n}.csv", ["--workers", "2", "--threads", "2"]
        )
        result[str(n)] = {"peak_rss_mb": round(rss_kib / 1024, 1), "wall_s": round(wall, 1)}
    return result


def make_files_range(folder: Path, start: int, stop: int) -> None:
    rng = np.random.default_rng(1)
    base = (rng.standard_normal((16, 4000)) * 0.1).astype(np.float32)  # 0.25 s: less disk
    for i in range(start, stop):
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        sf.write(sub / f"c{i:06d}.wav", base[i % 16], 16000, subtype="PCM_16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "runs/default/best.pt")
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-only", action="store_true")
    args = parser.parse_args()
    if not args.checkpoint.is_file():
        raise SystemExit(f"{args.checkpoint}: no checkpoint; run `make default-model` first")
    result = {"benchmark": "inference", "machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.memory_only:
            from speechlstm.train.export import export

            export(args.checkpoint, work / "m.int8.onnx", int8=True)
        else:
            result["latency_batch1_1thread"] = latency(args.checkpoint, work)
            result["score_throughput"] = throughput(work / "m.int8.onnx", work, args.files)
        model = work / "m.int8.onnx"
        if not args.skip_memory:
            result["score_peak_memory"] = memory(model, work)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    name = "inference_memory.json" if args.memory_only else "inference.json"
    (OUT_DIR / name).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
