"""False alarms fed back: `live --save-detections DIR`, the user's DIR/false/,
`data mine DIR/false`, `train --add` (the loop docs/streaming.md shows)."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from speechlstm.testing.synth_audio import SR, STREAM_THRESHOLD, STREAM_TRUTH, tone_stream

WORDS = [w for _, w in STREAM_TRUTH]


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "speechlstm", *map(str, args)],
        capture_output=True,
        timeout=300,
        cwd=cwd,
    )


@pytest.fixture
def saved(onnx_model, tmp_path):
    stream = tmp_path / "stream.wav"
    sf.write(stream, tone_stream(), SR, subtype="PCM_16")
    folder = tmp_path / "saved"
    result = _cli(
        "live",
        "-m",
        onnx_model,
        "--input",
        stream,
        "--fast",
        "--threshold",
        STREAM_THRESHOLD,
        "--save-detections",
        folder,
    )
    assert result.returncode == 0, result.stderr
    assert f"saved 4 detection(s) to {folder}" in result.stderr.decode()
    return stream, folder


def test_each_detection_is_saved_with_its_sidecar(onnx_model, saved):
    from speechlstm import Recognizer

    stream, folder = saved
    wave, _ = sf.read(stream, dtype="float32")
    rec = Recognizer(onnx_model)
    metas = sorted(
        (json.loads(p.read_text()) for p in folder.glob("*.json")), key=lambda m: m["end_s"]
    )
    assert [m["label"] for m in metas] == WORDS
    for meta in metas:
        clip, rate = sf.read(folder / meta["audio"], dtype="float32")
        assert rate == SR and len(clip) == int(1.5 * SR)
        assert meta["model"] == "tiny" and 0 < meta["score"] <= 1
        # 0.25 s before the detection's 1 s window and 0.25 s after it, from the stream.
        start = round(meta["audio_start_s"] * SR)
        assert start == round((meta["start_s"] - 0.25) * SR)
        np.testing.assert_allclose(clip, wave[start : start + len(clip)], atol=1e-4)
        assert rec.predict(clip[SR // 4 : SR // 4 + SR]).label == meta["label"]


def test_the_user_judges_and_data_mine_learns_the_false_ones(onnx_model, saved, tmp_path):
    _, folder = saved
    false = folder / "false"
    false.mkdir()
    # The user hears "up" was not said to the device: it goes to false/.
    [up] = [p for p in folder.glob("*.json") if json.loads(p.read_text())["label"] == "up"]
    for path in (up, up.with_suffix(".wav")):
        shutil.move(path, false / path.name)
    (false / "notes.txt").write_text("kept by the user")
    negatives = tmp_path / "negatives"
    result = _cli("data", "mine", false, "-m", onnx_model, "--out", negatives)
    assert result.returncode == 0, result.stderr
    assert "mined 1 window(s)" in result.stdout.decode()
    assert "skipped 1 file(s) that are not audio" in result.stderr.decode()
    [clip] = list((negatives / "_unknown_").glob("*.wav"))
    wave, _ = sf.read(clip, dtype="float32")
    saved_wave, _ = sf.read(false / up.with_suffix(".wav").name, dtype="float32")
    # Exactly the window the detector fired on (no threshold needed to find it again).
    np.testing.assert_allclose(wave, saved_wave[SR // 4 : SR // 4 + SR], atol=1e-4)
    # Mining again adds nothing new.
    again = _cli("data", "mine", false, "-m", onnx_model, "--out", negatives)
    assert again.returncode == 0 and len(list((negatives / "_unknown_").glob("*.wav"))) == 1


@pytest.mark.slow
@pytest.mark.train
def test_train_add_learns_the_mined_negatives(onnx_model, saved, tmp_path, tone_dataset):
    _, folder = saved
    negatives = tmp_path / "negatives"
    result = _cli("data", "mine", folder, "-m", onnx_model, "--out", negatives)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    trained = _cli(
        "train",
        tone_dataset,
        "--add",
        negatives,
        "--out",
        run,
        "--epochs",
        "1",
        "--no-progress",
        "--from-scratch",
        "--set",
        "model.hidden_size=16",
        "--set",
        "model.num_layers=1",
        "--set",
        "train.threads=2",
    )
    assert trained.returncode == 0, trained.stderr
    config = (run / "config.toml").read_text()
    assert str(negatives) in config


def test_a_full_disk_never_stops_listening(tmp_path, monkeypatch):
    from speechlstm.detect import saved
    from speechlstm.detect.stream import Detection

    lines: list[str] = []
    saver = saved.DetectionSaver(tmp_path / "out", SR, SR, log=lines.append)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(saved, "write_atomic", full)
    for i in range(5):
        saver.push(np.zeros(SR, np.float32))
        saver.add(Detection("yes", 0.9, float(i), i + 1.0, "m"))
    stats = saver.close()
    assert stats.saved == 0 and stats.failed == 5
    assert len(lines) == 1 and "No space left on device" in lines[0]


def test_a_save_folder_that_is_a_file_is_refused(onnx_model, tmp_path):
    stream = tmp_path / "s.wav"
    sf.write(stream, np.zeros(3 * SR, np.float32), SR)
    afile = tmp_path / "taken"
    afile.write_text("mine")
    result = _cli("live", "-m", onnx_model, "--input", stream, "--fast", "--save-detections", afile)
    assert result.returncode == 2 and b"is a file" in result.stderr
    assert afile.read_text() == "mine"
