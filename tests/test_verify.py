"""The second stage (speechlstm/detect/verify.py): it runs only on the detector's
candidates, sees the audio of each, and its rulings are what the tuner replays."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from speechlstm.cli.main import app
from speechlstm.testing.synth_audio import (
    SR,
    STREAM_THRESHOLD,
    STREAM_TRUTH,
    tone_stream,
)

THRESHOLD = STREAM_THRESHOLD
TRUTH = STREAM_TRUTH
_stream = tone_stream


class _Recording:
    """A Verifier that keeps each clip it is shown and rules by a rule given."""

    def __init__(self, verifier, rule):
        self.inner, self.rule, self.seen = verifier, rule, []
        self.window, self.span = verifier.window, verifier.span
        self.rec, self.calls = verifier.rec, 0

    def ruling(self, label, clip):
        """The rule's answer: True keeps the label, a string reports that label."""
        self.calls += 1
        self.seen.append((label, clip.copy()))
        verdict = self.rule(label, clip)
        return label if verdict is True else (verdict or None)


def _detector(onnx_model, verifier=None, **changes):
    from speechlstm.detect.cascade import cascade
    from speechlstm.detect.stream import DetectorConfig
    from speechlstm.runtime import OnnxRecognizer

    cfg = DetectorConfig(threshold=THRESHOLD, **changes)
    return cascade(OnnxRecognizer(onnx_model), verifier, cfg)


def _verifier(onnx_model, threshold=0.3):
    from speechlstm.detect.verify import Verifier
    from speechlstm.runtime import OnnxRecognizer

    rec = OnnxRecognizer(onnx_model)
    return Verifier(rec, threshold, commands=rec.labels)


def test_the_verifier_runs_only_on_candidates_and_sees_their_audio(onnx_model):
    from speechlstm.detect.stream import detect_file

    stream = _stream()
    plain = detect_file(_detector(onnx_model), stream)
    assert [d.label for d in plain] == [w for _, w in TRUTH]
    # Turn down "up" only: everything else goes through.
    spy = _Recording(_verifier(onnx_model), lambda label, clip: label != "up")
    det = _detector(onnx_model, spy)
    found = detect_file(det, stream)
    assert [d.label for d in found] == ["yes", "no", "down"]
    # Called once per candidate, never per hop.
    assert spy.calls == len(plain) == det.stats.verified < det.stats.hops
    assert det.stats.rejected == 1 and det.stats.detections == 3
    # Each call saw the very window that fired: the stream's samples there.
    for (label, clip), d in zip(spy.seen, plain):
        end = round(d.end_s * SR)
        np.testing.assert_array_equal(clip, stream[end - len(clip) : end])
        assert label == d.label


def test_a_relabelling_verifier_reports_the_command_it_hears(onnx_model):
    from speechlstm.detect.stream import detect_file
    from speechlstm.detect.verify import Verifier
    from speechlstm.runtime import OnnxRecognizer

    rec = OnnxRecognizer(onnx_model, threads=1)
    plain = Verifier(rec, 0.6, commands=rec.labels)
    relabel = Verifier(rec, 0.6, commands=rec.labels, relabel=True)
    p = np.zeros(len(rec.labels), np.float32)
    p[rec.labels.index("down")] = 0.7
    p[rec.labels.index("up")] = 0.2
    # Its own label below the threshold: dropped, or named as what the verifier hears.
    assert plain.rule("up", p) is None
    assert relabel.rule("up", p) == "down"
    assert relabel.rule("down", p) == "down"
    # Nothing at the threshold: dropped either way; a background class is never named.
    assert relabel.rule("up", p, threshold=0.8) is None
    silence = np.zeros_like(p)
    silence[rec.labels.index("_silence_")] = 0.9
    assert relabel.rule("up", silence) is None
    # In the stream: the candidate "up" reported as "down", and counted.
    spy = _Recording(_verifier(onnx_model), lambda label, clip: "down" if label == "up" else True)
    det = _detector(onnx_model, spy)
    found = detect_file(det, _stream())
    assert [d.label for d in found] == ["yes", "down", "no", "down"]
    assert det.stats.relabelled == 1 and det.stats.rejected == 0
    assert det.stats.per_label["down"] == 2


def test_a_verifier_with_a_longer_window_gets_the_audio_before_the_candidate(onnx_model):
    from speechlstm.detect.stream import detect_file

    inner = _verifier(onnx_model)
    spy = _Recording(inner, lambda label, clip: True)
    spy.span = int(1.5 * SR)
    stream = _stream()
    found = detect_file(_detector(onnx_model, spy), stream)
    assert len(found) == len(TRUTH)
    for (_, clip), d in zip(spy.seen, found):
        end = round(d.end_s * SR)
        assert len(clip) == int(1.5 * SR)
        np.testing.assert_array_equal(clip, stream[end - len(clip) : end])


