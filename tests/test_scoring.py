"""Batch scoring and evaluation: mixed inputs, resume after a kill, hand-checked metrics."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from speechlstm.cli.main import app
from speechlstm.testing.synth_audio import SR, tone_word

runner = CliRunner()


def _mixed_inputs(folder):
    folder.mkdir(parents=True, exist_ok=True)
    good = {}
    sf.write(folder / "yes.wav", tone_word("yes", 1.0), SR)
    sf.write(folder / "no8k.wav", tone_word("no", 1.0)[::2], 8000)
    stereo = np.stack([tone_word("up", 1.0), tone_word("up", 1.0)], axis=1)
    sf.write(folder / "up_stereo.flac", stereo, SR)
    long = np.concatenate(
        [np.zeros(SR, np.float32), tone_word("down", 1.0), np.zeros(SR, np.float32)]
    )
    sf.write(folder / "down_3s.wav", long, SR)
    good = {"yes.wav": "yes", "no8k.wav": "no", "up_stereo.flac": "up", "down_3s.wav": "down"}
    (folder / "empty.wav").write_bytes(b"")
    header = bytearray((folder / "yes.wav").read_bytes())
    header[:4] = b"JUNK"
    (folder / "corrupt.wav").write_bytes(bytes(header))
    (folder / "notes.ogg").write_text("not audio at all")
    (folder / "subdir.wav").mkdir()
    bad = ["empty.wav", "corrupt.wav", "notes.ogg"]
    return good, bad


def test_score_mixed_inputs_keeps_going_and_reports_each_failure(onnx_model, tmp_path):
    good, bad = _mixed_inputs(tmp_path / "in")
    out = tmp_path / "results.csv"
    listing = tmp_path / "dirs.txt"  # a folder named in a list is a bad entry, not scanned
    listing.write_text("in/subdir.wav\n")
    result = runner.invoke(
        app,
        [
            "score",
            str(tmp_path / "in"),
            str(listing),
            "-m",
            str(onnx_model),
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 1, result.output
    rows = {os.path.basename(r["path"]): r for r in csv.DictReader(out.open())}
    assert set(rows) == set(good) | set(bad) | {"subdir.wav"}
    for name, label in good.items():
        assert rows[name]["label"] == label and rows[name]["error"] == ""
        assert rows[name]["top"].startswith(f"{label}:")
    assert float(rows["down_3s.wav"]["duration_s"]) == pytest.approx(3.0, abs=0.01)
    assert float(rows["no8k.wav"]["duration_s"]) == pytest.approx(1.0, abs=0.01)
    for name in [*bad, "subdir.wav"]:
        assert rows[name]["error"] and rows[name]["label"] == ""
    assert "is a directory" in rows["subdir.wav"]["error"]


def test_inputs_from_globs_and_list_files_as_jsonl(onnx_model, tmp_path):
    _mixed_inputs(tmp_path / "in")
    listing = tmp_path / "files.txt"
    listing.write_text("# a comment\nin/yes.wav\n\nin/missing.wav\n")
    result = runner.invoke(
        app,
        [
            "score",
            str(listing),
            str(tmp_path / "in" / "*.flac"),
            "-m",
            str(onnx_model),
            "-f",
            "jsonl",
            "--no-progress",
        ],
    )
    assert result.exit_code == 1
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [os.path.basename(r["path"]) for r in rows] == [
        "yes.wav",
        "missing.wav",
        "up_stereo.flac",
    ]
    assert rows[0]["label"] == "yes" and rows[1]["error"] == "no such file"


def test_parallel_batches_keep_input_order_and_match_one_by_one(onnx_model, tmp_path):
    """Several batches in flight at once (the default on a multi-core machine)
    must give the rows of a one-file-at-a-time run, in the same order."""
    from speechlstm.audio import load_audio
    from speechlstm.runtime import OnnxRecognizer
    from speechlstm.scoring import iter_inputs, score_paths
    from speechlstm.transcribe import classify_waveform

    good, bad = _mixed_inputs(tmp_path / "in")
    rng = np.random.default_rng(0)
    words = ["yes", "no", "up", "down"]
    for i in range(37):  # several batches of 4 between the odd files
        clip = tone_word(words[i % 4], 1.0) + rng.normal(0, 0.01, SR).astype(np.float32)
        sf.write(tmp_path / "in" / f"n{i:02d}.wav", clip, SR)
    rec = OnnxRecognizer(onnx_model, threads=1)
    paths = list(iter_inputs([str(tmp_path / "in")]))
    got = list(score_paths(rec, paths, batch_size=4, workers=3, parallel_batches=3))
    assert [r.path for r in got] == paths
    for r in got:
        name = os.path.basename(r.path)
        if name in bad or name == "subdir.wav":
            assert r.error and r.probs is None
            continue
        wave = load_audio(r.path)
        if len(wave) > rec.clip_samples:
            want = classify_waveform(rec, wave)
        else:
            want = rec.predict_clip(wave)
        assert r.error is None
        np.testing.assert_allclose(r.probs, want, atol=1e-5)


def test_resume_after_a_kill_loses_and_duplicates_nothing(onnx_model, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    words = ["yes", "no", "up", "down"]
    for i in range(400):
        sf.write(
            folder / f"c{i:04d}.wav",
            tone_word(words[i % 4], 0.9 + (i % 7) * 0.04),
            SR,
            subtype="PCM_16",
        )
    out = tmp_path / "r.csv"
    cmd = [
        sys.executable,
        "-m",
        "speechlstm",
        "score",
        str(folder),
        "-m",
        str(onnx_model),
        "--out",
        str(out),
        "--no-progress",
        "--batch-size",
        "8",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 60):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = out.read_text().count("\n") - 1
    assert 0 < partial < 400  # killed mid-run
    with out.open("a") as fh:
        fh.write(str(folder / "c9999.wav")[:20])  # a row cut off mid-write
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)) == 400
    assert sorted(paths) == sorted(str(p) for p in folder.glob("*.wav"))
    labels = {os.path.basename(r["path"]): r["label"] for r in rows}
    assert sum(labels[f"c{i:04d}.wav"] == words[i % 4] for i in range(400)) >= 380


def test_report_numbers_match_a_hand_computed_confusion_matrix():
    from speechlstm.evaluation import Evaluation, report

    labels = ("a", "b", "_unknown_")
    # truth:       a a a a b b _unknown_ _unknown_
    # predicted:   a a b a b a _unknown_ a
    targets = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    preds = np.array([0, 0, 1, 0, 1, 0, 2, 0])
    conf = np.array([0.92, 0.92, 0.62, 0.92, 0.72, 0.62, 0.92, 0.55])
    probs = np.full((8, 3), 0.0, np.float32)
    probs[np.arange(8), preds] = conf
    for i in range(8):
        probs[i, (preds[i] + 1) % 3] = 1 - conf[i]
    rep = report(Evaluation(labels, targets, probs, [str(i) for i in range(8)], {}, {}))
    assert rep["confusion_matrix"] == [[3, 1, 0], [1, 1, 0], [1, 0, 1]]
    assert rep["accuracy"] == pytest.approx(5 / 8)
    assert rep["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2 + 1 / 2) / 3)
    assert rep["per_class"]["a"]["precision"] == pytest.approx(3 / 5)
    assert rep["per_class"]["a"]["recall"] == pytest.approx(3 / 4)
    assert rep["per_class"]["b"]["f1"] == pytest.approx(0.5)
    assert rep["most_confused"][0]["count"] == 1 and len(rep["most_confused"]) == 3
    # Bins (width 0.1): 0.92 x4, all right -> 4 x 0.08; 0.72 right -> 0.28;
    # 0.62 x2, both wrong -> 2 x 0.62; 0.55 wrong -> 0.55.
    ece = (4 * 0.08 + 0.28 + 2 * 0.62 + 0.55) / 8
    assert rep["expected_calibration_error"] == pytest.approx(ece)


def test_evaluate_command_writes_reports(onnx_model, tone_dataset, tmp_path):
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(tone_dataset),
            "-m",
            str(onnx_model),
            "--split",
            "test",
            "--report-dir",
            str(tmp_path / "rep"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and "_silence_" in result.stdout
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert rep["clips"] == 24 + 2  # 4 words x 2 speakers x 3 takes, plus generated silence
    assert rep["accuracy"] > 0.8
    for name in ("report.md", "confusion.png", "reliability.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 0
    bad = runner.invoke(
        app, ["evaluate", str(tone_dataset), "-m", str(onnx_model), "--split", "dev"]
    )
    assert bad.exit_code == 2
