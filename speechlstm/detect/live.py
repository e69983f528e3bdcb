"""Live detection loop: a block source (microphone or file) -> StreamingDetector.

The audio thread only queues blocks (mic.py); this loop runs the detector on
the caller's thread, reports detections through a callback and keeps a level
meter for the status line. Blocks are at the detector's rate (`rate_hz`, the
model's): `file_blocks` decodes at that rate, and the microphone must deliver it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..audio import InvalidAudio, level_dbfs, stream_audio
from .stream import Detection, StreamingDetector

BLOCK_MS = 50.0


@dataclass
class LiveSummary:
    detections: list[Detection]
    seconds: float  # audio time processed
    wall_s: float
    cpu_s: float
    error: str | None = None  # the input broke off (InvalidAudio): what was heard is kept
    interrupted: bool = False  # Ctrl-C

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.detections:
            out[d.label] = out.get(d.label, 0) + 1
        return out


def file_blocks(
    path, rate_hz: int, realtime: bool = True, block_ms: float = BLOCK_MS
) -> Iterator[np.ndarray]:
    """A file decoded at `rate_hz` (the model's) as microphone-sized blocks,
    paced in real time unless `realtime` is False."""
    block = max(1, int(rate_hz * block_ms / 1000))
    started = time.perf_counter()
    sent = 0
    # Streamed from the file: memory does not grow with the recording.
    for decoded in stream_audio(path, rate_hz):
        for start in range(0, len(decoded), block):
            if realtime:
                delay = started + sent / rate_hz - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            piece = decoded[start : start + block]
            sent += len(piece)
            yield piece


STALL_S = 3.0  # no audio for this long: the device is gone


def mic_blocks(mic) -> Iterator[np.ndarray]:
    """Blocks from an open Microphone until it fails (MicError propagates). A
    device that stops delivering audio without an error (unplugged, sound
    server gone) is reported after STALL_S seconds."""
    from ..mic import MicError

    silent_s = 0.0
    while True:
        block = mic.read(timeout_s=0.5)
        if block is None:
            silent_s += 0.5
            if silent_s >= STALL_S:
                raise MicError(
                    f"no audio from [{mic.device.index}] {mic.device.name} for "
                    f"{STALL_S:.0f} s (device removed?)"
                )
            continue
        silent_s = 0.0
        yield block


def run(
    detector: StreamingDetector,
    blocks: Iterator[np.ndarray],
    on_detection: Callable[[Detection, float], None],
    on_status: Callable[[float, float], None] | None = None,
    flush: bool = True,
) -> LiveSummary:
    """Feed blocks until they end or Ctrl-C; returns a summary (Ctrl-C is not re-raised).

    `detector` is a StreamingDetector or an api.Detector (reset, push, flush,
    rate_hz). `on_detection(detection, wall_clock_time)`; `on_status(level_dbfs,
    audio_seconds)`. Input that breaks off (InvalidAudio: a pipe cut inside a
    frame, NaN samples, an unreadable file) ends the run like the end of the
    input, a command still in progress reported, with the reason in
    `LiveSummary.error`.
    """
    detector.reset()
    rate_hz = detector.rate_hz
    found: list[Detection] = []
    started, cpu0 = time.perf_counter(), time.process_time()
    samples = 0
    error, interrupted = None, False
    try:
        try:
            for block in blocks:
                samples += len(block)
                for det in detector.push(block):
                    found.append(det)
                    on_detection(det, time.time())
                if on_status is not None:
                    on_status(level_dbfs(block), samples / rate_hz)
        except InvalidAudio as exc:
            error = str(exc)
        if flush:
            for det in detector.flush():
                found.append(det)
                on_detection(det, time.time())
    except KeyboardInterrupt:
        interrupted = True
    return LiveSummary(
        found,
        samples / rate_hz,
        time.perf_counter() - started,
        time.process_time() - cpu0,
        error,
        interrupted,
    )
