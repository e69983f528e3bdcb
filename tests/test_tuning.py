"""The detector tuner (speechlstm/tuning.py, `speechlstm tune-detector`) on generated
streams: tone words at known times in noise, and negatives of noise alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from speechlstm.cli.main import app
from speechlstm.testing.synth_audio import SR, tone_word


def _stream(seed: int = 0, n_words: int = 16):
    rng = np.random.default_rng(seed)
    words = ("yes", "no", "up", "down")
    out = (rng.standard_normal(SR * (3 * n_words + 2)) * 0.003).astype(np.float32)
    truth, pos = [], SR
    for k in range(n_words):
        word = words[k % 4]
        clip = tone_word(word, rng.uniform(0.85, 1.15), rng=rng)
        out[pos : pos + SR] += clip
        truth.append({"label": word, "start_s": pos / SR + 0.2, "end_s": pos / SR + 0.8})
        pos += 3 * SR
    return out, truth


def test_the_decision_seam_records_every_hop_and_replay_equals_the_detector(onnx_model):
    from speechlstm.runtime import OnnxRecognizer
    from speechlstm.stream import StreamingDetector, detect_file
    from speechlstm.tuning import record_hops, replay

    rec = OnnxRecognizer(onnx_model)
    wave, _ = _stream(n_words=4)
    cfg = rec.description.detector
    ends, scores = record_hops(rec, cfg, wave)
    hop = rec.sample_rate // 10  # one hop per 100 ms, over the whole stream
    assert ends[0] == hop and (np.diff(ends) == hop).all() and ends[-1] >= len(wave)
    assert scores.shape == (len(ends), len(rec.labels))
    replayed = replay(rec, cfg, ends, scores)
    live = detect_file(StreamingDetector(rec, cfg), wave)
    assert [d["label"] for d in replayed] == [d.label for d in live]
    assert len(live) == 4


@pytest.mark.slow
def test_tune_detector_finds_settings_that_catch_the_words_and_writes_them(onnx_model, tmp_path):
    from speechlstm.settings import load_detector_toml

    wave, truth = _stream()
    sf.write(tmp_path / "commands.wav", wave, SR)
    rows = ["label,start_s,end_s"] + [f"{t['label']},{t['start_s']},{t['end_s']}" for t in truth]
    (tmp_path / "truth.csv").write_text("\n".join(rows) + "\n")
    rng = np.random.default_rng(1)
    sf.write(tmp_path / "noise.wav", (rng.standard_normal(SR * 120) * 0.05).astype(np.float32), SR)
    out = tmp_path / "tuned.toml"
    args = ["tune-detector", "-m", str(onnx_model), "--commands", str(tmp_path / "commands.wav"),
            "--truth", str(tmp_path / "truth.csv"), "--negatives", str(tmp_path / "noise.wav"),
            "--write", str(out), "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["matched"] >= 0.9 and row["false_per_hour"] <= 1.0
    tuned = load_detector_toml(out)  # the file export --detector reads
    assert tuned.threshold == row["detector"]["threshold"]
    assert tuned.smoothing_ms == row["detector"]["smoothing_ms"]
    # A second run replaces its own file; a file that is not ours needs --force.
    assert CliRunner().invoke(app, args).exit_code == 0
    out.write_text("my notes\n")
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "--force" in refused.output
    # The DET curve, drawn from every setting tried, with the chosen one marked.
    png = tmp_path / "det.png"
    plotted = CliRunner().invoke(app, [*args[:-3], "--plot", str(png)])
    assert plotted.exit_code == 0, plotted.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.slow
def test_a_latency_bound_nothing_meets_falls_back_to_the_most_commands_not_to_silence(
    onnx_model, tmp_path
):
    """With a 100 ms median-latency bound and words said to end 0.7 s before the
    tones do, no setting qualifies: the tuner keeps the false-alarm budget, drops
    the latency bound, says so, and still catches the words; it never writes a
    detector that matches nothing."""
    wave, truth = _stream()
    sf.write(tmp_path / "commands.wav", wave, SR)
    rows = ["label,start_s,end_s"] + [
        f"{t['label']},{t['start_s']},{t['start_s'] + 0.1:.3f}" for t in truth
    ]
    (tmp_path / "truth.csv").write_text("\n".join(rows) + "\n")
    rng = np.random.default_rng(1)
    sf.write(tmp_path / "noise.wav", (rng.standard_normal(SR * 120) * 0.05).astype(np.float32), SR)
    args = ["tune-detector", "-m", str(onnx_model), "--commands", str(tmp_path / "commands.wav"),
            "--truth", str(tmp_path / "truth.csv"), "--negatives", str(tmp_path / "noise.wav"),
            "--json"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--max-latency-ms", "100"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["budget"] == "false_alarms", row
    assert row["matched"] >= 0.9 and row["false_per_hour"] <= 1.0
    assert row["latency_median_ms"] > 100
    assert "no setting met a 100 ms median latency" in result.output
    # With a bound the words meet, the same search reports that everything was met.
    loose = CliRunner().invoke(app, [*args, "--max-latency-ms", "2000"])
    plain = json.loads(loose.stdout.strip().splitlines()[-1])
    assert plain["budget"] == "all"


def test_truth_files_are_checked_by_line(tmp_path, onnx_model):
    from speechlstm.tuning import read_truth

    path = tmp_path / "t.csv"
    path.write_text("label,start_s,end_s\nyes,1.0,1.5\nno,2.0,oops\n")
    with pytest.raises(ValueError, match="line 3"):
        read_truth(path)
    path.write_text("label,start_s,end_s\n")
    with pytest.raises(ValueError, match="no commands"):
        read_truth(path)
