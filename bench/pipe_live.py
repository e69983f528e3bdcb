"""`speechlstm live --input - --raw` fed through a pipe: CPU share with 1, 3 and
10 models at real-time speed, and resident memory over an hour of audio.

CPU: a feeder writes 16 kHz s16le in 50 ms chunks, paced in real time, for
`--seconds`; the CPU the `live` process spends from `--settle` seconds on
(start-up and model loading excluded) over that wall time is its share of one
core. The audio is the shipped sample words every 2 s over noise at about
-40 dBFS, loud enough that the energy gate never closes: every hop runs every
model (the worst case; a quiet room costs almost nothing). The baseline is the
same process with one model, so the table also gives each extra model's cost.

Memory: an hour of that audio through the pipe as fast as `live` takes it,
VmRSS read from /proc every 5 minutes of audio: flat means bounded.

    python bench/pipe_live.py [--seconds 30] [--hour-s 3600]
Writes bench/out/pipe_live.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from common import machine  # noqa: E402

OUT_DIR = ROOT / "bench" / "out"
SR = 16000
CHUNK = SR // 20  # 50 ms


def audio_source(seed: int = 0):
    """An endless generator of 50 ms int16 chunks: sample words every 2 s over noise."""
    rng = np.random.default_rng(seed)
    words = [sf.read(p, dtype="float32")[0] for p in sorted((ROOT / "data/samples").glob("*.wav"))]
    period = 2 * SR
    pos = 0
    while True:
        block = (rng.standard_normal(period) * 0.01).astype(np.float32)  # about -40 dBFS
        w = words[pos % len(words)]
        block[SR // 2 : SR // 2 + len(w)] += w[: period - SR // 2]
        pcm = np.round(np.clip(block, -1, 1) * 32767).astype("<i2")
        for i in range(0, period, CHUNK):
            yield pcm[i : i + CHUNK].tobytes()
        pos += 1


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_live(models: list[str]) -> subprocess.Popen:
    args = [sys.executable, "-m", "speechlstm", "live", "--input", "-", "--raw", "--json"]
    for m in models:
        args += ["-m", m]
    return subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )


def drain(proc: subprocess.Popen, lines: list[str]) -> threading.Thread:
    def read():
        for line in proc.stdout:
            lines.append(line.decode())

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def cpu_share(models: list[str], seconds: float, settle_s: float) -> dict:
    proc = start_live(models)
    lines: list[str] = []
    reader = drain(proc, lines)
    source = audio_source()
    started = time.perf_counter()
    sent = 0
    cpu0 = wall0 = None
    while sent < seconds * SR:
        delay = started + sent / SR - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        proc.stdin.write(next(source))
        proc.stdin.flush()
        sent += CHUNK
        if cpu0 is None and sent >= settle_s * SR:
            cpu0, wall0 = cpu_s(proc.pid), time.perf_counter()
    cpu1, wall1 = cpu_s(proc.pid), time.perf_counter()
    proc.stdin.close()
    proc.wait(timeout=60)
    reader.join(timeout=10)
    return {
        "models": len(models),
        "cpu_share_of_one_core": round((cpu1 - cpu0) / (wall1 - wall0), 4),
        "detections": len(lines),
        "audio_s": seconds,
    }


def memory_over(hour_s: float, step_s: float = 300.0) -> dict:
    proc = start_live(["sc12"])
    lines: list[str] = []
    reader = drain(proc, lines)
    source = audio_source(seed=1)
    readings = {}
    sent = 0
    started = time.perf_counter()
    next_mark = step_s
    while sent < hour_s * SR:
        proc.stdin.write(next(source))
        sent += CHUNK
        if sent >= next_mark * SR:
            readings[f"{next_mark / 60:.0f} min"] = round(rss_mb(proc.pid), 1)
            next_mark += step_s
    proc.stdin.close()
    proc.wait(timeout=120)
    reader.join(timeout=10)
    values = list(readings.values())
    return {
        "audio_s": hour_s,
        "wall_s": round(time.perf_counter() - started, 1),
        "vmrss_mb": readings,
        "growth_after_first_reading_mb": round(max(values) - values[0], 1),
        "detections": len(lines),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--hour-s", type=float, default=3600.0)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    from speechlstm.runtime import ASSETS_DIR, SHIPPED_MODELS

    result: dict = {"benchmark": "pipe_live", "machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        # Ten models: copies of the two shipped ones under names of their own.
        copies = []
        for i in range(10):
            src = ASSETS_DIR / SHIPPED_MODELS["sc12" if i % 2 == 0 else "sc12_synthetic"]
            dst = Path(tmp) / f"model{i}.onnx"
            shutil.copyfile(src, dst)
            copies.append(str(dst))
        rows = [cpu_share(copies[:n], args.seconds, args.settle) for n in (1, 3, 10)]
        base = rows[0]["cpu_share_of_one_core"]
        for row in rows:
            row["vs_one_model"] = round(row["cpu_share_of_one_core"] / base, 2)
        result["cpu"] = rows
        result["cpu_note"] = (
            "real-time pipe, 50 ms chunks, noise at -40 dBFS (gate always open), "
            "sample words every 2 s; share of one core after start-up"
        )
    if not args.skip_memory:
        result["memory"] = memory_over(args.hour_s)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "pipe_live.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
