"""Hostile and careless input: property-based tests (Hypothesis) over audio
headers, model metadata, configs and CLI values, and every inference command
run on hostile input with a check that no traceback escapes.

The contract (README, "Reliability"): a bad input gets one line naming it and
the reason; exit 1 when some inputs failed, 2 for usage or an unusable
model/config/output, 0 otherwise; never a traceback.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speechlstm.testing.synth_audio import tone_word

FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


# -- audio headers ------------------------------------------------------------
def wav_bytes(rate: int, channels: int, bits: int, fmt: int, data: bytes, declared: int) -> bytes:
    """A RIFF/WAVE file whose header says what the caller wants, true or not."""
    block = channels * max(bits // 8, 1)
    fmt_chunk = struct.pack(
        "<HHIIHH", fmt, channels, rate, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits
    )
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt_chunk
    body += b"data" + struct.pack("<I", declared & 0xFFFFFFFF) + data
    return b"RIFF" + struct.pack("<I", len(body) & 0xFFFFFFFF) + body


@FAST
@given(
    rate=st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([1, 8000, 16000, 44100, 48000])),
    channels=st.integers(0, 65535),
    bits=st.sampled_from([0, 1, 8, 12, 16, 24, 32, 64]),
    fmt=st.sampled_from([0, 1, 3, 0xFFFE, 7, 12345]),
    data=st.binary(max_size=4000),
    declared=st.one_of(st.just(-1), st.integers(0, 2**32 - 1)),
)
def test_any_wav_header_decodes_to_sane_audio_or_a_named_error(
    tmp_path_factory, rate, channels, bits, fmt, data, declared
):
    from speechlstm.audio import InvalidAudio, load_audio

    path = tmp_path_factory.mktemp("wav") / "h.wav"
    blob = wav_bytes(rate, channels, bits, fmt, data, len(data) if declared < 0 else declared)
    path.write_bytes(blob)
    try:
        audio = load_audio(path)
    except InvalidAudio as exc:
        assert str(path) in str(exc) and exc.reason
        return
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    # What a lying header cannot do: turn a few KB into hours of audio.
    assert len(audio) <= 16000 / 4000 * len(blob) + 16000


def test_header_rate_and_channel_lies_are_refused_by_name(tmp_path):
    from speechlstm.audio import InvalidAudio, load_audio

    pcm = (np.sin(np.arange(16000) * 0.05) * 8000).astype("<i2").tobytes()
    for rate, channels, reason in ((1, 1, "sample rate"), (16000, 100, "channel count")):
        path = tmp_path / f"lie_{rate}_{channels}.wav"
        path.write_bytes(wav_bytes(rate, channels, 16, 1, pcm, len(pcm)))
        with pytest.raises(InvalidAudio, match=reason):
            load_audio(path)
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(40, np.float32) + 0.1, 16000)  # 2.5 ms
    with pytest.raises(InvalidAudio, match="too short"):
        load_audio(short)


def test_file_names_that_are_not_utf8_are_read(tmp_path):
    from speechlstm.audio import load_audio

    name = os.fsdecode(str(tmp_path).encode() + b"/caf\xe9-\xff.wav")
    sf.write(os.fsencode(name), tone_word("yes"), 16000)
    assert len(load_audio(name)) == 16000


# -- model metadata -------------------------------------------------------------
JSONISH = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**40), 2**40),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
    ),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@FAST
@given(
    key=st.sampled_from(["labels", "features", "model", "detector", "training", "quantization"]),
    field=st.sampled_from(
        [
            "sample_rate",
            "clip_ms",
            "n_mfcc",
            "n_mels",
            "hop_ms",
            "window_ms",
            "n_fft",
            "f_max_hz",
            "hidden_size",
            "num_layers",
            "frame_stack",
            "threshold",
            "hop_ms",
            "thresholds",
            "x",
        ]
    ),  # fmt: skip
    value=JSONISH,
    replace_whole=st.booleans(),
)
def test_any_model_description_parses_or_names_the_field(key, field, value, replace_whole):
    from speechlstm.modelmeta import DescriptionError, from_props
    from speechlstm.testing.tiny_onnx import model_props

    props = model_props()
    full = f"speechlstm.{key}"
    if replace_whole or key in ("labels", "quantization"):
        props[full] = (
            value if key == "quantization" and isinstance(value, str) else json.dumps(value)
        )
    else:
        section = json.loads(props[full]) if full in props else {}
        section[field] = value
        props[full] = json.dumps(section)
    try:
        desc = from_props(props)
    except DescriptionError as exc:
        assert str(exc).strip()
        return
    # Whatever was accepted is usable: labels are printable names, sizes are sane.
    assert desc.labels and all(isinstance(x, str) and x.isprintable() and x for x in desc.labels)
    assert len(set(desc.labels)) == len(desc.labels)
    f = desc.features
    assert f.sample_rate == 16000 and 0 < f.clip_ms <= 60_000
    assert all(math.isfinite(v) for v in (f.hop_ms, f.window_ms, f.f_min_hz, f.f_max_hz))
    assert 0 <= desc.detector.threshold <= 1 and 0 < desc.detector.hop_ms <= 60_000


# -- configuration ----------------------------------------------------------------
SETTINGS = [
    "train.epochs", "train.lr", "train.batch_size", "train.label_smoothing",
    "train.feature_distill", "train.threads", "model.hidden_size", "model.cell",
    "model.frame_stack", "model.dropout", "augment.noise_prob", "augment.pitch",
    "features.n_mfcc", "features.hop_ms", "features.clip_ms", "features.sample_rate",
    "detector.threshold", "detector.hop_ms", "data.extra_share", "data.words", "nosuch.key",
    "train.nosuch", "train.mixup", "augment.speed", "train.distill_weight",
    "train.embedding_copies", "augment.detector_windows", "augment.time_shift_ms",
    "embedding.copies", "embedding.lr", "embedding.heads",
]  # fmt: skip
VALUES = st.one_of(
    st.sampled_from(["0", "-5", "inf", "-inf", "nan", "1e308", "abc", "", "true", "3", "0.5",
                     "1.5", "lstm", "99999999999999999999", "yes,no"]),
    st.text(max_size=10),
)  # fmt: skip


@FAST
@given(items=st.lists(st.tuples(st.sampled_from(SETTINGS), VALUES), min_size=1, max_size=4))
def test_any_set_values_give_a_valid_config_or_a_named_error(items):
    from speechlstm.config import RunConfig
    from speechlstm.config_text import apply_overrides

    try:
        cfg = apply_overrides(RunConfig(), dict(items)).validate()
    except ValueError as exc:
        assert str(exc).strip()
        return
    t = cfg.train
    assert t.epochs >= 1 and t.batch_size >= 1 and math.isfinite(t.lr) and t.lr > 0
    assert 0 <= t.label_smoothing < 1 and 0 <= cfg.augment.noise_prob <= 1
    assert cfg.model.hidden_size >= 1 and 0 <= cfg.detector.threshold <= 1
    assert 0 <= t.feature_distill <= 100 and 0 <= t.distill_weight <= 1
    assert cfg.features.sample_rate == 16000
    assert 0 <= cfg.embedding.copies <= 16 and 1 <= cfg.embedding.heads <= 8
    assert math.isfinite(cfg.embedding.lr) and cfg.embedding.lr > 0
    assert math.isfinite(cfg.augment.time_shift_ms) and cfg.augment.time_shift_ms >= 0


@FAST
@given(text=st.text(max_size=200))
def test_any_toml_text_loads_or_names_the_problem(tmp_path_factory, text):
    from speechlstm.config_text import load_toml

    path = tmp_path_factory.mktemp("toml") / "c.toml"
    path.write_text("[train]\n" + text, encoding="utf-8", errors="surrogateescape")
    try:
        load_toml(path)
    except ValueError as exc:
        assert str(path) in str(exc) or str(exc).strip()


# -- every inference command on hostile input: no traceback ----------------------
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # Bytes: a name that is not UTF-8 (surrogate escapes here) reaches the command as it is.
    return subprocess.run(
        [sys.executable, "-m", "speechlstm", *map(os.fsencode, args)],
        capture_output=True,
        cwd=cwd,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory, onnx_model) -> Path:
    """Good and bad audio, bad names, lying headers, broken models and configs."""
    d = tmp_path_factory.mktemp("hostile")
    sf.write(d / "yes.wav", tone_word("yes"), 16000)
    sf.write(os.fsencode(str(d)) + b"/bad-\xff\xfe.wav", tone_word("no"), 16000)
    pcm = (np.sin(np.arange(8000) * 0.05) * 8000).astype("<i2").tobytes()
    (d / "rate1.wav").write_bytes(wav_bytes(1, 1, 16, 1, pcm, len(pcm)))
    (d / "huge.wav").write_bytes(wav_bytes(16000, 1, 16, 1, pcm, 2**31))
    (d / "empty.wav").write_bytes(b"")
    (d / "text.wav").write_bytes(b"this is not audio at all\n" * 40)
    (d / "list.txt").write_bytes(b"yes.wav\nbad-\xff\xfe.wav\nmissing.wav\n")
    (d / "notours.csv").write_text("name,amount\nrent,1200\n")
    (d / "garbage.onnx").write_bytes(b"\x08\x07garbage" * 100)
    (d / "model.onnx").write_bytes(onnx_model.read_bytes())
    (d / "bad.toml").write_text("[detector]\nthreshold = 7\n")
    (d / "manifest.csv").write_bytes(b"path,label\nyes.wav,yes\nbad-\xff\xfe.wav,no\n")
    (d / "labels.csv").write_bytes(b"path,label\nyes.wav,\x01bell\n")
    os.symlink(d / "nowhere.wav", d / "dangling.wav")
    return d


HOSTILE_COMMANDS = [
    ["transcribe", "yes.wav", "-m", "model.onnx"],
    [
        "transcribe",
        "bad-\udcff\udcfe.wav",
        "rate1.wav",
        "huge.wav",
        "empty.wav",
        "-m",
        "model.onnx",
    ],
    ["transcribe", "text.wav", "dangling.wav", "nothere.wav", "-m", "model.onnx", "--json"],
    ["transcribe", "yes.wav", "-m", "garbage.onnx"],
    ["transcribe", "yes.wav", "-m", "nothere.onnx"],
    ["transcribe", "yes.wav", "-m", "model.onnx", "--hop-ms", "inf"],
    ["transcribe", "yes.wav", "-m", "model.onnx", "--threads", "100000"],
    ["info", "garbage.onnx"],
    ["info", "model.onnx"],
    ["score", ".", "-m", "model.onnx", "--no-progress"],
    ["score", "list.txt", "-m", "model.onnx", "-o", "out.csv", "--no-progress"],
    ["score", "list.txt", "-m", "model.onnx", "-o", "out.csv", "--resume", "--no-progress"],
    ["score", "yes.wav", "-m", "model.onnx", "-o", "notours.csv", "--no-progress"],
    ["score", "yes.wav", "-m", "model.onnx", "-o", "notours.csv", "--resume"],
    ["score", "yes.wav", "-m", "model.onnx", "-o", "out.csv", "-f", "jsonl", "--resume"],
    ["score", "yes.wav", "-m", "model.onnx", "-o", "/nonexistent/dir/out.csv"],
    ["score", "yes.wav", "-m", "model.onnx", "--batch-size", "100000000"],
    ["score", "yes.wav", "-m", "model.onnx", "--format", "xml"],
    ["evaluate", "manifest.csv", "-m", "model.onnx", "--split", "all"],
    ["evaluate", "labels.csv", "-m", "model.onnx", "--split", "all"],
    ["evaluate", "nothere", "-m", "model.onnx"],
    ["live", "--input", "huge.wav", "-m", "model.onnx", "--fast"],
    ["live", "--input", "yes.wav", "-m", "model.onnx", "--fast", "--config", "bad.toml"],
    ["live", "--input", "yes.wav", "-m", "model.onnx", "--smoothing-ms", "inf"],
    ["data", "download", "speech-commands", "--sha256", "xyz", "--out", "dl"],
    ["data", "download", "speech-commands", "--out", "/proc/nope"],
    ["data", "synth", "--words", "yes", "--clips", "1", "--out", "yes.wav"],
    ["data", "synth", "--words", "yes", "--clips", "1", "--out", "/proc/nope"],
    ["data", "synth", "--words", ",", "--out", "s1"],
    ["data", "record", "--words", "yes", "--takes", "1", "--out", "r1", "--device", "999"],
    ["--definitely-not-an-option"],
]


@pytest.mark.parametrize("args", HOSTILE_COMMANDS, ids=lambda a: " ".join(a)[:60])
def test_no_command_ends_in_a_traceback(hostile_dir, args):
    result = _cli(*args, cwd=hostile_dir)
    err = result.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err
    assert "unexpected" not in err, err  # the last-resort handler means a missed case
    assert result.returncode in (0, 1, 2), (result.returncode, err)
    if result.returncode:
        assert err.strip(), "a failure must say why"


def test_score_output_that_is_not_ours_is_left_intact(hostile_dir):
    before = (hostile_dir / "notours.csv").read_bytes()
    result = _cli("score", "yes.wav", "-m", "model.onnx", "-o", "notours.csv", cwd=hostile_dir)
    assert result.returncode == 2 and b"notours.csv" in result.stderr
    assert (hostile_dir / "notours.csv").read_bytes() == before


def test_non_utf8_names_survive_score_and_resume(hostile_dir, tmp_path):
    out = tmp_path / "r.csv"
    first = _cli("score", ".", "-m", "model.onnx", "-o", str(out), "--no-progress", cwd=hostile_dir)
    assert first.returncode == 1  # the broken files
    rows = out.read_bytes().splitlines()
    assert any(b"bad-\xff\xfe.wav" in row for row in rows)
    again = _cli(
        "score", ".", "-m", "model.onnx", "-o", str(out), "--resume", "--no-progress",
        cwd=hostile_dir,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert out.read_bytes().splitlines() == rows  # nothing scored twice, nothing lost


def test_a_second_writer_to_one_output_is_refused(hostile_dir, tmp_path):
    import fcntl

    out = tmp_path / "locked.csv"
    out.write_text("path,label,score,top,duration_s,error\n")
    with out.open("a") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        result = _cli("score", "yes.wav", "-m", "model.onnx", "-o", str(out), cwd=hostile_dir)
    assert result.returncode == 2 and b"another process" in result.stderr
    assert out.read_text() == "path,label,score,top,duration_s,error\n"


def test_evaluate_where_every_file_failed_prints_no_accuracy(tmp_path, onnx_model):
    (tmp_path / "m.csv").write_text("path,label\nnope1.wav,yes\nnope2.wav,no\n")
    result = _cli("evaluate", "m.csv", "-m", str(onnx_model), "--split", "all", cwd=tmp_path)
    assert result.returncode == 1
    assert b"accuracy" not in result.stdout and b"nope1.wav" in result.stderr


# -- long audio streams in bounded memory ------------------------------------------
def _recording(path: Path, seconds: float, rate: int = 44100, channels: int = 2) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((int(seconds * rate), channels)).astype(np.float32) * 0.01
    for i, word in enumerate(("yes", "no", "up")):
        clip = tone_word(word)  # 16 kHz, placed at `rate` by interpolation
        start = int((1.5 + 2.5 * i) * rate)
        n = min(len(clip) * rate // 16000, len(x) - start)
        x[start : start + n] += np.interp(np.arange(n) * 16000 / rate, np.arange(len(clip)), clip)[
            :, None
        ]
    sf.write(path, x, rate)


def test_streamed_decoding_equals_whole_decoding(tmp_path):
    from speechlstm.audio import load_audio, stream_audio

    path = tmp_path / "rec.wav"
    _recording(path, 9.0)
    whole = load_audio(path)
    blocks = list(stream_audio(path, block_s=0.7))
    assert len(blocks) > 10 and max(len(b) for b in blocks) <= 1.1 * 0.7 * 16000
    np.testing.assert_allclose(np.concatenate(blocks), whole, atol=1e-6)


def test_streamed_classification_and_detection_equal_the_whole_file(tmp_path, onnx_model):
    from speechlstm.audio import load_audio, stream_audio
    from speechlstm.detect.stream import StreamingDetector, detect_file, detect_stream
    from speechlstm.runtime import OnnxRecognizer
    from speechlstm.transcribe import classify_stream, classify_waveform

    rec = OnnxRecognizer(onnx_model)
    path = tmp_path / "rec.wav"
    _recording(path, 9.0)
    wave = load_audio(path)
    probs, n = classify_stream(rec, stream_audio(path, block_s=0.37), hop_ms=100)
    assert n == len(wave)
    np.testing.assert_allclose(probs, classify_waveform(rec, wave, hop_ms=100), atol=1e-5)
    det = StreamingDetector(rec)
    found, n = detect_stream(det, stream_audio(path, block_s=0.37))
    assert [d.label for d in found] == [d.label for d in detect_file(det, wave)]
    assert [d.label for d in found] == ["yes", "no", "up"]
    # A short file through the streaming path is classified as one clip.
    short = tmp_path / "short.wav"
    sf.write(short, tone_word("up"), 16000)
    probs, n = classify_stream(rec, stream_audio(short))
    assert n == 16000 and rec.labels[int(np.argmax(probs))] == "up"


def test_large_files_take_the_streaming_path(tmp_path, onnx_model, monkeypatch):
    import speechlstm.audio as audio
    from speechlstm.runtime import OnnxRecognizer
    from speechlstm.scoring import score_paths
    from speechlstm.transcribe import transcribe_file

    rec = OnnxRecognizer(onnx_model)
    path = tmp_path / "rec.wav"
    _recording(path, 9.0)
    before = transcribe_file(rec, path)
    monkeypatch.setattr(audio, "STREAM_ABOVE_BYTES", 0)
    monkeypatch.setattr(audio, "load_audio", None)  # any whole-file decode would fail
    import speechlstm.scoring as scoring
    import speechlstm.transcribe as transcribe

    monkeypatch.setattr(transcribe, "load_audio", None)
    monkeypatch.setattr(scoring, "load_audio", None)
    after = transcribe_file(rec, path)
    assert (after.label, after.duration_s) == (before.label, before.duration_s)
    assert after.score == pytest.approx(before.score, abs=1e-5)
    [scored] = list(score_paths(rec, [str(path)]))
    assert scored.error is None and scored.duration_s == pytest.approx(9.0, abs=1e-3)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF" + b"\0" * 5000)
    [scored] = list(score_paths(rec, [str(bad)]))
    assert scored.error


@pytest.mark.slow
def test_fuzz_harness_holds_on_corrupt_files_and_models():
    """bench/fuzz.py at a small size (the README quotes its full run), run as a
    user runs it."""
    script = Path(__file__).resolve().parent.parent / "bench" / "fuzz.py"
    out = subprocess.run(
        [sys.executable, str(script), "--files", "120", "--models", "40", "--seed", "11"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    result = json.loads(out.stdout[out.stdout.index("{") :])
    # score + transcribe of a third + 2 per model + the names stage (10 entries,
    # 1 merge) + every writer over its hostile outputs (32) + the families (48;
    # 6 without the training side: no train runs, no embedding-model files)
    families = 48 if importlib.util.find_spec("torch") is not None else 6
    assert result["tried"] == 120 + 40 + 2 * 40 + 11 + 32 + families
    stages = ("audio", "models", "names", "outputs", "families")
    broken = [b for stage in stages for b in result[stage]["broken"]]
    assert result["held"] == result["tried"], broken


def test_a_folder_that_cannot_be_listed_gets_an_error_row(tmp_path, onnx_model, monkeypatch):
    from speechlstm.runtime import OnnxRecognizer
    from speechlstm.scoring import iter_inputs, score_paths

    (tmp_path / "ok").mkdir()
    (tmp_path / "locked").mkdir()
    sf.write(tmp_path / "ok" / "a.wav", tone_word("yes"), 16000)
    real_scandir, real_listdir = os.scandir, os.listdir

    def refuse(fn):
        def wrapped(p="."):
            if Path(p).name == "locked":  # as chmod 000 would for a user who is not root
                raise PermissionError(13, "Permission denied", str(p))
            return fn(p)

        return wrapped

    monkeypatch.setattr(os, "scandir", refuse(real_scandir))
    monkeypatch.setattr(os, "listdir", refuse(real_listdir))
    paths = list(iter_inputs([str(tmp_path)]))
    assert str(tmp_path / "locked") in paths and str(tmp_path / "ok" / "a.wav") in paths
    rows = {r.path: r for r in score_paths(OnnxRecognizer(onnx_model), paths)}
    assert "cannot be listed" in rows[str(tmp_path / "locked")].error
    assert rows[str(tmp_path / "ok" / "a.wav")].error is None


TRAIN_COMMANDS = [
    (["train", "missing.csv", "--out", "r1"], 2, "no training clips"),
    (["train", "labels.csv", "--out", "r2"], 2, "not printable"),
    (["train", "manifest.csv", "--out", "r3", "--set", "train.epochs=-5"], 2, "epochs"),
    (["train", "manifest.csv", "--out", "r4", "--set", "train.lr=inf"], 2, "lr"),
    (["train", "manifest.csv", "--out", "r5", "--set", "train.nope=1"], 2, "nope"),
    (["train", "manifest.csv", "--out", "r6", "--threads", "100000"], 2, "threads"),
    (["export", "bad.pt", "-o", "bad.onnx"], 2, "does not fit"),
    (["export", "garbage.onnx", "-o", "x.onnx"], 2, "garbage.onnx"),
    (["export", "good.pt", "-o", "good.pt"], 2, "input checkpoint"),
    (["train", "manifest.csv", "--out", "good", "--resume", "--epochs", "3"], 2, "settings"),
]


@pytest.mark.train
@pytest.mark.parametrize("args,code,says", TRAIN_COMMANDS, ids=lambda a: str(a)[:50])
@pytest.mark.slow
def test_training_commands_on_hostile_input(hostile_dir, trained_run, args, code, says):
    import shutil

    import torch

    (hostile_dir / "missing.csv").write_text("path,label\nnope1.wav,yes\nnope2.wav,no\n")
    if not (hostile_dir / "good").exists():
        shutil.copytree(trained_run, hostile_dir / "good")
        shutil.copy(trained_run / "best.pt", hostile_dir / "good.pt")
        state = torch.load(trained_run / "best.pt", weights_only=True)
        name = next(k for k in state["model"] if k.endswith("head.weight"))
        state["model"][name] = torch.zeros(3, 3)
        torch.save(state, hostile_dir / "bad.pt")
    before = (hostile_dir / "good.pt").read_bytes()
    result = _cli(*args, cwd=hostile_dir)
    err = result.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err and "unexpected" not in err, err
    assert result.returncode == code, err
    assert says in err, err
    assert (hostile_dir / "good.pt").read_bytes() == before
