"""`speechlstm serve`: the Wyoming service, talked to with wyoming's own client on
127.0.0.1. Every test starts its server inside the test and stops it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from speechlstm.testing.synth_audio import (
    SR,
    STREAM_THRESHOLD,
    STREAM_TRUTH,
    tone_stream,
    tone_word,
)

pytest.importorskip("wyoming", reason="the wyoming package (serve and dev extras) is absent")

from wyoming.asr import Transcribe, Transcript  # noqa: E402
from wyoming.audio import AudioChunk, AudioStart, AudioStop  # noqa: E402
from wyoming.client import AsyncTcpClient  # noqa: E402
from wyoming.info import Describe, Info  # noqa: E402
from wyoming.wake import Detect, Detection, NotDetected  # noqa: E402

WORDS = [w for _, w in STREAM_TRUTH]


def _pcm(wave: np.ndarray) -> np.ndarray:
    return np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16)


@contextlib.asynccontextmanager
async def running(models, **kw):
    """A server on a free port of 127.0.0.1 for the block; stopped after it."""
    from speechlstm.serve import ServiceConfig, serve

    cfg = ServiceConfig(tuple(models), **kw)
    started: asyncio.Future = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(cfg, "tcp://127.0.0.1:0", ready=started.set_result))
    server = await asyncio.wait_for(started, 30)
    port = server._server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture(scope="module")
def models(onnx_model, tmp_path_factory):
    from speechlstm import Recognizer

    other = tmp_path_factory.mktemp("serve") / "kitchen.onnx"
    other.write_bytes(onnx_model.read_bytes())
    return Recognizer(onnx_model), Recognizer(other)


async def _send_audio(client, pcm: np.ndarray, rate=SR, width=2, channels=1, chunk=1024):
    await client.write_event(AudioStart(rate, width, channels).event())
    data = pcm.tobytes()
    step = chunk * width * channels
    for i in range(0, len(data), step):
        await client.write_event(AudioChunk(rate, width, channels, data[i : i + step]).event())
    await client.write_event(AudioStop().event())


async def _detections(client, n=len(WORDS), timeout=30) -> list[tuple[str, int]]:
    """Detection events until not-detected or `n` of them; (name, timestamp)."""
    out = []
    while True:
        event = await asyncio.wait_for(client.read_event(), timeout)
        if event is None or NotDetected.is_type(event.type):
            return out
        assert Detection.is_type(event.type), event
        det = Detection.from_event(event)
        out.append((det.name, det.timestamp))
        if len(out) == n:
            return out


def test_describe_lists_wake_words_and_asr_models(models):
    async def go():
        async with running(models) as port, AsyncTcpClient("127.0.0.1", port) as c:
            await c.write_event(Describe().event())
            return Info.from_event(await c.read_event())

    info = asyncio.run(go())
    [wake], [asr] = info.wake, info.asr
    assert [m.name for m in wake.models] == ["down", "no", "up", "yes"]
    assert all(m.installed and m.languages == ["en"] for m in wake.models)
    assert [m.name for m in asr.models] == ["tiny", "kitchen"]
    assert wake.installed and asr.installed
    assert "speechlstm model tiny" in asr.models[0].attribution.name


def test_transcribe_equals_the_recognizer(models):
    from speechlstm import Recognizer

    rec = models[0]
    rng = np.random.default_rng(0)
    clips = [tone_word(w, float(rng.uniform(0.9, 1.1)), rng=rng) for w in ("yes", "no", "up")]
    clips.append((rng.standard_normal(SR) * 0.003).astype(np.float32))  # _silence_: ""
    want = [rec.predict(_pcm(c)).label for c in clips]

    async def go():
        got = []
        async with running(models) as port:
            for clip in clips:
                async with AsyncTcpClient("127.0.0.1", port) as c:
                    await c.write_event(Transcribe(name="tiny").event())
                    await _send_audio(c, _pcm(clip))
                    got.append(Transcript.from_event(await c.read_event()).text)
        return got

    got = asyncio.run(go())
    assert got == [w if w != "_silence_" else "" for w in want] == ["yes", "no", "up", ""]
    assert isinstance(Recognizer, type)


def test_detect_equals_the_detector_and_names_restrict(models):
    from speechlstm import Detector

    pcm = _pcm(tone_stream())
    want = [
        (d.label, round(d.end_s * 1000))
        for d in Detector(models[0], threshold=STREAM_THRESHOLD).run([pcm])
    ]
    assert [w for w, _ in want] == WORDS

    async def go():
        async with running(models[:1], detector_overrides=(("threshold", STREAM_THRESHOLD),)) as p:
            async with AsyncTcpClient("127.0.0.1", p) as c:
                await c.write_event(Detect().event())
                await _send_audio(c, pcm)
                every = await _detections(c)
            async with AsyncTcpClient("127.0.0.1", p) as c:
                await c.write_event(Detect(names=["up"]).event())
                await _send_audio(c, pcm)
                only = await _detections(c, n=1)
        return every, only

    every, only = asyncio.run(go())
    assert every == want
    assert only == [x for x in want if x[0] == "up"]


def test_a_satellite_stream_without_audio_start(models):
    """wyoming-satellite's --wake-uri: detect, then bare audio-chunks, detect again
    after each detection, one connection for ever."""
    pcm = _pcm(tone_stream()).tobytes()

    async def go():
        overrides = (("threshold", STREAM_THRESHOLD),)
        async with (
            running(models[:1], detector_overrides=overrides) as p,
            AsyncTcpClient("127.0.0.1", p) as c,
        ):
            await c.write_event(Detect(names=WORDS).event())
            found = []

            async def read():
                while len(found) < len(WORDS):
                    found.append(Detection.from_event(await c.read_event()).name)
                    await c.write_event(Detect(names=WORDS).event())  # re-armed

            reader = asyncio.create_task(read())
            for i in range(0, len(pcm), 2048):
                await c.write_event(AudioChunk(SR, 2, 1, pcm[i : i + 2048]).event())
            await asyncio.wait_for(reader, 30)
            return found

    assert asyncio.run(go()) == WORDS


def test_other_formats_are_converted_as_files_are(models):
    import soxr

    wave = tone_stream()
    hi = soxr.resample(wave, SR, 48000).astype(np.float32)
    stereo32 = np.round(np.stack([hi, hi], axis=1) * (2**31 - 1)).astype("<i4")

    async def go():
        overrides = (("threshold", STREAM_THRESHOLD),)
        async with (
            running(models[:1], detector_overrides=overrides) as p,
            AsyncTcpClient("127.0.0.1", p) as c,
        ):
            await c.write_event(Detect().event())
            await _send_audio(c, stereo32, rate=48000, width=4, channels=2, chunk=4800)
            return await _detections(c)

    found = asyncio.run(go())
    assert [name for name, _ in found] == WORDS
    for (_, ms), (start_s, _) in zip(found, STREAM_TRUTH):
        assert start_s * 1000 <= ms <= (start_s + 2.0) * 1000
    # 24-bit at 16 kHz: the same detections as 16-bit.
    i32 = np.round(np.clip(wave, -1, 1) * (2**23 - 1)).astype("<i4")
    pcm24 = np.frombuffer(i32.tobytes(), np.uint8).reshape(-1, 4)[:, :3].copy()

    async def go24():
        overrides = (("threshold", STREAM_THRESHOLD),)
        async with (
            running(models[:1], detector_overrides=overrides) as p,
            AsyncTcpClient("127.0.0.1", p) as c,
        ):
            await c.write_event(Detect().event())
            await _send_audio(c, pcm24, width=3, chunk=1600)
            return await _detections(c)

    assert [name for name, _ in asyncio.run(go24())] == WORDS


def test_silence_gives_not_detected(models):
    async def go():
        async with running(models[:1]) as port, AsyncTcpClient("127.0.0.1", port) as c:
            await c.write_event(Detect().event())
            await _send_audio(c, np.zeros(SR * 2, np.int16))
            return await c.read_event()

    assert NotDetected.is_type(asyncio.run(go()).type)


def test_eight_clients_at_once_without_crosstalk(models):
    """Eight streams at once, each with its own words at its own times."""
    rng = np.random.default_rng(5)
    streams = []
    for k in range(8):
        words = [WORDS[(k + i) % 4] for i in range(2)]
        wave = (rng.standard_normal(SR * 6) * 0.003).astype(np.float32)
        for i, w in enumerate(words):
            at = SR * (1 + 2 * i) + 800 * k
            wave[at : at + SR] += tone_word(w, rng=rng)
        streams.append((words, _pcm(wave)))

    async def one(port, pcm):
        async with AsyncTcpClient("127.0.0.1", port) as c:
            await c.write_event(Detect().event())
            await _send_audio(c, pcm, chunk=512)
            out = []
            while True:
                event = await asyncio.wait_for(c.read_event(), 60)
                if NotDetected.is_type(event.type):
                    return out
                out.append(Detection.from_event(event))
                if len(out) == 2:
                    return out

    async def go():
        overrides = (("threshold", STREAM_THRESHOLD),)
        async with running(models[:1], detector_overrides=overrides) as port:
            return await asyncio.gather(*(one(port, pcm) for _, pcm in streams))

    results = asyncio.run(go())
    for k, ((words, _), got) in enumerate(zip(streams, results)):
        assert [d.name for d in got] == words
        # Each stream's own timing (its words moved by 50 ms a client).
        assert [d.timestamp for d in got][0] >= 1000 + 50 * k


async def _raw_send(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)  # the server closes it
    writer.close()
    return data


def _event(kind: str, data: dict | None = None, payload: bytes = b"") -> bytes:
    body = json.dumps(data or {}).encode()
    head = {"type": kind, "version": "1.0.0", "data_length": len(body)}
    if payload:
        head["payload_length"] = len(payload)
    return json.dumps(head).encode() + b"\n" + body + payload


def test_hostile_clients_close_only_their_connection(models, caplog):
    fmt = {"rate": 16000, "width": 2, "channels": 1}
    hostile = {
        "garbage": b"\x00\xffnot json at all\n",
        "chunk before start": _event("audio-chunk", fmt, b"\0\0" * 100),
        "stop before start": _event("audio-stop"),
        "another format than announced": _event("audio-start", fmt)
        + _event("audio-chunk", {**fmt, "rate": 8000}, b"\0\0" * 100),
        "half a frame": _event("audio-start", fmt) + _event("audio-chunk", fmt, b"\0" * 101),
        "a chunk over 10 s": _event("audio-start", fmt)
        + _event("audio-chunk", fmt, b"\0" * (16000 * 2 * 11)),
        "a huge declared length": b'{"type": "audio-chunk", "payload_length": 99999999999}\n',
        "a bad format": _event("audio-start", {"rate": 1, "width": 5, "channels": 0}),
    }

    async def go():
        async with running(models[:1]) as port:
            for payload in hostile.values():
                await _raw_send(port, payload)
            # A client that vanishes mid-stream.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_event("audio-start", fmt) + _event("audio-chunk", fmt, b"\0" * 64)[:30])
            await writer.drain()
            writer.close()
            # The service goes on: a good client is answered.
            async with AsyncTcpClient("127.0.0.1", port) as c:
                await c.write_event(Transcribe().event())
                await _send_audio(c, _pcm(tone_word("yes")))
                return Transcript.from_event(await c.read_event()).text

    with caplog.at_level("WARNING", logger="speechlstm.serve"):
        assert asyncio.run(go()) == "yes"
    lines = [r.getMessage() for r in caplog.records if r.name == "speechlstm.serve"]
    # One line a hostile client, and one for the client that vanished mid-event.
    assert len([x for x in lines if "closed" in x]) == len(hostile) + 1, lines
    for expected in (
        "not a Wyoming event",
        "before audio-start",
        "announced",
        "whole frames",
        "declared 99999999999 bytes",
        "audio-start with rate 1",
    ):
        assert any(expected in x for x in lines), (expected, lines)


def test_memory_per_connection_is_bounded(models):
    """A minute of audio on one connection: the detector holds one window."""

    async def go():
        async with running(models[:1]) as port, AsyncTcpClient("127.0.0.1", port) as c:
            await c.write_event(Detect().event())
            noise = _pcm(np.random.default_rng(0).standard_normal(SR * 60) * 0.01)
            await _send_audio(c, noise, chunk=4000)
            return await c.read_event()

    assert NotDetected.is_type(asyncio.run(go()).type)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_command_serves_until_sigterm(onnx_model, tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "speechlstm",
            "serve",
            "--uri",
            f"tcp://127.0.0.1:{port}",
            "-m",
            str(onnx_model),
            "--debug",
        ],
        stderr=subprocess.PIPE,
    )
    try:

        async def ask():
            for _ in range(100):
                try:
                    async with AsyncTcpClient("127.0.0.1", port) as c:
                        await c.write_event(Describe().event())
                        return Info.from_event(await c.read_event())
                except OSError:
                    await asyncio.sleep(0.1)
            raise AssertionError("the service never listened")

        info = asyncio.run(ask())
        assert [m.name for m in info.asr[0].models] == ["tiny"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        err = proc.stderr.read().decode()
        assert "listening on" in err and "stopped" in err and "Traceback" not in err
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_unix_socket_and_refusals(onnx_model, tmp_path):
    from speechlstm.serve import check_uri

    sock = tmp_path / "sl.sock"
    assert check_uri(f"unix://{sock}") == f"unix://{sock}"
    precious = tmp_path / "precious.txt"
    precious.write_text("not a socket")
    with pytest.raises(ValueError, match="not a socket"):
        check_uri(f"unix://{precious}")
    assert precious.read_text() == "not a socket"
    for bad in ("http://x:1", "tcp://nohost", "tcp://127.0.0.1:notaport"):
        result = subprocess.run(
            [sys.executable, "-m", "speechlstm", "serve", "--uri", bad, "-m", str(onnx_model)],
            capture_output=True,
            timeout=60,
        )
        assert result.returncode == 2 and b"--uri" in result.stderr

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "speechlstm",
            "serve",
            "--uri",
            f"unix://{sock}",
            "-m",
            str(onnx_model),
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.1)

        async def ask():
            reader, writer = await asyncio.open_unix_connection(str(sock))
            writer.write(_event("describe"))
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 10)
            writer.close()
            return json.loads(line)["type"]

        assert asyncio.run(ask()) == "info"
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert not sock.exists()  # its own socket, removed on the way out
    finally:
        proc.kill()
        proc.wait()