def test_the_verifier_judges_the_window_ending_at_the_detection(onnx_model):
    from speechlstm.detect.verify import Verifier, WaveVerifier
    from speechlstm.runtime import OnnxRecognizer

    rec = OnnxRecognizer(onnx_model, threads=1)
    v = Verifier(rec, 0.5)
    w = rec.clip_samples
    stream = _stream()
    end = round(TRUTH[0][0] * SR) + 8000
    np.testing.assert_allclose(v.probs(stream[:end]), rec.predict_clip(stream[end - w : end]))
    assert v.calls == 1 and v.span == w
    # The replay over a whole recording answers the same.
    np.testing.assert_allclose(WaveVerifier(v, stream).probs(end), v.probs(stream[:end]))


def test_a_rejecting_verifier_silences_the_stream_and_a_real_one_agrees(onnx_model):
    from speechlstm.detect.stream import detect_file

    stream = _stream()
    strict = _detector(onnx_model, _verifier(onnx_model, threshold=1.0))
    assert detect_file(strict, stream) == []
    assert strict.stats.rejected == strict.stats.verified == len(TRUTH)
    # The same model as its own verifier, at a threshold its peaks clear, keeps all.
    same = _detector(onnx_model, _verifier(onnx_model, threshold=0.3))
    assert [d.label for d in detect_file(same, stream)] == [w for _, w in TRUTH]


def test_the_tuners_replay_rules_as_the_detector_does(onnx_model):
    from speechlstm.detect.stream import DetectorConfig, detect_file
    from speechlstm.detect.tuning import record_hops, replay
    from speechlstm.detect.verify import WaveVerifier

    stream = _stream(seed=3)
    for vthr, relabel in ((0.3, False), (0.45, False), (0.6, False), (0.6, True)):
        verifier = _verifier(onnx_model, vthr)
        verifier.relabel = relabel
        det = _detector(onnx_model, verifier)
        live = [(d.label, round(d.end_s - 0.5, 3)) for d in detect_file(det, stream)]
        rec = det.rec
        ends, scores = record_hops(rec, DetectorConfig(threshold=THRESHOLD), stream)
        wave = WaveVerifier(verifier, stream)
        replayed = replay(rec, DetectorConfig(threshold=THRESHOLD), ends, scores, wave.ruling)
        assert [(d["label"], round(d["centre_s"], 3)) for d in replayed] == live
    # The replayed rulings are cached per candidate: a second pass runs nothing.
    calls = verifier.calls
    replay(rec, DetectorConfig(threshold=THRESHOLD), ends, scores, wave.ruling)
    assert verifier.calls == calls


def test_audio_history_returns_stream_positions_and_refuses_what_it_dropped():
    from speechlstm.detect.verify import AudioHistory

    h = AudioHistory(100)
    data = np.arange(1, 351, dtype=np.float32)
    for chunk in np.array_split(data, 7):
        h.push(chunk)
    np.testing.assert_array_equal(h.window(350, 40), data[310:350])
    with pytest.raises(IndexError):
        h.window(300, 100)  # starts at 200: before the oldest kept (250)
    fresh = AudioHistory(100)
    fresh.push(data[:30])
    out = fresh.window(30, 50)  # before the stream's start: zeros
    np.testing.assert_array_equal(out[:20], 0)
    np.testing.assert_array_equal(out[20:], data[:30])


