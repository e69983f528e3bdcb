"""Shared bits of the benchmarks: where the real speech lives, and a machine line."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SUBSET = Path(
    os.environ.get("SPEECHLSTM_SUBSET", ROOT.parent / "shared/data/speech_commands_subset")
)
OUT_DIR = ROOT / "bench" / "out"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def require_subset() -> Path:
    if not (SUBSET / "testing_list.txt").is_file():
        raise SystemExit(
            f"the real-speech subset is not at {SUBSET}; set SPEECHLSTM_SUBSET to its folder"
        )
    return SUBSET


def median_ms(fn, repeats: int = 300, warmup: int = 20) -> float:
    """Median wall time of `fn()` in milliseconds (the machine is noisy: no means)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)
