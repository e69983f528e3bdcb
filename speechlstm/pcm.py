"""Audio from a pipe: headerless PCM or a WAV stream, read as it arrives.

    stdin / a named FIFO / a file  --os.read, what is there-->  bytes
      -> whole frames (a frame split across reads waits for its other half)
      -> float32 mono in [-1, 1] (integers scaled as files are, channels averaged)
      -> resampled to the model's rate (soxr's streaming resampler)
      -> blocks of any size, as soon as they arrive

This is how Mycroft Precise's engine and wyoming-satellite's wake command get
their audio (`arecord -t raw | ...`). Nothing is read ahead: a block is handed
on as soon as `os.read` returns it, so a detection is printed while the audio
still flows, and a stalled pipe blocks in the kernel (no CPU spent waiting).
Memory is one read's worth, however long the stream.

A stream that cannot be used raises `InvalidAudio` naming the input, at the
point where it goes wrong: the blocks before it have been handed on, so what
was heard before is kept. numpy and soxr only.
"""

from __future__ import annotations

import os
import stat
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .audio import MAX_CHANNELS, MAX_RATE_HZ, MIN_RATE_HZ, SAMPLE_RATE, InvalidAudio

STDIN = "-"
READ_BYTES = 8192  # at most per read: 0.26 s of 16 kHz s16le mono, less when less is there
# Raw sample formats: numpy dtype and the bytes a sample takes.
RAW_FORMATS = {"s16le": "<i2", "f32le": "<f4", "s32le": "<i4", "u8": "u1"}
MAX_HEADER_BYTES = 1 << 16  # chunks before `data` in a WAV stream (LIST, fact...): far less
# WAV format tags: PCM integers, IEEE float, and the extensible header (its
# sub-format GUID begins with one of the two).
WAVE_PCM, WAVE_FLOAT, WAVE_EXTENSIBLE = 1, 3, 0xFFFE
UNKNOWN_DATA_BYTES = {0, 0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFFE}  # streaming writers' "don't know"


@dataclass(frozen=True)
class PcmFormat:
    """How the bytes of a stream are laid out."""

    rate_hz: int = SAMPLE_RATE
    dtype: str = "<i2"  # numpy dtype of one sample
    channels: int = 1

    @property
    def frame_bytes(self) -> int:
        return np.dtype(self.dtype).itemsize * self.channels

    def check(self, name: str) -> PcmFormat:
        if not MIN_RATE_HZ <= self.rate_hz <= MAX_RATE_HZ:
            raise InvalidAudio(
                name, f"sample rate {self.rate_hz} Hz (accepted: {MIN_RATE_HZ}-{MAX_RATE_HZ} Hz)"
            )
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise InvalidAudio(name, f"{self.channels} channels (accepted: 1-{MAX_CHANNELS})")
        return self


def raw_format(fmt: str, rate_hz: int = SAMPLE_RATE, channels: int = 1) -> PcmFormat:
    """The PcmFormat of `--format NAME --rate R --channels C`; ValueError naming the choices."""
    if fmt not in RAW_FORMATS:
        raise ValueError(f"format {fmt!r}: choose one of {', '.join(RAW_FORMATS)}")
    return PcmFormat(rate_hz, RAW_FORMATS[fmt], channels)


def is_stream_input(name: str | os.PathLike) -> bool:
    """True for `-` (standard input) and for a named FIFO: inputs read as they arrive."""
    if str(name) == STDIN:
        return True
    try:
        return stat.S_ISFIFO(os.stat(name).st_mode)
    except (OSError, ValueError):
        return False


