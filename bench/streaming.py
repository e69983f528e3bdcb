"""Streaming accuracy, false alarms, latency and CPU of the live detector.

Builds a long stream (default 12 minutes) from the real-speech subset's
testing_list.txt command clips placed at random times over its background
noise, with the true word times recorded (like TensorFlow's streaming
accuracy test), plus a noise-only stream, runs the same detector `speechlstm
live` uses, and reports: share of commands matched (right label, detection
window centre within 500 ms of the word centre), wrong-label rate, false
detections per hour on noise-only audio, latency from word end to report
(median, 95th percentile), and CPU (% of one core) with and without the
energy gate. Sweeps the threshold for a matched-vs-false-alarm curve (PNG).

    python bench/streaming.py [--model M] [--minutes 12]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, ROOT, machine, require_subset  # noqa: E402

from speechlstm.audio import SAMPLE_RATE, load_audio  # noqa: E402
from speechlstm.datasets import discover  # noqa: E402
from speechlstm.labels import SC12_WORDS  # noqa: E402
from speechlstm.runtime import OnnxRecognizer, default_model_path  # noqa: E402
from speechlstm.stream import DetectorConfig, StreamingDetector, detect_file  # noqa: E402

MATCH_TOLERANCE_S = 0.5
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def word_span(clip: np.ndarray, top_db: float = 30.0) -> tuple[int, int]:
    """First and last sample of the speech in a clip (10 ms frames within top_db of the peak)."""
    frame = 160
    n = len(clip) // frame
    energy = 10 * np.log10((clip[: n * frame].reshape(n, frame) ** 2).mean(axis=1) + 1e-10)
    loud = np.flatnonzero(energy > energy.max() - top_db)
    return int(loud[0] * frame), int((loud[-1] + 1) * frame)


def background(noise_files, n: int, rng, level: float) -> np.ndarray:
    waves = [load_audio(p) for p in noise_files]
    out = np.zeros(n, dtype=np.float32)
    pos = 0
    while pos < n:  # 5-20 s stretches of randomly chosen noise recordings
        w = waves[rng.integers(len(waves))]
        length = min(n - pos, int(rng.uniform(5, 20) * SAMPLE_RATE), len(w))
        start = rng.integers(0, len(w) - length + 1)
        seg = w[start : start + length]
        out[pos : pos + length] = seg / (np.abs(seg).max() + 1e-9) * level
        pos += length
    return out


def build_stream(subset: Path, minutes: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    index = discover(subset)
    clips = [c for c in index.split("test") if c.word in SC12_WORDS]
    n = int(minutes * 60 * SAMPLE_RATE)
    stream = background(index.noise_files, n, rng, level=0.05)
    truth, pos = [], int(1.0 * SAMPLE_RATE)
    order = rng.permutation(len(clips))
    k = 0
    while pos + SAMPLE_RATE < n:
        clip = clips[order[k % len(order)]]
        k += 1
        wave = load_audio(clip.path)[:SAMPLE_RATE]
        lo, hi = word_span(wave)
        stream[pos : pos + len(wave)] += wave
        truth.append(
            {
                "label": clip.word,
                "start_s": (pos + lo) / SAMPLE_RATE,
                "end_s": (pos + hi) / SAMPLE_RATE,
            }
        )
        pos += len(wave) + int(rng.uniform(1.5, 4.0) * SAMPLE_RATE)
    noise_only = background(index.noise_files, n, rng, level=0.05)
    return np.clip(stream, -1, 1), truth, noise_only


def score(detections, truth) -> dict:
    used, matched, wrong, latencies = set(), 0, 0, []
    for t in truth:
        centre = (t["start_s"] + t["end_s"]) / 2
        near = [
            (abs((d.start_s + d.end_s) / 2 - centre), i, d)
            for i, d in enumerate(detections)
            if i not in used and abs((d.start_s + d.end_s) / 2 - centre) <= MATCH_TOLERANCE_S
        ]
        right = sorted(x for x in near if x[2].label == t["label"])
        if right:
            _, i, d = right[0]
            used.add(i)
            matched += 1
            latencies.append(d.end_s - t["end_s"])
        elif near:
            wrong += 1
            used.add(sorted(near)[0][1])
    extra = len(detections) - len(used)
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {
        "commands": len(truth),
        "matched": matched / len(truth),
        "wrong_label": wrong / len(truth),
        "unmatched_detections": extra,
        "latency_median_ms": round(float(np.median(lat)) * 1000, 1),
        "latency_p95_ms": round(float(np.percentile(lat, 95)) * 1000, 1),
    }


def cpu_share(rec, stream, gate: bool, hop_ms: float = 100.0) -> float:
    """CPU seconds per audio second x 100: % of one core at real time."""
    det = StreamingDetector(rec, DetectorConfig(hop_ms=hop_ms, gate=gate))
    block_samples = round(det.rate_hz * 0.05)  # 50 ms blocks, as from the microphone
    started = time.process_time()
    detect_file(det, stream, chunk_samples=block_samples)
    return 100 * (time.process_time() - started) / (len(stream) / det.rate_hz)


def plot_tradeoff(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot([r["false_per_hour"] for r in rows], [r["matched"] for r in rows], "o-")
    for r in rows:
        ax.annotate(
            f"{r['threshold']}",
            (r["false_per_hour"], r["matched"]),
            fontsize=8,
            textcoords="offset points",
            xytext=(4, -10),
        )
    ax.set(
        xlabel="false detections per hour (noise only)",
        ylabel="commands matched",
        title="streaming detector: threshold sweep",
        ylim=(0, 1),
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--threshold", type=float, default=0.8)
    args = parser.parse_args()
    subset = require_subset()
    model = args.model or default_model_path()
    rec = OnnxRecognizer(model, threads=1)
    stream, truth, noise_only = build_stream(subset, args.minutes)
    hours = len(noise_only) / SAMPLE_RATE / 3600
    sweep = []
    for thr in sorted({*THRESHOLDS, args.threshold}):
        det = StreamingDetector(rec, DetectorConfig(threshold=thr))
        found = detect_file(det, stream)
        false = detect_file(StreamingDetector(rec, DetectorConfig(threshold=thr)), noise_only)
        sweep.append(
            {
                "threshold": thr,
                **score(found, truth),
                "false_per_hour": round(len(false) / hours, 2),
            }
        )
    main_row = next(r for r in sweep if r["threshold"] == args.threshold)
    cpu_gated, cpu_all = cpu_share(rec, stream, True), cpu_share(rec, stream, False)
    cpu_noise_gated = cpu_share(rec, noise_only, True)
    # A quiet room (pink noise at about -65 dBFS): where the energy gate pays off.
    from speechlstm.noise import make_noise

    quiet = make_noise("pink", len(noise_only) // 4, np.random.default_rng(3))
    quiet *= 10 ** (-65 / 20) / np.sqrt(np.mean(quiet.astype(np.float64) ** 2))
    cpu_quiet = {
        "gate_on": round(cpu_share(rec, quiet, True), 2),
        "gate_off": round(cpu_share(rec, quiet, False), 2),
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    plot_tradeoff(sweep, OUT_DIR / "streaming_tradeoff.png")
    result = {
        "benchmark": "streaming",
        "machine": machine(),
        "model": str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model),
        "stream_minutes": round(len(stream) / SAMPLE_RATE / 60, 1),
        "commands": len(truth),
        "at_threshold": main_row,
        "cpu_percent_of_one_core": {
            "gate_on": round(cpu_gated, 2),
            "gate_off": round(cpu_all, 2),
            "noise_only_gate_on": round(cpu_noise_gated, 2),
            "quiet_room": cpu_quiet,
        },
        "goals": "matched >= 0.90, < 2 false/hour, median latency < 300 ms, CPU < 5%",
        "sweep": sweep,
        "plot": "bench/out/streaming_tradeoff.png",
    }
    (OUT_DIR / "streaming.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
