"""The two front-ends side by side, in one run: the MFCC model (the shipped
default) against a speech-embedding model (`export` of a `train --frontend
embedding` run), on this machine, one thread each.

1. latency of one 1 s clip at batch 1 (median);
2. `speechlstm score` throughput on the same generated WAV files (its defaults);
3. `live`'s CPU share: the streaming detector over 5 minutes of generated
   speech-like audio in 50 ms blocks, as from a microphone (gate off: the
   model runs on every hop), in % of one core;
with the embedding model's figure as a ratio to the MFCC model's.

    python bench/frontends.py --embedding runs/teacher_full/model.onnx [--mfcc M] [--files 2000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, ROOT, machine, median_ms  # noqa: E402
from inference import make_files, run_score  # noqa: E402

from speechlstm.detect.stream import StreamingDetector, detect_file  # noqa: E402
from speechlstm.runtime import OnnxRecognizer, default_model_path  # noqa: E402
from speechlstm.testing.synth_audio import SR, tone_word  # noqa: E402


def live_audio(seconds: float = 300.0, seed: int = 0) -> np.ndarray:
    """Tone words every 1.5 s over light noise: the model has something to hear."""
    rng = np.random.default_rng(seed)
    wave = (rng.standard_normal(int(SR * seconds)) * 0.01).astype(np.float32)
    words = ("yes", "no", "up", "down")
    for i, start in enumerate(range(0, len(wave) - SR, int(1.5 * SR))):
        wave[start : start + SR] += tone_word(words[i % 4], rng=rng)
    return wave


def cpu_share(model: Path, wave: np.ndarray) -> float:
    rec = OnnxRecognizer(model, threads=1)
    cfg = dataclasses.replace(rec.description.detector, gate=False)
    det = StreamingDetector(rec, cfg)
    started = time.process_time()
    detect_file(det, wave, chunk_samples=round(SR * 0.05))
    return round(100 * (time.process_time() - started) / (len(wave) / SR), 2)


def measure(model: Path, files: Path, n: int, wave: np.ndarray, out: Path) -> dict:
    rec = OnnxRecognizer(model, threads=1)
    clip = (np.random.default_rng(0).standard_normal((1, rec.clip_samples)) * 0.1).astype(
        np.float32
    )
    walls = [run_score(model, files, out, [])[0] for _ in range(3)]
    return {
        "model": str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model),
        "frontend": rec.description.frontend,
        "size_mb": round(model.stat().st_size / 1e6, 2),
        "latency_ms_batch1": round(median_ms(lambda: rec.predict(clip), repeats=200), 3),
        "score_files_per_s": round(n / float(np.median(walls)), 1),
        "live_cpu_percent_of_one_core": cpu_share(model, wave),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedding", type=Path, required=True)
    parser.add_argument("--mfcc", type=Path, default=None, help="default: the shipped model")
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=OUT_DIR / "frontends.json")
    args = parser.parse_args()
    mfcc = args.mfcc or default_model_path()
    wave = live_audio()
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp) / "files", args.files)
        for f in files.rglob("*.wav"):
            f.read_bytes()  # page cache: both read from memory
        rows = [measure(m, files, args.files, wave, Path(tmp) / "out.csv")
                for m in (mfcc, args.embedding)]  # fmt: skip
    base, emb = rows
    keys = ("size_mb", "latency_ms_batch1", "score_files_per_s", "live_cpu_percent_of_one_core")
    ratios = {k: round(emb[k] / base[k], 2) for k in keys}
    result = {
        "benchmark": "frontends",
        "machine": machine(),
        "files": args.files,
        "mfcc": base,
        "embedding": emb,
        "embedding_over_mfcc": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
