"""`speechlstm serve` under load, on 127.0.0.1: CPU share of wake streams at real
time, streams per core, the time from audio-stop to transcript, and memory
after 1,000 connections opened and closed.

The server is `python -m speechlstm serve` with the shipped default; its CPU is
read from /proc after a settling second, over real-time streams of the sample
words every 2 s over noise at about -40 dBFS (the energy gate never closes:
every hop runs the model, the worst case). Streams per core = streams / their
CPU share at the largest count measured. Baseline in the same run: one stream.

    python bench/serve_load.py [--seconds 20] [--streams 1,4,8]
Writes bench/out/serve_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from common import machine  # noqa: E402
from pipe_live import CHUNK, SR, audio_source, cpu_s, rss_mb  # noqa: E402
from wyoming.asr import Transcribe, Transcript  # noqa: E402
from wyoming.audio import AudioChunk, AudioStart, AudioStop  # noqa: E402
from wyoming.client import AsyncTcpClient  # noqa: E402
from wyoming.info import Describe  # noqa: E402
from wyoming.wake import Detect  # noqa: E402

OUT_DIR = ROOT / "bench" / "out"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_ready(port: int) -> None:
    for _ in range(200):
        try:
            async with AsyncTcpClient("127.0.0.1", port) as c:
                await c.write_event(Describe().event())
                await c.read_event()
                return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError("the server never listened")


async def drain(client) -> int:
    n = 0
    while await client.read_event() is not None:
        n += 1
    return n


async def stream(port: int, seconds: float, seed: int) -> int:
    source = audio_source(seed)
    async with AsyncTcpClient("127.0.0.1", port) as c:
        reader = asyncio.create_task(drain(c))
        await c.write_event(Detect().event())
        await c.write_event(AudioStart(SR, 2, 1).event())
        started = time.perf_counter()
        sent = 0
        while sent < seconds * SR:
            delay = started + sent / SR - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await c.write_event(AudioChunk(SR, 2, 1, next(source)).event())
            sent += CHUNK
        await c.write_event(AudioStop().event())
        await asyncio.sleep(0.5)
        reader.cancel()
    return sent


async def cpu_share(pid: int, port: int, n: int, seconds: float) -> dict:
    tasks = [asyncio.create_task(stream(port, seconds, seed)) for seed in range(n)]
    await asyncio.sleep(1.0)
    cpu0, wall0 = cpu_s(pid), time.perf_counter()
    await asyncio.sleep(seconds - 2.0)
    cpu1, wall1 = cpu_s(pid), time.perf_counter()
    await asyncio.gather(*tasks)
    share = (cpu1 - cpu0) / (wall1 - wall0)
    return {"streams": n, "cpu_share_of_one_core": round(share, 4)}


async def transcript_latency(port: int, n: int = 50) -> dict:
    import soundfile as sf

    clips = [sf.read(p, dtype="int16")[0] for p in sorted((ROOT / "data/samples").glob("*.wav"))]
    times = []
    for i in range(n):
        async with AsyncTcpClient("127.0.0.1", port) as c:
            await c.write_event(Transcribe().event())
            await c.write_event(AudioStart(SR, 2, 1).event())
            pcm = clips[i % len(clips)].tobytes()
            for k in range(0, len(pcm), 2 * CHUNK):
                await c.write_event(AudioChunk(SR, 2, 1, pcm[k : k + 2 * CHUNK]).event())
            started = time.perf_counter()
            await c.write_event(AudioStop().event())
            event = await c.read_event()
            times.append(time.perf_counter() - started)
            assert Transcript.is_type(event.type)
    return {
        "requests": n,
        "median_ms": round(1000 * float(np.median(times)), 2),
        "p90_ms": round(1000 * float(np.percentile(times, 90)), 2),
    }


async def churn(pid: int, port: int, n: int = 2000) -> dict:
    async def one(i: int) -> None:
        async with AsyncTcpClient("127.0.0.1", port) as c:
            await c.write_event(Detect().event())
            await c.write_event(AudioStart(SR, 2, 1).event())
            noise = (np.random.default_rng(i).standard_normal(SR // 2) * 300).astype("<i2")
            await c.write_event(AudioChunk(SR, 2, 1, noise.tobytes()).event())
            await c.write_event(AudioStop().event())
            await c.read_event()

    for i in range(20):
        await one(i)
    readings = {"20": round(rss_mb(pid), 1)}
    for start in range(0, n, 50):  # 50 at a time
        await asyncio.gather(*(one(i) for i in range(start, min(n, start + 50))))
        if (start + 50) % 250 == 0:
            readings[str(start + 50)] = round(rss_mb(pid), 1)
    # Growth that stops once 50 at a time have been served is the allocator
    # keeping its peak; growth that goes on would be a leak.
    return {
        "connections": n,
        "vmrss_mb_after": readings,
        "growth_after_250_mb": round(readings[str(n)] - readings["250"], 1),
    }


async def main_async(args) -> dict:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "speechlstm", "serve", "--uri", f"tcp://127.0.0.1:{port}"],
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_ready(port)
        rows = [await cpu_share(proc.pid, port, n, args.seconds) for n in args.streams]
        base = rows[0]["cpu_share_of_one_core"]
        for row in rows:
            row["per_stream"] = round(row["cpu_share_of_one_core"] / row["streams"], 4)
            row["vs_one_stream"] = round(row["cpu_share_of_one_core"] / base, 2)
        last = rows[-1]
        return {
            "benchmark": "serve_load",
            "machine": machine(),
            "wake_streams": rows,
            "streams_per_core": round(last["streams"] / last["cpu_share_of_one_core"], 1),
            "audio_stop_to_transcript": await transcript_latency(port),
            "memory": await churn(proc.pid, port),
            "note": "real-time 16 kHz s16le streams in 50 ms chunks, noise at -40 dBFS "
            "(gate always open), sample words every 2 s; shipped sc12 model",
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--streams", default="1,4,8")
    args = parser.parse_args()
    args.streams = [int(x) for x in args.streams.split(",")]
    result = asyncio.run(main_async(args))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "serve_load.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