def open_input(name: str | os.PathLike) -> int:
    """A file descriptor to read `name` from: standard input for `-` (refused when
    it is a terminal: nobody types PCM), else the FIFO or file itself. Opening a
    FIFO waits for its writer, as `cat` does."""
    if str(name) == STDIN:
        if sys.stdin is None:
            raise InvalidAudio("standard input", "it is closed")
        fd = sys.stdin.fileno()
        if os.isatty(fd):
            raise InvalidAudio(
                "standard input",
                "it is a terminal, not audio; pipe audio in, e.g. "
                "`arecord -q -r 16000 -c 1 -f S16_LE -t raw | speechlstm live --input - --raw`",
            )
        return fd
    try:
        st = os.stat(name)
    except FileNotFoundError:
        raise InvalidAudio(name, "no such file") from None
    except OSError as exc:
        raise InvalidAudio(name, f"cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        from .files import kind

        # /dev/zero would never end, a folder holds no audio.
        raise InvalidAudio(name, f"is {kind(st.st_mode)}, not audio")
    try:
        return os.open(name, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidAudio(name, f"cannot read: {exc.strerror or exc}") from None


def display_name(name: str | os.PathLike) -> str:
    return "standard input" if str(name) == STDIN else str(name)


class ByteSource:
    """Reads from a descriptor as data arrives; `read_exact` for headers."""

    def __init__(self, fd: int, name: str):
        self.fd = fd
        self.name = name
        self.total = 0  # bytes read

    def read(self, n: int = READ_BYTES) -> bytes:
        """What is there, up to `n` bytes (b"" at the end); blocks while the pipe is empty."""
        while True:
            try:
                data = os.read(self.fd, n)
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
            except OSError as exc:
                raise InvalidAudio(self.name, f"cannot read: {exc.strerror or exc}") from None
            self.total += len(data)
            return data

    def read_exact(self, n: int, what: str) -> bytes:
        out = bytearray()
        while len(out) < n:
            data = self.read(n - len(out))
            if not data:
                raise InvalidAudio(
                    self.name,
                    f"the stream ended inside the WAV header ({what}; {self.total} bytes read)",
                )
            out += data
        return bytes(out)


def read_wav_header(src: ByteSource) -> tuple[PcmFormat, int | None]:
    """The format of a WAV stream and its declared data bytes (None: unknown, as
    streaming writers such as `arecord -t wav` and ffmpeg leave it), read up to
    the first byte of audio."""
    riff = src.read_exact(12, "RIFF header")
    if riff[:4] not in (b"RIFF", b"RF64") or riff[8:12] != b"WAVE":
        raise InvalidAudio(
            src.name,
            "not a WAV stream (no RIFF/WAVE header); for headerless PCM add --raw "
            "(with --format and --rate if it is not s16le at 16000 Hz)",
        )
    fmt: PcmFormat | None = None
    seen = 12
    while True:
        head = src.read_exact(8, "chunk header")
        chunk_id, size = head[:4], struct.unpack("<I", head[4:])[0]
        seen += 8
        if chunk_id == b"data":
            if fmt is None:
                raise InvalidAudio(src.name, "WAV stream: audio data before its format chunk")
            declared = None if size in UNKNOWN_DATA_BYTES else size
            return fmt, declared
        if seen + size > MAX_HEADER_BYTES:
            raise InvalidAudio(
                src.name,
                f"WAV stream: a {chunk_id.decode('latin-1')!r} chunk of {size} bytes before the "
                f"audio (more than {MAX_HEADER_BYTES} bytes of header)",
            )
        body = src.read_exact(size + (size & 1), f"{chunk_id.decode('latin-1')!r} chunk")
        seen += len(body)
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(src.name, body)


def _parse_fmt(name: str, body: bytes) -> PcmFormat:
    if len(body) < 16:
        raise InvalidAudio(name, f"WAV stream: a format chunk of {len(body)} bytes (at least 16)")
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == WAVE_EXTENSIBLE and len(body) >= 26:
        tag = struct.unpack("<H", body[24:26])[0]
    dtypes = {
        (WAVE_PCM, 8): "u1",
        (WAVE_PCM, 16): "<i2",
        (WAVE_PCM, 32): "<i4",
        (WAVE_FLOAT, 32): "<f4",
        (WAVE_FLOAT, 64): "<f8",
    }
    if (tag, bits) not in dtypes:
        raise InvalidAudio(
            name,
            f"WAV stream: format tag {tag} with {bits}-bit samples is not supported "
            "(stream 8/16/32-bit integer or 32/64-bit float PCM)",
        )
    return PcmFormat(rate, dtypes[(tag, bits)], channels).check(name)


def to_float(frames: np.ndarray, channels: int) -> np.ndarray:
    """Interleaved samples -> float32 mono in [-1, 1], scaled as files are (audio.py)."""
    from .audio import _int_to_float

    data = frames.reshape(-1, channels)
    if data.dtype.kind in "iu":
        data = _int_to_float(data)
    data = data.astype(np.float32, copy=False)
    return data[:, 0] if channels == 1 else data.mean(axis=1, dtype=np.float32)


def pcm_blocks(
    name: str | os.PathLike,
    raw: PcmFormat | None = None,
    rate_hz: int = SAMPLE_RATE,
    read_bytes: int = READ_BYTES,
) -> Iterator[np.ndarray]:
    """Float32 mono blocks at `rate_hz` from `name` (`-`: standard input) as they
    arrive: headerless PCM laid out as `raw`, or, with `raw` None, a WAV stream.
    InvalidAudio (naming the input) for a stream that cannot be used, raised where
    it goes wrong: a frame cut off at the end, non-finite floats, a WAV header that
    promised more data than came, a terminal on stdin."""
    label = display_name(name)
    fd = open_input(name)
    try:
        yield from _blocks(ByteSource(fd, label), raw, rate_hz, read_bytes)
    finally:
        if str(name) != STDIN:
            os.close(fd)


def _blocks(
    src: ByteSource, raw: PcmFormat | None, rate_hz: int, read_bytes: int
) -> Iterator[np.ndarray]:
    declared = None
    if raw is None:
        fmt, declared = read_wav_header(src)
    else:
        fmt = raw.check(src.name)
    frame = fmt.frame_bytes
    resampler = None
    if fmt.rate_hz != rate_hz:
        import soxr

        resampler = soxr.ResampleStream(fmt.rate_hz, rate_hz, 1, dtype="float32", quality="HQ")
    floats = np.dtype(fmt.dtype).kind == "f"
    pending = b""  # a frame split between reads
    remaining = declared  # WAV data bytes still to come, when declared
    frames_done = 0
    read_size = max(frame, read_bytes - read_bytes % frame)
    while True:
        want = read_size if remaining is None else min(read_size, remaining)
        data = src.read(want) if want else b""
        if remaining is not None:
            remaining -= len(data)
        last = not data
        buf = pending + data
        usable = len(buf) - len(buf) % frame
        pending = buf[usable:]
        if usable:
            samples = to_float(np.frombuffer(buf[:usable], dtype=fmt.dtype), fmt.channels)
            if floats and not np.isfinite(samples).all():
                bad = int(np.argmax(~np.isfinite(samples)))
                at = (frames_done + bad) / fmt.rate_hz
                raise InvalidAudio(src.name, f"NaN or infinite samples at {at:.2f} s of the stream")
            frames_done += len(samples)
            if floats:
                samples = np.clip(samples, -1.0, 1.0)
            if resampler is not None:
                samples = resampler.resample_chunk(samples)
            if samples.size:
                yield samples
        if last:
            break
    if resampler is not None:
        tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        if tail.size:
            yield tail
    if pending:
        raise InvalidAudio(
            src.name,
            f"the stream ended in the middle of a frame ({len(pending)} of its {frame} bytes; "
            f"{frames_done} whole frames were used)",
        )
    if remaining:
        raise InvalidAudio(
            src.name,
            f"the WAV header promised {declared} bytes of audio; the stream ended after "
            f"{declared - remaining}",
        )
    if frames_done == 0:
        raise InvalidAudio(src.name, "no audio: the stream ended before any sample")
