"""The command line: train -> export -> transcribe end to end, exit codes, output formats."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from speechlstm.cli.main import app
from speechlstm.testing.synth_audio import SR, tone_word

runner = CliRunner()


def _clips(tmp_path):
    good = {}
    for word in ("yes", "no", "up", "down"):
        path = tmp_path / f"{word}.wav"
        sf.write(path, tone_word(word, 1.05, offset_s=0.2), SR)
        good[word] = path
    flac = tmp_path / "no48k.flac"  # other format and rate: resampled
    sf.write(flac, np.interp(np.arange(48000) / 3, np.arange(16000), tone_word("no", 1.05)), 48000)
    good["no48k"] = flac
    return good


def test_transcribe_labels_good_files_and_reports_bad_ones(onnx_model, tmp_path):
    good = _clips(tmp_path)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    missing = tmp_path / "missing.wav"
    args = [
        "transcribe",
        "--model",
        str(onnx_model),
        "--json",
        "--top-k",
        "3",
        *map(str, good.values()),
        str(corrupt),
        str(missing),
        str(tmp_path),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == len(good) + 3
    by_path = {row["path"]: row for row in rows}
    for word, path in good.items():
        row = by_path[str(path)]
        assert row["label"] == word.replace("48k", "")
        assert 0.0 < row["score"] <= 1.0
        assert len(row["top"]) == 3 and row["top"][0] == [row["label"], row["score"]]
    for bad in (corrupt, missing, tmp_path):
        assert "error" in by_path[str(bad)] and "label" not in by_path[str(bad)]
    assert "is a directory" in by_path[str(tmp_path)]["error"]
    assert f"error: {corrupt}" in result.stderr


def test_transcribe_plain_output_and_long_recording_timeline(onnx_model, tmp_path):
    clip = tmp_path / "yes.wav"
    sf.write(clip, tone_word("yes", 1.05, offset_s=0.2), SR)
    result = runner.invoke(app, ["transcribe", "-m", str(onnx_model), str(clip)])
    assert result.exit_code == 0, result.output
    name, label, score = result.stdout.split()
    assert name == str(clip) and label == "yes" and 0.3 < float(score) <= 1.0
    silence = np.zeros(SR * 2, np.float32)
    long = np.concatenate([silence, tone_word("up", 1.0), silence, tone_word("no", 1.0), silence])
    path = tmp_path / "long.wav"
    sf.write(path, long, SR)
    result = runner.invoke(
        app, ["transcribe", "-m", str(onnx_model), "--threshold", "0.37", "--json", str(path)]
    )
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["path"] == str(path)
    assert [d["label"] for d in row["detections"]] == ["up", "no"]
    first, second = row["detections"]
    assert 1.5 <= first["start_s"] <= 2.5 and 4.5 <= second["start_s"] <= 5.5


def test_usage_errors_exit_2(onnx_model, tmp_path):
    wav = _clips(tmp_path)["yes"]
    cases = [
        ["transcribe", "--model", str(tmp_path / "none.onnx"), str(wav)],
        ["transcribe", "--model", str(onnx_model), "--top-k", "0", str(wav)],
        ["transcribe", "--model", str(onnx_model)],
        ["transcribe", "--model", str(onnx_model), "--bogus", str(wav)],
    ]
    for args in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)


@pytest.mark.train
def test_train_usage_errors_exit_2(tmp_path):
    cases = [
        ["train", str(tmp_path / "no-such-dataset"), "--out", str(tmp_path / "r")],
        ["train", str(tmp_path), "--set", "model.cell=transformer"],
    ]
    for args in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)


def test_info_prints_the_recipe(onnx_model):
    result = runner.invoke(app, ["info", str(onnx_model)])
    assert result.exit_code == 0, result.output
    assert "labels:    down, no, up, yes, _silence_" in result.stdout
    assert "40 MFCC" in result.stdout and "bidirectional lstm" in result.stdout
    as_json = json.loads(runner.invoke(app, ["info", str(onnx_model), "--json"]).stdout)
    assert as_json["labels"][-1] == "_silence_"


def test_transcribe_never_imports_torch(onnx_model, tmp_path):
    wav = _clips(tmp_path)["yes"]
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from speechlstm.cli.main import app\n"
        f"r = CliRunner().invoke(app, ['transcribe', '-m', {str(onnx_model)!r}, {str(wav)!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
        "print(r.stdout.split()[1])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["[]", "yes"]


@pytest.mark.train
@pytest.mark.slow
def test_train_export_transcribe_from_the_command_line(tone_dataset, tmp_path):
    run = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train",
            str(tone_dataset),
            "--out",
            str(run),
            "--epochs",
            "2",
            "--hidden",
            "8",
            "--layers",
            "1",
            "--no-cache",
            "--no-progress",
            "--set",
            "augment.spec_augment=false",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.stdout
    config = (run / "config.toml").read_text()
    assert "hidden_size = 8" in config and "epochs = 2" in config
    model = tmp_path / "m.onnx"
    result = runner.invoke(app, ["export", str(run / "best.pt"), "-o", str(model)])
    assert result.exit_code == 0, result.output
    assert "max |onnx - torch|" in result.stdout
    result = runner.invoke(app, ["transcribe", "-m", str(model), str(_clips(tmp_path)["yes"])])
    assert result.exit_code == 0 and result.stdout.split()[1] in {
        "yes",
        "no",
        "up",
        "down",
        "_silence_",
    }
    # A second train into the same folder without --resume is refused, not overwritten.
    again = runner.invoke(app, ["train", str(tone_dataset), "--out", str(run)])
    assert again.exit_code == 2 and "--resume" in again.output


@pytest.mark.train
@pytest.mark.slow
def test_gru_cell_trains_exports_and_scores_from_the_command_line(tone_dataset, tmp_path):
    run = tmp_path / "gru"
    flags = ["--hidden", "24", "--layers", "1", "--batch-size", "16", "--lr", "0.01"]
    sets = ["train.warmup_epochs=0.5", "train.patience=0", "augment.spec_augment=false"]
    args = ["train", str(tone_dataset), "--out", str(run), "--cell", "gru", "--epochs", "6"]
    args += flags + ["--no-cache", "--no-progress", "--grad-clip", "1.0", "--verbose"]
    for item in sets:
        args += ["--set", item]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert 'cell = "gru"' in (run / "config.toml").read_text()
    assert "grad_clip = 1.0" in (run / "config.toml").read_text()
    assert "gradient norm per layer" in result.output
    model = tmp_path / "gru.int8.onnx"
    result = runner.invoke(app, ["export", str(run / "best.pt"), "-o", str(model), "--int8"])
    assert result.exit_code == 0, result.output
    info = runner.invoke(app, ["info", str(model)])
    assert info.exit_code == 0 and "bidirectional gru" in info.stdout
    clips = _clips(tmp_path)
    out = tmp_path / "scores.csv"
    result = runner.invoke(
        app, ["score", str(clips["yes"]), str(clips["no"]), "-m", str(model), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    labels = {Path(r["path"]).stem: r["label"] for r in rows}
    assert labels == {"yes": "yes", "no": "no"}  # tone words are easy for any cell
    bogus = runner.invoke(
        app, ["train", str(tone_dataset), "--out", str(tmp_path / "x"), "--cell", "lstmx"]
    )
    assert bogus.exit_code == 2 and "model.cell" in bogus.output


def test_shipped_default_model_is_used_without_model_option(tmp_path):
    from speechlstm.labels import SC12_WORDS
    from speechlstm.runtime import default_model_path

    path = default_model_path()
    assert path is not None, "speechlstm/assets/sc12.int8.onnx is missing (make default-model)"
    assert path.stat().st_size < 2_000_000
    info = runner.invoke(app, ["info", "--json"])
    assert info.exit_code == 0
    meta = json.loads(info.stdout)
    assert tuple(meta["labels"]) == (*SC12_WORDS, "_unknown_", "_silence_")
    assert meta["quantization"] == "dynamic-int8"
    silence = tmp_path / "quiet.wav"
    sf.write(silence, np.zeros(SR, np.float32), SR)
    result = runner.invoke(app, ["transcribe", "--json", str(silence)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["label"] == "_silence_"
