"""Peak memory of the long-audio paths: must not grow with the recording's length.

Writes a one-minute and a one-hour 48 kHz stereo 16-bit WAV (quiet noise
with a tone burst every 7 s; written block by block), then runs, each in its
own process, `transcribe`, `score` and `live --input --fast` on each file
with the shipped model, and reads the child's peak RSS (getrusage). Goal:
under 300 MB for the hour, and the hour/minute ratio near 1.

    python bench/memory.py [--minutes-long 60] [--keep]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, machine  # noqa: E402

RATE_HZ, CHANNELS = 48000, 2
GOAL_MB = 300
PROBE = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
    "stderr=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def write_recording(path: Path, minutes: float) -> None:
    rng = np.random.default_rng(0)
    burst = 0.3 * np.sin(2 * np.pi * 440 * np.arange(RATE_HZ // 2) / RATE_HZ)
    with sf.SoundFile(path, "w", RATE_HZ, CHANNELS, subtype="PCM_16") as f:
        block = 7 * RATE_HZ  # one burst per block
        for _ in range(int(minutes * 60 * RATE_HZ) // block):
            x = rng.standard_normal((block, CHANNELS)).astype(np.float32) * 0.01
            x[RATE_HZ : RATE_HZ + len(burst)] += burst[:, None]
            f.write(x)


def peak_mb(args: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one command in a fresh process."""
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip()) / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes-long", type=float, default=60.0)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()
    cli = [str(Path(sys.executable).parent / "speechlstm")]
    tmp = Path(tempfile.mkdtemp(prefix="speechlstm-memory-"))
    files = {"1 min": tmp / "short.wav", f"{args.minutes_long:g} min": tmp / "long.wav"}
    write_recording(files["1 min"], 1.0)
    write_recording(files[f"{args.minutes_long:g} min"], args.minutes_long)
    commands = {
        "transcribe": ["transcribe"],
        "score": ["score", "--no-progress"],
        "live --input": ["live", "--fast", "--input"],
    }
    rows = []
    for name, command in commands.items():
        row = {"command": name}
        for label, path in files.items():
            mb, seconds = peak_mb(cli + command + [str(path)])
            row[f"peak_mb {label}"] = round(mb, 1)
            row[f"seconds {label}"] = round(seconds, 1)
        short, long = (row[f"peak_mb {label}"] for label in files)
        row["ratio long/short"] = round(long / short, 2)
        row["under goal"] = long < GOAL_MB
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "benchmark": "memory",
        "machine": machine(),
        "input": f"{RATE_HZ} Hz stereo 16-bit WAV",
        "sizes_mb": {k: round(p.stat().st_size / 2**20, 1) for k, p in files.items()},
        "goal": f"peak RSS < {GOAL_MB} MB for the long file, not growing with duration",
        "rows": rows,
    }
    if not args.keep:
        for path in files.values():
            path.unlink()
        tmp.rmdir()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "memory.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
