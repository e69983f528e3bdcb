"""The streaming detector on synthetic streams, and `speechlstm live` from a file and a
virtual microphone."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from speechlstm.testing.synth_audio import (
    SR,
    STREAM_THRESHOLD,
    STREAM_TRUTH,
    tone_stream,
    tone_word,
)

THRESHOLD = STREAM_THRESHOLD
TRUTH = STREAM_TRUTH
_stream = tone_stream


def _detector(onnx_model, **changes):
    from speechlstm.detect.stream import DetectorConfig, StreamingDetector
    from speechlstm.runtime import OnnxRecognizer

    cfg = DetectorConfig(threshold=THRESHOLD, **changes)
    return StreamingDetector(OnnxRecognizer(onnx_model), cfg)


def test_commands_are_found_once_each_at_the_right_time(onnx_model):
    from speechlstm.detect.stream import detect_file

    found = detect_file(_detector(onnx_model), _stream())
    assert [d.label for d in found] == [w for _, w in TRUTH]
    for det, (start_s, _) in zip(found, TRUTH):
        word_end_s = start_s + 0.2 + 0.6
        assert det.start_s <= start_s + 0.8 and det.end_s >= start_s + 0.2  # window holds the word
        assert det.end_s - word_end_s < 1.0  # reported within a second of the word's end
        assert THRESHOLD <= det.score <= 1.0


def test_no_detection_on_noise_alone(onnx_model):
    from speechlstm.detect.stream import detect_file

    rng = np.random.default_rng(5)
    for kind in ("white", "pink"):
        from speechlstm.data.noise import make_noise

        noise = make_noise(kind, SR * 20, rng) * 0.05
        assert detect_file(_detector(onnx_model), noise) == []


@pytest.mark.parametrize("chunk", [160, 777, 4000, 48000])
def test_chunk_size_does_not_change_results(onnx_model, chunk):
    from speechlstm.detect.stream import detect_file

    stream = _stream()
    reference = detect_file(_detector(onnx_model), stream, chunk_samples=16000)
    got = detect_file(_detector(onnx_model), stream, chunk_samples=chunk)
    assert [(d.label, d.start_s, d.end_s) for d in got] == [
        (d.label, d.start_s, d.end_s) for d in reference
    ]
    np.testing.assert_allclose([d.score for d in got], [d.score for d in reference], atol=1e-5)


def test_gate_skips_the_model_on_silence_and_memory_stays_bounded(onnx_model):
    det = _detector(onnx_model)
    for _ in range(600):  # ten minutes of digital silence, in 1 s chunks
        assert det.push(np.zeros(SR, np.float32)) == []
    assert det.stats.hops == 6000 and det.stats.inferences == 0
    assert det.buffer.shape == (SR,) and len(det.history) <= det.n_smooth
    det.reset()
    assert det.samples == 0 and det.stats.hops == 0 and not det.history


def test_without_the_gate_the_model_runs_on_every_window(onnx_model):
    det = _detector(onnx_model, gate=False)
    assert det.push(np.zeros(SR * 3, np.float32)) == []
    assert det.stats.hops == 30 and det.stats.inferences == 30


def test_per_label_threshold_and_refractory(onnx_model):
    from speechlstm.detect.stream import detect_file

    strict = _detector(onnx_model, thresholds=(("yes", 1.01),))
    labels = [d.label for d in detect_file(strict, _stream())]
    assert "yes" not in labels and "up" in labels
    # Two "yes" 0.5 s apart inside one refractory period: one detection.
    rng = np.random.default_rng(1)
    stream = (rng.standard_normal(SR * 6) * 0.003).astype(np.float32)
    for start in (1.0, 1.5):
        stream[int(start * SR) : int(start * SR) + SR] += tone_word("yes", 1.0, offset_s=0.2)
    once = detect_file(_detector(onnx_model, refractory_ms=2000), stream)
    assert [d.label for d in once] == ["yes"]


def test_live_from_a_file_prints_the_commands(onnx_model, tmp_path):
    from speechlstm.cli.main import app

    path = tmp_path / "stream.wav"
    sf.write(path, _stream(), SR)
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "live",
            "-m",
            str(onnx_model),
            "--input",
            str(path),
            "--fast",
            "--threshold",
            str(THRESHOLD),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    import json

    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["label"] for r in rows] == [w for _, w in TRUTH]
    assert "heard 4 command(s)" in result.stderr
    missing = runner.invoke(
        app, ["live", "-m", str(onnx_model), "--input", str(tmp_path / "x.wav")]
    )
    # An input that cannot be read exits 1, as transcribe does for such a file.
    assert missing.exit_code == 1 and "no such file" in missing.output


@pytest.mark.mic
@pytest.mark.slow
def test_live_hears_commands_played_into_a_virtual_microphone(onnx_model, quiet_mic, tmp_path):
    path = tmp_path / "spoken.wav"
    stream = _stream(seconds=13.0)
    sf.write(path, stream, SR, subtype="PCM_16")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "speechlstm",
            "live",
            "-m",
            str(onnx_model),
            "--threshold",
            str(THRESHOLD),
            "--json",
        ],
        env=quiet_mic.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Play once the microphone is open (a cold start, a fresh virtualenv
    # compiling its bytecode, can take longer than any fixed sleep).
    head = []
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stderr.readline()
        head.append(line)
        if not line or "listening on" in line:
            break
    player = quiet_mic.play(path, times=1)
    player.wait(timeout=40)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    err = "".join(head) + err
    assert proc.returncode == 0, err
    import json

    labels = [json.loads(line)["label"] for line in out.splitlines()]
    assert labels == [w for _, w in TRUTH], err
    assert "heard 4 command(s)" in err and "Traceback" not in err


@pytest.mark.mic
@pytest.mark.slow
def test_live_ends_with_a_message_when_the_device_disappears(onnx_model, tmp_path):
    from virtual_mic import VirtualMic, missing

    reason = missing()
    if reason:
        pytest.skip(reason)
    import threading

    mic = VirtualMic(tmp_path).start()
    lines: list[str] = []
    listening = threading.Event()

    def read_stderr(stream):
        for line in stream:
            lines.append(line)
            if line.startswith("listening on"):
                listening.set()

    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "speechlstm", "live", "-m", str(onnx_model)],
            env=mic.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        reader = threading.Thread(target=read_stderr, args=(proc.stderr,), daemon=True)
        reader.start()
        # Pull the device only once live holds it: a loaded machine takes
        # longer than any fixed wait to start Python and onnxruntime.
        assert listening.wait(60), "".join(lines)
        time.sleep(1.0)
    finally:
        mic.stop()  # the sound server, and with it the device, goes away
    proc.wait(timeout=30)
    reader.join(timeout=5)
    err = "".join(lines)
    assert proc.returncode == 1, err
    assert "audio input stopped" in err and "Traceback" not in err


def test_a_microphone_that_will_not_close_does_not_hold_the_program(monkeypatch):
    """PortAudio's abort() has hung after Ctrl-C on a loaded machine: closing waits
    a bounded time and says so, so `live` can print its summary and leave."""
    import threading

    from speechlstm import mic as mic_lib

    release = threading.Event()

    class StuckStream:
        def abort(self):
            release.wait(30)

        def close(self):
            pass

    monkeypatch.setattr(mic_lib, "CLOSE_TIMEOUT_S", 0.5)
    m = object.__new__(mic_lib.Microphone)
    m._stream = StuckStream()
    started = time.perf_counter()
    m.__exit__(None, None, None)
    assert time.perf_counter() - started < 2.0
    assert m.close_hung and m._stream is None
    release.set()


def test_a_model_that_claims_the_embedding_front_end_without_its_stages_is_refused(
    onnx_model, tmp_path
):
    import json

    import onnx

    from speechlstm.detect.stream import DetectorConfig, StreamingDetector
    from speechlstm.modelmeta import KEY_FRONTEND
    from speechlstm.runtime import ModelError, OnnxRecognizer

    model = onnx.load(str(onnx_model))
    entry = model.metadata_props.add()
    entry.key, entry.value = KEY_FRONTEND, json.dumps({"name": "embedding", "credit": ""})
    path = tmp_path / "liar.onnx"
    onnx.save(model, str(path))
    rec = OnnxRecognizer(path)  # a clip is one call of the graph: that still works
    assert rec.description.frontend == "embedding"
    assert rec.predict_clip(_stream()[:SR]).shape == (len(rec.labels),)
    with pytest.raises(ModelError, match="liar.onnx.*cannot be cut"):
        StreamingDetector(rec, DetectorConfig())
    from speechlstm.cli.main import app

    wav = tmp_path / "long.wav"
    sf.write(wav, _stream(), SR)
    result = CliRunner().invoke(app, ["transcribe", "-m", str(path), str(wav)])
    assert result.exit_code == 2, result.output
    assert "cannot be cut" in result.output
