"""What one onnxruntime call per clip costs (runtime.OnnxRecognizer.predict), and
what batched calls did to a clip's answer.

For each model: 1 s clips of speech-like noise at mixed levels, scored
  - batched: one session call per 64 clips (the runtime before 2026-12-02),
  - per clip: one call a clip (the runtime now),
both on one thread, median of repeats; prints ms a clip, the ratio, and the
largest change of a probability between a clip scored alone and in a batch.

    python bench/batch_independence.py [MODEL.onnx ...] [--files 2000]

It also runs `speechlstm score`'s pipeline (score_paths) both ways over
generated WAV files: the files/s a user sees, before and after.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine  # noqa: E402

from speechlstm.modelmeta import INPUT_NAME, OUTPUT_NAMES  # noqa: E402
from speechlstm.runtime import OnnxRecognizer  # noqa: E402


def clips(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 16000)).astype(np.float32)
    x *= (10 ** rng.uniform(-2.5, -0.3, n)).astype(np.float32)[:, None]
    return np.clip(x, -1, 1)


def batched(rec: OnnxRecognizer, x: np.ndarray, batch: int = 64) -> np.ndarray:
    run = rec.session.run
    return np.concatenate(
        [run([OUTPUT_NAMES[0]], {INPUT_NAME: x[s : s + batch]})[0] for s in range(0, len(x), batch)]
    )


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def score_pipeline(model: Path, n_files: int, repeats: int) -> tuple[float, float]:
    """`speechlstm score`'s pipeline (score_paths: decoding thread, parallel
    batches, both cores) over 16 kHz WAV files, files/s with the runtime's
    per-clip calls and with one call per batch (the runtime before)."""
    import tempfile

    import soundfile as sf

    from speechlstm.scoring import score_paths, usable_cores

    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i, clip in enumerate(clips(n_files, seed=7)):
            path = Path(folder) / f"c{i:05d}.wav"
            sf.write(path, clip, 16000, subtype="PCM_16")
            paths.append(str(path))
        rec = OnnxRecognizer(model, threads=1)
        per_clip = rec.predict

        def run() -> None:
            for _ in score_paths(rec, paths, batch_size=8, parallel_batches=usable_cores()):
                pass

        rates = {}
        for name, predict in (("per clip", per_clip), ("batched", lambda x: batched(rec, x, 8))):
            rec.predict = predict
            rates[name] = n_files / timed(run, repeats)
        rec.predict = per_clip
    return rates["per clip"], rates["batched"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    assets = ROOT / "speechlstm" / "assets"
    ap.add_argument("models", nargs="*", type=Path, default=sorted(assets.glob("*.onnx")))
    ap.add_argument("--clips", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--files", type=int, default=2000, help="for the score pipeline rows")
    args = ap.parse_args()
    x = clips(args.clips)
    print(f"# {machine()}; {args.clips} clips, one thread, median of {args.repeats}")
    print("| model | batched 64 ms/clip | per clip ms/clip | ratio | max change alone vs batch |")
    print("|---|---|---|---|---|")
    for path in args.models:
        rec = OnnxRecognizer(path, threads=1)
        rec.predict(x[:4])
        alone = rec.predict(x)
        drift = float(np.abs(batched(rec, x) - alone).max())
        t_batch = timed(lambda rec=rec: batched(rec, x), args.repeats) / len(x) * 1e3
        t_row = timed(lambda rec=rec: rec.predict(x), args.repeats) / len(x) * 1e3
        print(
            f"| {path.name} | {t_batch:.3f} | {t_row:.3f} | {t_row / t_batch:.2f} | {drift:.4f} |"
        )
    print()
    print(f"`score` pipeline, {args.files} WAV files, all cores, median of {args.repeats}:")
    print("| model | per clip files/s | batched files/s | ratio |")
    print("|---|---|---|---|")
    for path in args.models:
        row, batch = score_pipeline(path, args.files, args.repeats)
        print(f"| {path.name} | {row:.0f} | {batch:.0f} | {row / batch:.2f} |")


if __name__ == "__main__":
    main()
