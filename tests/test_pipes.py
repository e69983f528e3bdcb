"""Audio through pipes, FIFOs and stdin (`live --input -`, `transcribe -`), the
wake-command contract of wyoming-satellite, and hooks (`live --exec`)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechlstm.testing.synth_audio import (
    SR,
    STREAM_THRESHOLD,
    STREAM_TRUTH,
    tone_stream,
    tone_word,
)

WORDS = [w for _, w in STREAM_TRUTH]
LIVE = [sys.executable, "-m", "speechlstm", "live"]


def _pcm() -> np.ndarray:
    return np.round(tone_stream() * 32767).astype(np.int16)


def _run(args, stdin: bytes | None = None, timeout=120):
    return subprocess.run(
        [*LIVE[:3], *map(str, args)], input=stdin, capture_output=True, timeout=timeout
    )


def _rows(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def _wav_bytes(samples: np.ndarray, rate: int = SR, declared: int | None = None) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    data = bytearray(buf.getvalue())
    if declared is not None:  # a header that promises `declared` bytes of audio
        data[40:44] = declared.to_bytes(4, "little")
    return bytes(data)


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pipes") / "stream.wav"
    sf.write(path, _pcm(), SR, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def from_file(onnx_model, stream_file):
    """What `live --input FILE` prints for the stream: what every pipe must equal."""
    result = _run(
        [
            "live",
            "-m",
            onnx_model,
            "--input",
            stream_file,
            "--fast",
            "--json",
            "--threshold",
            STREAM_THRESHOLD,
        ]
    )
    assert result.returncode == 0, result.stderr
    rows = _rows(result)
    assert [r["label"] for r in rows] == WORDS
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


def _live_args(onnx_model, *extra):
    return ["live", "-m", onnx_model, "--threshold", STREAM_THRESHOLD, *extra]


def test_raw_pcm_on_stdin_gives_the_files_detections(onnx_model, from_file):
    result = _run(_live_args(onnx_model, "--input", "-", "--raw", "--json"), _pcm().tobytes())
    assert result.returncode == 0, result.stderr
    assert _strip(_rows(result)) == from_file


def test_a_wav_stream_on_stdin_with_an_unknown_length(onnx_model, from_file):
    # arecord -t wav and ffmpeg write 0xFFFFFFFF where the length would go.
    data = _wav_bytes(_pcm(), declared=0xFFFFFFFF)
    result = _run(_live_args(onnx_model, "--input", "-", "--json"), data)
    assert result.returncode == 0, result.stderr
    assert _strip(_rows(result)) == from_file


def test_f32le_at_another_rate_is_resampled(onnx_model):
    import soxr

    wave44 = soxr.resample(tone_stream(), SR, 44100).astype("<f4")
    args = _live_args(
        onnx_model, "--input", "-", "--raw", "--format", "f32le", "--rate", "44100", "--json"
    )
    result = _run(args, wave44.tobytes())
    assert result.returncode == 0, result.stderr
    rows = _rows(result)
    assert [r["label"] for r in rows] == WORDS
    for row, (start_s, _) in zip(rows, STREAM_TRUTH):
        assert start_s - 0.5 <= row["start_s"] <= start_s + 1.0


def test_a_named_fifo_is_read_as_it_arrives(onnx_model, from_file, tmp_path):
    fifo = tmp_path / "audio.fifo"
    os.mkfifo(fifo)
    pcm = _pcm().tobytes()

    def writer():
        with open(fifo, "wb") as fh:
            for i in range(0, len(pcm), 3200):
                fh.write(pcm[i : i + 3200])

    t = threading.Thread(target=writer)
    t.start()
    result = _run(_live_args(onnx_model, "--input", fifo, "--raw", "--json"))
    t.join()
    assert result.returncode == 0, result.stderr
    assert _strip(_rows(result)) == from_file


def test_detections_are_printed_while_the_pipe_is_still_open(onnx_model):
    """The first command is on stdout before the writer has sent the rest."""
    pcm = _pcm()
    proc = subprocess.Popen(
        [
            *LIVE,
            "-m",
            str(onnx_model),
            "--threshold",
            str(STREAM_THRESHOLD),
            "--input",
            "-",
            "--raw",
            "--names",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        proc.stdin.write(pcm[: int(4.5 * SR)].tobytes())  # the first word and then some
        proc.stdin.flush()
        line = proc.stdout.readline()  # blocks until it is printed: the pipe stays open
        assert line == b"yes\n"
        proc.stdin.write(pcm[int(4.5 * SR) :].tobytes())
        proc.stdin.close()
        rest = proc.stdout.read().decode().split()
        assert rest == WORDS[1:]
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_transcribe_reads_a_clip_and_a_recording_from_stdin(onnx_model, stream_file):
    clip = np.round(tone_word("up") * 32767).astype(np.int16)
    args = ["transcribe", "-m", onnx_model, "--json", "-"]
    one = _run(args, _wav_bytes(clip))
    assert one.returncode == 0, one.stderr
    row = json.loads(one.stdout)
    assert row["path"] == "-" and row["label"] == "up"
    raw = _run([*args, "--raw"], clip.tobytes())
    assert json.loads(raw.stdout)["score"] == row["score"]
    # A recording: the timeline transcribe gives the file.
    from_disk = _run(
        ["transcribe", "-m", onnx_model, "--json", "--threshold", STREAM_THRESHOLD, stream_file]
    )
    piped = _run(
        ["transcribe", "-m", onnx_model, "--json", "--threshold", STREAM_THRESHOLD, "-"],
        stream_file.read_bytes(),
    )
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["detections"] == json.loads(from_disk.stdout)["detections"]


# Bad input: one clear line, the documented exit code, what was heard kept.


def test_a_pipe_cut_inside_a_sample_keeps_what_was_heard(onnx_model):
    data = _pcm().tobytes() + b"\x01"  # half a sample at the end
    result = _run(_live_args(onnx_model, "--input", "-", "--raw", "--names"), data)
    assert result.returncode == 1
    assert result.stdout.decode().split() == WORDS
    err = result.stderr.decode()
    assert "standard input: the stream ended in the middle of a frame" in err
    assert "Traceback" not in err


def test_a_wav_header_that_promises_more_than_comes(onnx_model):
    pcm = _pcm()
    data = _wav_bytes(pcm, declared=pcm.nbytes * 2)
    result = _run(_live_args(onnx_model, "--input", "-", "--names"), data)
    assert result.returncode == 1
    assert result.stdout.decode().split() == WORDS
    assert f"promised {pcm.nbytes * 2} bytes of audio" in result.stderr.decode()


def test_a_wav_stream_at_another_rate_is_resampled(onnx_model):
    import soxr

    pcm8k = np.round(soxr.resample(tone_stream(), SR, 8000) * 32767).astype(np.int16)
    result = _run(_live_args(onnx_model, "--input", "-", "--names"), _wav_bytes(pcm8k, 8000))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == WORDS


def test_nan_in_f32le_is_refused_where_it_comes(onnx_model):
    wave32 = tone_stream().astype("<f4")
    wave32[int(9.5 * SR)] = np.nan
    args = _live_args(onnx_model, "--input", "-", "--raw", "--format", "f32le", "--names")
    result = _run(args, wave32.tobytes())
    assert result.returncode == 1
    assert result.stdout.decode().split() == WORDS[:3]  # the words before it
    assert "NaN or infinite samples at 9.50 s" in result.stderr.decode()


def test_not_a_wav_stream_says_to_add_raw(onnx_model):
    result = _run(_live_args(onnx_model, "--input", "-"), _pcm().tobytes())
    assert result.returncode == 1
    assert "not a WAV stream" in result.stderr.decode() and "--raw" in result.stderr.decode()


def test_a_terminal_on_stdin_is_refused_not_waited_on(onnx_model):
    master, slave = os.openpty()
    try:
        for args in (
            _live_args(onnx_model, "--input", "-", "--raw"),
            ["transcribe", "-m", onnx_model, "-"],
        ):
            result = subprocess.run(
                [*LIVE[:3], *map(str, args)], stdin=slave, capture_output=True, timeout=60
            )
            assert result.returncode == 2
            assert "standard input is a terminal" in result.stderr.decode()
    finally:
        os.close(master)
        os.close(slave)


def test_usage_errors(onnx_model):
    both = _run(_live_args(onnx_model, "--input", "-", "--raw", "--names", "--json"), b"")
    assert both.returncode == 2 and "choose one" in both.stderr.decode()
    fmt = _run(_live_args(onnx_model, "--input", "-", "--raw", "--format", "mp3"), b"")
    assert fmt.returncode == 2 and "s16le" in fmt.stderr.decode()
    no_raw = _run(_live_args(onnx_model, "--input", "-", "--rate", "8000"), b"")
    assert no_raw.returncode == 2 and "add --raw" in no_raw.stderr.decode()


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.slow
def test_a_stalled_pipe_is_waited_on_without_spinning(onnx_model):
    proc = subprocess.Popen(
        [*LIVE, "-m", str(onnx_model), "--input", "-", "--raw", "--names"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        proc.stdin.write(_pcm()[:SR].tobytes())
        proc.stdin.flush()
        time.sleep(3.0)  # start-up and the first second's audio
        before = _cpu_s(proc.pid)
        time.sleep(2.0)  # the writer stalls
        assert _cpu_s(proc.pid) - before < 0.1
        assert proc.poll() is None  # still waiting for audio, not ended
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()


# wyoming-satellite's --wake-command: raw 16 kHz PCM on stdin, one name a line.


def test_wyoming_satellite_wake_command_contract(onnx_model):
    wake = pytest.importorskip("wyoming.wake", reason="the wyoming package (dev extra) is absent")
    from wyoming.audio import AudioChunk

    pcm = _pcm().tobytes()

    async def satellite() -> list[str]:
        # As wyoming-satellite runs --wake-command: program + args, 16 kHz, 16-bit, mono.
        client = wake.WakeProcessAsyncClient(
            16000,
            2,
            1,
            sys.executable,
            [
                "-m",
                "speechlstm",
                "live",
                "-m",
                str(onnx_model),
                "--threshold",
                str(STREAM_THRESHOLD),
                "--input",
                "-",
                "--raw",
                "--names",
            ],
        )
        names: list[str] = []
        async with client:

            async def read():
                while len(names) < len(WORDS):
                    event = await client.read_event()
                    detection = wake.Detection.from_event(event)
                    if detection.name is None:
                        return
                    names.append(detection.name)

            reader = asyncio.create_task(read())
            for i in range(0, len(pcm), 2048):  # 64 ms chunks, as a satellite sends them
                chunk = AudioChunk(rate=16000, width=2, channels=1, audio=pcm[i : i + 2048])
                await client.write_event(chunk.event())
            await asyncio.wait_for(reader, timeout=60)
        return names

    assert asyncio.run(satellite()) == WORDS


# Hooks: live --exec


def _hook_run(onnx_model, command: str, *extra, timeout=120):
    args = _live_args(onnx_model, "--input", "-", "--raw", "--names", "--exec", command, *extra)
    return _run(args, _pcm().tobytes(), timeout=timeout)


def test_exec_runs_once_per_detection_with_the_detection(onnx_model, tmp_path):
    log = tmp_path / "hooks.log"
    command = (
        f'{{ printf "%s %s %s %s %s " "$SPEECHLSTM_LABEL" "$SPEECHLSTM_MODEL" '
        f'"$SPEECHLSTM_SCORE" "$SPEECHLSTM_START_S" "$SPEECHLSTM_END_S"; cat; }} >> {log}'
    )
    result = _hook_run(onnx_model, command, "--exec-max", "1")
    assert result.returncode == 0, result.stderr
    lines = sorted(log.read_text().splitlines(), key=lambda x: float(x.split()[3]))
    assert [line.split()[0] for line in lines] == WORDS
    for line in lines:
        label, model, score, start, end = line.split(" ", 5)[:5]
        payload = json.loads(line.split(" ", 5)[5])
        assert model == "tiny" == payload["model"] and payload["label"] == label
        assert float(score) == pytest.approx(payload["score"], abs=1e-4)
        assert float(start) == payload["start_s"] and float(end) == payload["end_s"]
    assert "hooks: 4 run, 0 failed" in result.stderr.decode()


@pytest.mark.slow
def test_a_hanging_hook_never_stalls_listening(onnx_model):
    started = time.monotonic()
    result = _hook_run(onnx_model, "sleep 30", "--exec-timeout", "1", "--exec-max", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == WORDS  # every detection, none delayed away
    err = result.stderr.decode()
    assert err.count("still running after 1 s") == 4
    assert "4 timed out" in err and "3 waited" in err
    assert time.monotonic() - started < 25  # 4 hooks of at most 1 s each, one at a time


def test_a_failing_and_a_flooding_hook(onnx_model):
    failing = _hook_run(onnx_model, "exit 3")
    assert failing.returncode == 0
    assert failing.stdout.decode().split() == WORDS
    assert failing.stderr.decode().count("(exit code 3)") == 4
    flooding = _hook_run(onnx_model, "head -c 2000000 /dev/zero | tr '\\0' x")
    assert flooding.returncode == 0
    assert flooding.stdout.decode().split() == WORDS  # hooks' output never reaches stdout


@pytest.mark.slow
def test_hook_runner_bounds_what_runs_and_waits():
    from speechlstm.detect.hooks import HookRunner
    from speechlstm.detect.stream import Detection

    lines: list[str] = []
    runner = HookRunner("sleep 0.5", timeout_s=5, max_running=1, max_queued=2, log=lines.append)
    started = time.monotonic()
    accepted = [runner.submit(Detection("yes", 0.9, 0.0, 1.0, "m"))]
    while runner.stats.started == 0:  # the first is running
        time.sleep(0.01)
    accepted += [runner.submit(Detection("yes", 0.9, float(i), i + 1.0, "m")) for i in range(5)]
    assert time.monotonic() - started < 0.4  # submit never waits for a hook
    stats = runner.close()
    assert accepted == [True, True, True, False, False, False]  # one running, two waiting
    assert stats.dropped == 3 and stats.waited == 2
    assert stats.started == 3 and stats.succeeded == 3
    assert sum("dropped" in line for line in lines) == 3


def test_closing_with_cancel_stops_running_hooks_at_once():
    from speechlstm.detect.hooks import HookRunner
    from speechlstm.detect.stream import Detection

    runner = HookRunner("sleep 30", timeout_s=60, max_running=1, log=lambda line: None)
    runner.submit(Detection("yes", 0.9, 0.0, 1.0, "m"))
    runner.submit(Detection("no", 0.9, 1.0, 2.0, "m"))  # waits, then dropped by cancel
    while runner.stats.started == 0:
        time.sleep(0.01)
    time.sleep(0.2)
    started = time.monotonic()
    stats = runner.close(cancel=True)  # Ctrl-C
    assert time.monotonic() - started < 5
    assert stats.started == 1