def test_transcribe_with_a_verifier_and_a_missing_one_is_a_clear_error(onnx_model, tmp_path):
    import soundfile as sf

    wav = tmp_path / "long.wav"
    sf.write(wav, _stream(), SR)
    runner = CliRunner()
    ok = runner.invoke(
        app,
        ["transcribe", "-m", str(onnx_model), "--verifier", str(onnx_model), "--threshold",
         str(THRESHOLD), "--verifier-threshold", "0.3", str(wav)],
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "4 command(s)" in ok.output
    strict = runner.invoke(
        app,
        ["transcribe", "-m", str(onnx_model), "--verifier", str(onnx_model), "--threshold",
         str(THRESHOLD), "--verifier-threshold", "1.0", str(wav)],
    )  # fmt: skip
    assert strict.exit_code == 0 and "0 command(s)" in strict.output
    missing = runner.invoke(
        app, ["transcribe", "-m", str(onnx_model), "--verifier", str(tmp_path / "no.onnx"),
              str(wav)],
    )  # fmt: skip
    assert missing.exit_code == 2
    assert "no.onnx" in missing.output


def test_live_reports_what_the_verifier_turned_down(onnx_model, tmp_path):
    import soundfile as sf

    wav = tmp_path / "session.wav"
    sf.write(wav, _stream(), SR)
    result = CliRunner().invoke(
        app,
        ["live", "-m", str(onnx_model), "--input", str(wav), "--fast", "--threshold",
         str(THRESHOLD), "--verifier", str(onnx_model), "--verifier-threshold", "1.0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "heard 0 command(s)" in result.output
    assert "the verifier turned down 4 of 4 candidate(s)" in result.output


@pytest.mark.slow
def test_tune_detector_tunes_the_first_stage_for_the_verifier(onnx_model, tmp_path):
    """With a verifier that turns everything down, no threshold matches a command;
    without one the same recordings are matched: the rulings are in the search."""
    import json

    import soundfile as sf

    stream = _stream()
    sf.write(tmp_path / "cmds.wav", stream, SR)
    with open(tmp_path / "truth.csv", "w") as f:
        f.write("label,start_s,end_s\n")
        for start_s, word in TRUTH:
            f.write(f"{word},{start_s + 0.2},{start_s + 0.8}\n")
    rng = np.random.default_rng(9)
    sf.write(tmp_path / "neg.wav", (rng.standard_normal(SR * 30) * 0.003).astype(np.float32), SR)
    args = ["tune-detector", "-m", str(onnx_model), "--commands", str(tmp_path / "cmds.wav"),
            "--truth", str(tmp_path / "truth.csv"), "--negatives", str(tmp_path / "neg.wav"),
            "--json", "--max-latency-ms", "2000"]  # fmt: skip
    runner = CliRunner()
    plain = runner.invoke(app, args)
    assert plain.exit_code == 0, plain.output
    assert json.loads(plain.stdout.strip().splitlines()[-1])["matched"] > 0.5
    strict = runner.invoke(
        app, [*args, "--verifier", str(onnx_model), "--verifier-threshold", "1.0"]
    )
    assert strict.exit_code == 0, strict.output
    assert json.loads(strict.stdout.strip().splitlines()[-1])["matched"] == 0.0


def test_a_detector_file_replaces_the_models_settings_and_a_bad_one_is_named(onnx_model, tmp_path):
    import soundfile as sf

    wav = tmp_path / "long.wav"
    sf.write(wav, _stream(), SR)
    loose = tmp_path / "loose.toml"
    loose.write_text(f"[detector]\nthreshold = {THRESHOLD}\n")
    strict = tmp_path / "strict.toml"
    strict.write_text("[detector]\ngate_dbfs = -3.0\n")  # every window counts as silence
    runner = CliRunner()
    found = runner.invoke(app, ["transcribe", "-m", str(onnx_model), "--detector", str(loose),
                                str(wav)])  # fmt: skip
    assert found.exit_code == 0 and "4 command(s)" in found.output, found.output
    quiet = runner.invoke(app, ["transcribe", "-m", str(onnx_model), "--detector", str(strict),
                                str(wav)])  # fmt: skip
    assert quiet.exit_code == 0 and "0 command(s)" in quiet.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[detector]\nthreshold = 7\n")
    refused = runner.invoke(app, ["live", "-m", str(onnx_model), "--input", str(wav), "--fast",
                                  "--detector", str(bad)])  # fmt: skip
    assert refused.exit_code == 2 and "bad.toml" in refused.output


def test_live_relabel_renames_what_the_verifier_hears_and_needs_a_verifier(onnx_model, tmp_path):
    """The model as its own verifier at a threshold its peaks clear: every
    candidate is heard as itself, so relabelling renames none and keeps all;
    --verifier-relabel alone is a usage error that says what is missing."""
    import soundfile as sf

    wav = tmp_path / "session.wav"
    sf.write(wav, _stream(), SR)
    base = ["live", "-m", str(onnx_model), "--input", str(wav), "--fast", "--threshold",
            str(THRESHOLD)]  # fmt: skip
    runner = CliRunner()
    result = runner.invoke(
        app, [*base, "--verifier", str(onnx_model), "--verifier-threshold", "0.3",
              "--verifier-relabel"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "heard 4 command(s)" in result.output
    assert "turned down 0 of 4 candidate(s) and renamed 0" in result.output
    alone = runner.invoke(app, [*base, "--verifier-relabel"])
    assert alone.exit_code == 2
    assert "--verifier-relabel needs --verifier" in alone.output
    retired = runner.invoke(app, [*base, "--verifier", str(onnx_model), "--verifier-centre"])
    assert retired.exit_code == 2 and "--verifier-centre" in retired.output


@pytest.mark.slow
def test_the_verifiers_audio_is_bounded_by_what_it_needs_not_by_the_hop(onnx_model):
    """The verifier's clip is the end of a hop's own window: the detector keeps
    the few windows a candidate can still come from, however long the hop
    (an audio history sized by the hop held minutes of audio at --hop-ms 60000),
    and the rulings are those of the whole recording."""
    from speechlstm.detect.stream import detect_file
    from speechlstm.detect.verify import WaveVerifier

    stream = _stream()
    for hop_ms in (100.0, 60_000.0):
        det = _detector(onnx_model, _verifier(onnx_model), hop_ms=hop_ms)
        assert det.decision.audio is None and det.decision.recent.maxlen <= 5
    det = _detector(onnx_model, _verifier(onnx_model))
    spy = _Recording(det.decision.verifier, lambda label, clip: True)
    det.decision.verifier = spy
    found = detect_file(det, stream)
    assert len(found) == len(TRUTH)
    whole = WaveVerifier(_verifier(onnx_model), stream)
    for (_, clip), d in zip(spy.seen, found):
        end = round(d.end_s * SR)
        np.testing.assert_array_equal(clip, whole.audio.window(end, len(clip)))
