"""The detector tuner (speechlstm/detect/tuning.py, `speechlstm tune-detector`) on generated
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
    from speechlstm.detect.stream import StreamingDetector, detect_file
    from speechlstm.detect.tuning import record_hops, replay
    from speechlstm.runtime import OnnxRecognizer

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
    from speechlstm.config_text import load_detector_toml

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
    tuned = load_detector_toml(out)  # the file store-detector and export --detector read
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
    from speechlstm.detect.labelled import read_truth

    path = tmp_path / "t.csv"
    path.write_text("label,start_s,end_s\nyes,1.0,1.5\nno,2.0,oops\n")
    with pytest.raises(ValueError, match="line 3"):
        read_truth(path)
    path.write_text("label,start_s,end_s\n")
    with pytest.raises(ValueError, match="no commands"):
        read_truth(path)


def _labelled(onnx_model, tmp_path):
    """Command stream and 2 minutes of noise negatives as files, and their streams."""
    from speechlstm.detect.labelled import LabelledStreams

    wave, truth = _stream(seed=5, n_words=8)
    rng = np.random.default_rng(2)
    sf.write(tmp_path / "commands.wav", wave, SR)
    noise = (rng.standard_normal(SR * 120) * 0.05).astype(np.float32)
    noise[SR * 30 : SR * 31] += _stream(seed=9, n_words=1)[0][SR : 2 * SR]  # a word-like tone
    sf.write(tmp_path / "noise.wav", noise, SR)
    return LabelledStreams(tmp_path / "commands.wav", truth, [tmp_path / "noise.wav"], SR)


@pytest.mark.slow
def test_the_tuners_shortcuts_give_the_rows_of_a_full_replay(onnx_model, tmp_path):
    """Recording once unsmoothed, smoothing afterwards and replaying only the hops
    a decision can act on (tuning.compress) measures every setting exactly as a
    full replay of the detector at that setting does."""
    import dataclasses

    from speechlstm.detect.tuning import Tuner, evaluate_detector, record_all
    from speechlstm.runtime import OnnxRecognizer

    rec = OnnxRecognizer(onnx_model)
    streams = _labelled(onnx_model, tmp_path)
    tuner = Tuner(rec, rec.description.detector, streams)
    for smoothing in (200.0, 500.0):
        base = dataclasses.replace(rec.description.detector, smoothing_ms=smoothing, thresholds=())
        full_hops = record_all(rec, base, streams)
        for threshold, per_label in ((0.4, ()), (0.7, (("yes", 0.65),)), (0.95, ())):
            cfg = dataclasses.replace(base, threshold=threshold, thresholds=per_label)
            assert tuner.evaluate(cfg) == evaluate_detector(rec, cfg, full_hops, streams)
    # The compressed replay keeps a small part of the negative hops.
    kept = len(tuner.hops(200.0)["negative"][0][0])
    assert kept < len(tuner.raw["negative"][0][0]) / 2


@pytest.mark.slow
def test_tune_detector_stores_operating_points_that_sensitivity_walks(onnx_model, tmp_path):
    """--write stores a point per false-alarm budget (fewest first) with what each
    measured; live/transcribe --sensitivity and the API pick among them; a
    model stored with them lists them in `info`."""
    from speechlstm.api import Detector
    from speechlstm.config_text import load_detector_toml
    from speechlstm.detect.tuning import POINT_BUDGETS

    _labelled(onnx_model, tmp_path)
    truth_rows = _stream(seed=5, n_words=8)[1]
    rows = ["label,start_s,end_s"] + [
        f"{t['label']},{t['start_s']},{t['end_s']}" for t in truth_rows
    ]
    (tmp_path / "truth.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "tuned.toml"
    result = CliRunner().invoke(app, [
        "tune-detector", "-m", str(onnx_model), "--commands", str(tmp_path / "commands.wav"),
        "--truth", str(tmp_path / "truth.csv"), "--negatives", str(tmp_path / "noise.wav"),
        "--write", str(out), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    tuned = load_detector_toml(out)
    assert [p.max_false_per_hour for p in tuned.points] == list(POINT_BUDGETS)
    matched = [p.matched for p in tuned.points]
    assert matched == sorted(matched)  # a larger budget never catches fewer
    reported = json.loads(result.stdout.strip().splitlines()[-1])["detector"]["points"]
    for point, row in zip(tuned.points, reported):
        assert point.matched == row["matched"] and point.threshold == row["threshold"]
        assert 0 < point.matched <= 1
    # Sensitivity 0 is the first point, 1 the last, in between evenly.
    for sensitivity, index in ((0.0, 0), (0.4, 2), (1.0, len(POINT_BUDGETS) - 1)):
        det = Detector(onnx_model, detector_file=out, sensitivity=sensitivity)
        point = tuned.points[index]
        assert det.points == [point]
        assert det.configs[0].threshold == point.threshold
        assert det.configs[0].smoothing_ms == point.smoothing_ms
    # Stored into the model (store-detector), `info` lists the points.
    stored = tmp_path / "stored.onnx"
    args = ["store-detector", str(onnx_model), str(out), "-o", str(stored)]
    assert CliRunner().invoke(app, args).exit_code == 0
    info = CliRunner().invoke(app, ["info", str(stored)])
    assert info.exit_code == 0 and "--sensitivity" in info.output
    listed = [line for line in info.output.splitlines() if " matched, " in line]
    assert [line.split(":")[0].strip() for line in listed] == [
        "0.0",
        "0.2",
        "0.4",
        "0.6",
        "0.8",
        "1.0",
    ]
    ok = CliRunner().invoke(app, ["transcribe", "-m", str(stored), "--sensitivity", "1",
                                  str(tmp_path / "commands.wav")])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert sum(word in ok.output for word in ("yes", "no", "up", "down")) >= 2


def test_a_sensitivity_needs_stored_points_and_a_range(onnx_model, tmp_path):
    """A model without points, or a sensitivity outside 0-1: one clear line, exit 2."""
    wave = _stream(n_words=1)[0]
    sf.write(tmp_path / "w.wav", wave, SR)
    none = CliRunner().invoke(app, ["transcribe", "-m", str(onnx_model), "--sensitivity", "0.5",
                                    str(tmp_path / "w.wav")])  # fmt: skip
    assert none.exit_code == 2 and "operating points" in none.output, none.output
    assert "tune-detector" in none.output
    for bad in ("1.5", "-0.1", "nan"):
        out = CliRunner().invoke(app, ["transcribe", "-m", str(onnx_model), "--sensitivity", bad,
                                       str(tmp_path / "w.wav")])  # fmt: skip
        assert out.exit_code == 2, (bad, out.output)


def test_a_cascade_point_brings_its_verifier_threshold_unless_one_is_given(onnx_model, tmp_path):
    """A point tuned with a second stage sets the verifier's threshold at that
    sensitivity; an explicit verifier_threshold wins; points are read back from
    the TOML `tune-detector --write` writes, per-label thresholds included."""
    from speechlstm.api import Detector
    from speechlstm.config import DetectorConfig, OperatingPoint
    from speechlstm.config_text import load_detector_toml
    from speechlstm.detect.tuning import detector_toml

    points = (
        OperatingPoint(0.5, 0.9, 300.0, (("yes", 0.85),), verifier_threshold=0.95, matched=0.4),
        OperatingPoint(4.0, 0.6, 200.0, (), verifier_threshold=0.6, matched=0.8),
    )
    path = tmp_path / "pair.toml"
    path.write_text(detector_toml(DetectorConfig(threshold=0.7, points=points)))
    assert load_detector_toml(path).points == points
    strict = Detector(onnx_model, detector_file=path, verifier=str(onnx_model), sensitivity=0)
    assert strict.verifiers[0].threshold == 0.95
    assert strict.configs[0].threshold_for("yes") == 0.85
    loose = Detector(onnx_model, detector_file=path, verifier=str(onnx_model), sensitivity=1)
    assert loose.verifiers[0].threshold == 0.6 and loose.configs[0].smoothing_ms == 200
    given = Detector(onnx_model, detector_file=path, verifier=str(onnx_model), sensitivity=1,
                     verifier_threshold=0.7)  # fmt: skip
    assert given.verifiers[0].threshold == 0.7
    # Without a sensitivity the file's own settings hold.
    plain = Detector(onnx_model, detector_file=path)
    assert plain.configs[0].threshold == 0.7 and plain.points == [None]
    with pytest.raises(ValueError, match="sensitivity"):
        Detector(onnx_model, detector_file=path, sensitivity=1.5)
