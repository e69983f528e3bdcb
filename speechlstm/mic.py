"""Microphone capture with sounddevice (imported lazily: it is the `mic` extra).

A callback on PortAudio's thread only copies blocks into a bounded queue;
resampling to 16 kHz and everything else happens on the reader's side.
Overflows (PortAudio's, or a full queue) are counted and reported, never
silently dropped.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

import numpy as np

from .audio import SAMPLE_RATE

CLOSE_TIMEOUT_S = 3.0

INSTALL_HINT = "pip install 'speechlstm[mic]' and apt-get install libportaudio2"


class MicError(RuntimeError):
    """No usable input device; the message names the available ones."""


def _sd():
    try:
        import sounddevice
    except (ImportError, OSError) as exc:  # OSError: PortAudio library missing
        raise MicError(f"microphone support is not installed ({exc}); {INSTALL_HINT}") from None
    return sounddevice


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    channels: int
    default_rate_hz: float
    is_default: bool


def list_devices() -> list[InputDevice]:
    sd = _sd()
    try:
        devices = sd.query_devices()
        default_in = sd.default.device[0]
    except sd.PortAudioError as exc:
        raise MicError(f"cannot list audio devices: {exc}") from None
    return [
        InputDevice(i, d["name"], d["max_input_channels"], d["default_samplerate"], i == default_in)
        for i, d in enumerate(devices)
        if d["max_input_channels"] > 0
    ]


def resolve_device(device: str | int | None) -> InputDevice:
    """The input device named (substring) or numbered by `device`; the default when None."""
    inputs = list_devices()
    names = ", ".join(f"[{d.index}] {d.name}" for d in inputs) or "none"
    if not inputs:
        raise MicError("no audio input device found")
    if device is None or device == "":
        chosen = [d for d in inputs if d.is_default] or inputs[:1]
        return chosen[0]
    if isinstance(device, int) or str(device).isdigit():
        match = [d for d in inputs if d.index == int(device)]
    else:
        match = [d for d in inputs if str(device).lower() in d.name.lower()]
    if not match:
        raise MicError(f"no input device {device!r}; available: {names}")
    return match[0]


class Microphone:
    """Context manager yielding float32 mono blocks at `target_rate_hz` via `read()`
    (the device records at its own rate; blocks are resampled on the way)."""

    def __init__(
        self,
        device: str | int | None = None,
        block_ms: float = 50.0,
        queue_blocks: int = 200,
        target_rate_hz: int = SAMPLE_RATE,
    ):
        self.device = resolve_device(device)
        self.target_rate_hz = target_rate_hz
        self.rate_hz = int(self.device.default_rate_hz) or target_rate_hz
        self.block_frames = max(1, int(self.rate_hz * block_ms / 1000))
        self.blocks: queue.Queue = queue.Queue(maxsize=queue_blocks)
        self.overflows = 0  # blocks PortAudio or the queue could not keep
        self.failed: str | None = None
        # True when closing the stream did not return within CLOSE_TIMEOUT_S:
        # the caller should leave without PortAudio's own exit-time clean-up.
        self.close_hung = False
        self._stream = None
        self._resampler = None

    def _callback(self, data, frames, time_info, status) -> None:
        if status.input_overflow:
            self.overflows += 1
        try:
            self.blocks.put_nowait(data[:, 0].copy())
        except queue.Full:
            self.overflows += 1

    def _finished(self) -> None:
        if self._stream is not None and not self._stream.active and self.failed is None:
            self.failed = "the input stream stopped (device removed?)"

    def __enter__(self) -> Microphone:
        sd = _sd()
        try:
            self._stream = sd.InputStream(
                device=self.device.index,
                channels=1,
                samplerate=self.rate_hz,
                dtype="float32",
                blocksize=self.block_frames,
                callback=self._callback,
                finished_callback=self._finished,
            )
            self._stream.start()
        except sd.PortAudioError as exc:
            raise MicError(
                f"cannot open input device [{self.device.index}] {self.device.name}: {exc}"
            ) from None
        if self.rate_hz != self.target_rate_hz:
            import soxr

            self._resampler = soxr.ResampleStream(
                self.rate_hz, self.target_rate_hz, 1, dtype="float32"
            )
        return self

    def __exit__(self, *exc) -> None:
        if self._stream is None:
            return
        stream, self._stream = self._stream, None

        def close() -> None:
            # abort, not stop: an input stream has nothing to drain, and stop()
            # waits on the audio server, which can hang after Ctrl-C (seen with
            # PulseAudio through ALSA).
            try:
                stream.abort()
                stream.close()
            except Exception:  # closing is best effort: the summary must still print
                pass

        # Even abort() has hung on a loaded machine (PulseAudio through ALSA):
        # wait a bounded time, then let the program end without it.
        closer = threading.Thread(target=close, daemon=True)
        closer.start()
        closer.join(CLOSE_TIMEOUT_S)
        self.close_hung = closer.is_alive()

    def read(self, timeout_s: float = 1.0) -> np.ndarray | None:
        """The next block at `target_rate_hz`, or None if none arrived within `timeout_s`."""
        try:
            block = self.blocks.get(timeout=timeout_s)
        except queue.Empty:
            if self.failed:
                raise MicError(self.failed) from None
            return None
        if self._resampler is not None:
            block = self._resampler.resample_chunk(block)
        return block

    def record(self, seconds: float) -> np.ndarray:
        """Exactly `seconds` of audio at `target_rate_hz` from now on."""
        while not self.blocks.empty():  # drop what was heard before the prompt
            self.blocks.get_nowait()
        need = int(seconds * self.target_rate_hz)
        parts, have, waited = [], 0, 0
        while have < need:
            block = self.read()
            if block is None:
                waited += 1
                if waited >= 3:
                    raise MicError(f"no audio from [{self.device.index}] {self.device.name}")
                continue
            parts.append(block)
            have += len(block)
        return np.concatenate(parts)[:need]
