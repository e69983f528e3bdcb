"""Batch speed with exact answers: `speechlstm score` and `Recognizer.predict_many`
against a naive loop, in the same run, with every clip's answer checked against
the clip scored alone.

    naive loop      decode one file (audio.load_audio), run the model on it at
                    batch 1 on one thread (OnnxRecognizer.predict_clip), next
    score           `speechlstm score FOLDER -o out.jsonl` with its defaults
                    (every core; process start and model load included)
    predict_many    Recognizer.predict_many over the decoded clips, against
                    the naive loop over the same decoded clips

Runs alternate (naive, score, predict_many, ...) `--repeats` times and the
medians are compared: this machine is noisy. Exactness: every row of the last
score run and every predict_many answer against the clip alone (label equal,
probabilities within 1e-6). Goal (issue 42): at least 2.0x the naive loop.
Writes bench/out/batch_speed.json.

    python bench/batch_speed.py [--files 12000] [--repeats 5] [--model sc12]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from common import machine  # noqa: E402

from speechlstm.api import Recognizer  # noqa: E402
from speechlstm.audio import load_audio  # noqa: E402
from speechlstm.testing.synth_audio import tone_word  # noqa: E402

OUT_DIR = ROOT / "bench" / "out"


def make_files(folder: Path, n: int) -> list[Path]:
    """`n` one-second 16-bit WAVs: tone words and noise at several levels (the
    model's path is the same whatever they hold)."""
    rng = np.random.default_rng(0)
    words = ("yes", "no", "up", "down", "left", "right", "stop")
    base = [tone_word(w, float(rng.uniform(0.8, 1.2)), rng=rng) for w in words]
    base += [(rng.standard_normal(16000) * level).astype(np.float32) for level in (0.01, 0.1)]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i // 1000:03d}" / f"c{i:06d}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, base[i % len(base)] * float(rng.uniform(0.3, 1.0)), 16000, subtype="PCM_16")
        paths.append(path)
    return paths


def naive(rec, paths) -> float:
    started = time.perf_counter()
    for p in paths:
        rec.predict_clip(load_audio(p))
    return time.perf_counter() - started


def run_score(model: str, folder: Path, out: Path) -> float:
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "speechlstm",
            "score",
            str(folder),
            "-m",
            model,
            "-o",
            str(out),
            "-f",
            "jsonl",
            "--top-k",
            "20",
            "--no-progress",
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def check_score_rows(rec, out: Path, paths) -> float:
    """Largest difference between a row's probabilities and its clip alone."""
    worst = 0.0
    alone = {str(p): rec.predict_clip(load_audio(p)) for p in paths[:2000]}
    for line in out.read_text().splitlines():
        row = json.loads(line)
        if row["path"] not in alone:
            continue
        probs = alone[row["path"]]
        assert row["label"] == rec.labels[int(np.argmax(probs))], row
        for label, score in row["top"]:
            worst = max(worst, abs(score - float(probs[rec.labels.index(label)])))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=12000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="sc12")
    args = parser.parse_args()
    api = Recognizer(args.model)
    rec = api.runtime
    result: dict = {"benchmark": "batch_speed", "machine": machine(), "model": args.model}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "files"
        paths = make_files(folder, args.files)
        for p in paths:  # the page cache warm for both sides
            p.read_bytes()
        waves = [load_audio(p) for p in paths]
        naive(rec, paths[:300])
        times: dict[str, list[float]] = {k: [] for k in ("naive", "score", "naive_mem", "many")}
        for _ in range(args.repeats):
            times["naive"].append(naive(rec, paths))
            times["score"].append(run_score(args.model, folder, Path(tmp) / "out.jsonl"))
            started = time.perf_counter()
            for w in waves:
                rec.predict_clip(w)
            times["naive_mem"].append(time.perf_counter() - started)
            started = time.perf_counter()
            many = api.predict_many(waves)
            times["many"].append(time.perf_counter() - started)
        med = {k: float(np.median(v)) for k, v in times.items()}
        score_diff = check_score_rows(rec, Path(tmp) / "out.jsonl", paths)
        many_diff = max(
            max(abs(m.probabilities[k] - float(p)) for k, p in zip(rec.labels, rec.predict_clip(w)))
            for m, w in zip(many[:2000], waves[:2000])
        )
    n = args.files
    result.update(
        files=n,
        repeats=args.repeats,
        files_per_s={k: round(n / v, 1) for k, v in med.items()},
        score_vs_naive=round(med["naive"] / med["score"], 2),
        score_vs_naive_each_repeat=[
            round(a / b, 2) for a, b in zip(times["naive"], times["score"])
        ],
        predict_many_vs_naive=round(med["naive_mem"] / med["many"], 2),
        largest_difference_from_alone={"score": score_diff, "predict_many": many_diff},
        note="score's time includes process start and model load; naive: load_audio + "
        "predict_clip at batch 1, one thread; predict_many against the naive loop over the "
        "same decoded clips",
        goal=">= 2.0x the naive loop, each clip's probabilities within 1e-6 of it alone",
    )
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "batch_speed.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
