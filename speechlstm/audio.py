"""Audio input: every file becomes 16 kHz mono float32 in [-1, 1].

Decoding uses soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, Opus, MP3 where
libsndfile has it; plain 16-bit WAV goes through the standard `wave` module,
which is faster per file) and resampling uses soxr, so the inference side needs no
torch and no numba. Anything that cannot be turned into usable audio raises
`InvalidAudio` naming the file and the reason.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000  # Hz: the rate of every waveform inside the program
CLIP_SAMPLES = SAMPLE_RATE  # 1 s: the Speech Commands clip length

# libsndfile reports a data chunk that claims more bytes than the file holds as
# "data : 32000 (should be 15978)". Streaming writers that do not know the
# length in advance put 0 or 0xFFFFFFFF there; those are not truncation.
_DATA_CHUNK_RE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_UNKNOWN_LENGTHS = {0, 0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFFF - 1}
# What a header may claim before we believe it: rates telephone to studio, a
# channel count a microphone array could have, at least 10 ms of sound.
# Outside these a header lies (a 1 Hz "rate" turns 32 KB into hours of audio
# and gigabytes of memory once resampled) or holds nothing to recognise.
MIN_RATE_HZ, MAX_RATE_HZ = 4000, 384000
MAX_CHANNELS = 64
MIN_DURATION_S = 0.01


class InvalidAudio(ValueError):
    """A file or array that cannot be used as audio; the message says which and why."""

    def __init__(self, path: str | os.PathLike | None, reason: str):
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode `path` to a float32 mono waveform at `sample_rate`. Shape (samples,).

    Integer PCM is scaled to [-1, 1], multi-channel audio is averaged, any other
    rate is resampled. Raises InvalidAudio for missing, unreadable, truncated,
    empty or non-finite audio.
    """

    p = _check_file(path)
    pcm16 = _read_pcm16_wav(p)
    if pcm16 is not None:
        return to_mono_16k(*pcm16, sample_rate, path=path)
    with sound_file(path, p) as f:
        native_rate = f.samplerate
        data = f.read(dtype="float32", always_2d=True)  # (samples, channels)
        _check_complete(path, f, len(data))
    return to_mono_16k(data, native_rate, sample_rate, path=path)


# Containers whose header gives the exact frame count (compressed streams such
# as MP3 only estimate it).
EXACT_LENGTH_FORMATS = frozenset({"WAV", "WAVEX", "AIFF", "FLAC", "CAF", "W64", "RF64", "AU"})


def _check_complete(path, f, frames_read: int) -> None:
    """InvalidAudio when fewer frames were read than the header declared at open:
    the file was cut (truncated while being read, or a copy still in progress),
    which must not pass as a shorter recording."""
    if f.format in EXACT_LENGTH_FORMATS and 0 < frames_read < f.frames:
        raise InvalidAudio(
            path,
            f"truncated while being read: {frames_read} of the {f.frames} frames its "
            "header declared",
        )


@contextmanager
def sound_file(path: str | os.PathLike, p: Path):
    """libsndfile's view of `p` once its header is believed; any failure while
    it is open, reading included, becomes InvalidAudio naming `path`."""
    import soundfile as sf

    try:
        # Bytes, not str: libsndfile cannot take a name that is not UTF-8.
        with sf.SoundFile(os.fsencode(p)) as f:
            _check_not_truncated(path, f.extra_info)
            check_header(path, f.samplerate, f.channels)
            yield f
    except InvalidAudio:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise InvalidAudio(path, f"cannot decode: {_short_reason(exc)}") from None
    except OSError as exc:
        raise InvalidAudio(path, f"cannot read: {exc.strerror or exc}") from None


def _check_file(path: str | os.PathLike) -> Path:
    """The path, if it names a non-empty regular file; else InvalidAudio saying why."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InvalidAudio(path, "no such file") from None
    except OSError as exc:
        raise InvalidAudio(path, f"cannot read: {exc.strerror or exc}") from None
    except ValueError:  # os.stat refuses a name with a NUL byte in it
        raise InvalidAudio(path, "the name holds a NUL byte; no file can have it") from None
    if stat.S_ISDIR(st.st_mode):
        try:
            os.listdir(p)
        except OSError as exc:
            raise InvalidAudio(path, f"folder cannot be listed: {exc.strerror or exc}") from None
        raise InvalidAudio(path, "is a directory, not an audio file")
    if not stat.S_ISREG(st.st_mode):
        # A FIFO would hang the decoder; /dev/zero or /dev/urandom would never end.
        from .files import kind

        raise InvalidAudio(path, f"is {kind(st.st_mode)}, not an audio file")
    if st.st_size == 0:
        raise InvalidAudio(path, "empty file (0 bytes)")
    return p


STREAM_BLOCK_S = 10.0  # decoded per read when streaming: ~4 MB at 48 kHz stereo
# Files larger than this are streamed (`stream_audio`) rather than decoded whole
# (`load_audio`): at most ~2 minutes of MP3, whose whole decode at 48 kHz
# stereo is under 50 MB. Speech Commands clips (32 KB) stay on the fast path.
STREAM_ABOVE_BYTES = 2 * 2**20


def is_large(path: str | os.PathLike) -> bool:
    """True for a file to stream rather than decode whole (see STREAM_ABOVE_BYTES)."""
    try:
        return os.stat(path).st_size > STREAM_ABOVE_BYTES
    except (OSError, ValueError):  # ValueError: a NUL byte in the name
        return False  # load_audio words the error


def stream_audio(
    path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, block_s: float = STREAM_BLOCK_S
) -> Iterator[np.ndarray]:
    """`path` decoded block by block: float32 mono at `sample_rate`, in [-1, 1].

    What `load_audio` returns, concatenated, in memory bounded by one block
    however long the recording (the resampler keeps its state between
    blocks). The same checks, raised as InvalidAudio when met: before the
    first block for the file and header, at the block for bad samples, at
    the end for a recording too short to use.
    """
    import soxr

    p = _check_file(path)
    total = 0
    with sound_file(path, p) as f:
        rate = f.samplerate
        resampler = (
            soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="HQ")
            if rate != sample_rate
            else None
        )
        frames = max(1, int(block_s * rate))
        while True:
            data = f.read(frames, dtype="float32", always_2d=True)
            last = len(data) < frames
            total += len(data)
            mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
            if not np.isfinite(mono).all():
                n_bad = int((~np.isfinite(mono)).sum())
                raise InvalidAudio(
                    path, f"{n_bad} samples near {total / rate:.1f} s are NaN or Inf"
                )
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=last)
            if mono.size:
                yield np.clip(mono, -1.0, 1.0)
            if last:
                _check_complete(path, f, total)
                break
    if total == 0:
        raise InvalidAudio(path, "no audio frames (empty or truncated)")
    if total < MIN_DURATION_S * rate:
        raise InvalidAudio(path, f"only {total} samples ({1000 * total / rate:.1f} ms): too short")


def load_loudest(
    path: str | os.PathLike, n_samples: int, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """`crop_loudest(load_audio(path), n_samples)`, in memory bounded by a block:
    a large file (`is_large`) is streamed and its loudest window kept as it goes
    (the training bank reads an hour of negatives so)."""
    if not is_large(path):
        return crop_loudest(load_audio(path, sample_rate), n_samples)
    return crop_loudest_blocks(stream_audio(path, sample_rate), n_samples)


def load_head(
    path: str | os.PathLike, n_samples: int, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """`load_audio(path)[:n_samples]`: a large file is streamed and read no
    further than the first `n_samples` (its later blocks are never decoded)."""
    if not is_large(path):
        return load_audio(path, sample_rate)[:n_samples]
    blocks, have = [], 0
    stream = stream_audio(path, sample_rate)
    try:
        for block in stream:
            blocks.append(block[: n_samples - have])
            have += len(blocks[-1])
            if have >= n_samples:
                break
    finally:
        stream.close()
    if have == 0:
        raise InvalidAudio(path, "no audio frames (empty or truncated)")
    return np.concatenate(blocks)


def crop_loudest_blocks(blocks: Iterator[np.ndarray], n_samples: int) -> np.ndarray:
    """`crop_loudest` of the concatenated `blocks`, holding one block and a
    window's worth of the one before: the first loudest window (as argmax
    picks it), padded at the end if the whole is shorter than `n_samples`."""
    tail = np.zeros(0, np.float32)  # the last n_samples - 1 samples seen
    best, best_energy = None, -1.0
    for block in blocks:
        buf = np.concatenate([tail, np.asarray(block, np.float32)])
        if len(buf) >= n_samples:
            # Windows starting in `tail` were not whole in the last round: none is seen twice.
            energy = np.concatenate([[0.0], np.cumsum(buf.astype(np.float64) ** 2)])
            window_energy = energy[n_samples:] - energy[:-n_samples]
            start = int(np.argmax(window_energy))
            if window_energy[start] > best_energy:
                best_energy = float(window_energy[start])
                best = buf[start : start + n_samples].copy()
        tail = buf[max(0, len(buf) - (n_samples - 1)) :] if n_samples > 1 else buf[:0]
    if best is None:  # shorter than a window: all of it, padded
        return np.pad(tail, (0, n_samples - len(tail)))
    return best


def _read_pcm16_wav(path: Path) -> tuple[np.ndarray, int] | None:
    """(samples, channels) int16 and the rate of a complete 16-bit PCM WAV, else None.

    The common case of batch scoring, read with the standard library's `wave`
    in a quarter of libsndfile's per-file time. Anything else (float, 24-bit,
    extensible headers, a data chunk shorter than declared) returns None and
    goes through libsndfile, which also words the errors.
    """
    import wave

    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2 or w.getcomptype() != "NONE":
                return None
            channels, rate, n_frames = w.getnchannels(), w.getframerate(), w.getnframes()
            check_header(path, rate, channels)
            raw = w.readframes(n_frames)
    except (wave.Error, EOFError, OSError, ValueError, RuntimeError, struct.error):
        # The standard library raises a bare RuntimeError (chunk.skip) and
        # struct.error on some corrupt headers; libsndfile then words the error.
        return None
    if n_frames == 0 or len(raw) != n_frames * channels * 2:
        return None  # empty or truncated: libsndfile reports it
    return np.frombuffer(raw, dtype="<i2").reshape(-1, channels), rate


def to_mono_16k(
    data: np.ndarray,
    native_rate: int,
    sample_rate: int = SAMPLE_RATE,
    path: str | os.PathLike | None = None,
) -> np.ndarray:
    """Validate, downmix (samples, channels) or (samples,) float audio, and resample."""
    data = np.asarray(data)
    from_int = data.dtype.kind in "iu"  # scaled into [-1, 1], always finite
    if from_int:
        data = _int_to_float(data)
    data = data.astype(np.float32, copy=False)
    if data.ndim == 2:
        data = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    elif data.ndim != 1:
        raise InvalidAudio(
            path, f"expected 1-D or (samples, channels) audio, got shape {data.shape}"
        )
    if data.size == 0:
        raise InvalidAudio(path, "no audio frames (empty or truncated)")
    if not from_int and not np.isfinite(data).all():
        n_bad = int((~np.isfinite(data)).sum())
        raise InvalidAudio(path, f"{n_bad} of {data.size} samples are NaN or Inf")
    if native_rate <= 0:
        raise InvalidAudio(path, f"invalid sample rate {native_rate}")
    if data.size < MIN_DURATION_S * native_rate:
        raise InvalidAudio(
            path, f"only {data.size} samples ({1000 * data.size / native_rate:.1f} ms): too short"
        )
    if native_rate != sample_rate:
        import soxr

        data = soxr.resample(data, native_rate, sample_rate, quality="HQ").astype(np.float32)
    elif from_int:
        return data
    # Float files and resampling may exceed full scale; clipping keeps the [-1, 1] contract.
    return np.clip(data, -1.0, 1.0, out=data)


def fix_length(waveform: np.ndarray, n_samples: int = CLIP_SAMPLES) -> np.ndarray:
    """Zero-pad at the end or crop from the start to exactly `n_samples` (last axis).

    The same rule is used when the training bank is built and when a short clip
    is scored, so both sides see identical inputs.
    """
    length = waveform.shape[-1]
    if length == n_samples:
        return waveform
    if length > n_samples:
        return waveform[..., :n_samples]
    pad = [(0, 0)] * (waveform.ndim - 1) + [(0, n_samples - length)]
    return np.pad(waveform, pad)


def crop_loudest(waveform: np.ndarray, n_samples: int) -> np.ndarray:
    """Fit a clip to `n_samples`: pad short ones at the end, and keep the loudest
    window of long ones (a 1.5 s recording keeps the word, not the lead-in)."""
    if waveform.shape[0] <= n_samples:
        return np.pad(waveform, (0, n_samples - waveform.shape[0]))
    energy = np.concatenate([[0.0], np.cumsum(waveform.astype(np.float64) ** 2)])
    window_energy = energy[n_samples:] - energy[:-n_samples]
    start = int(np.argmax(window_energy))
    return waveform[start : start + n_samples]


def level_dbfs(waveform: np.ndarray) -> float:
    """RMS level in dB relative to full scale (a full-scale sine is about -3 dBFS)."""
    return 10 * np.log10(float(np.mean(waveform.astype(np.float64) ** 2)) + 1e-12)


def float_to_int16(waveform: np.ndarray) -> np.ndarray:
    """[-1, 1] float to int16 PCM (the in-memory bank format: half the memory of float32)."""
    return np.round(np.clip(waveform, -1.0, 1.0) * 32767.0).astype(np.int16)


def int16_to_float(waveform: np.ndarray) -> np.ndarray:
    return waveform.astype(np.float32) / 32767.0


def _int_to_float(data: np.ndarray) -> np.ndarray:
    info = np.iinfo(data.dtype)
    if info.min == 0:  # unsigned (8-bit WAV): centre first
        mid = (info.max + 1) / 2
        return ((data.astype(np.float32) - mid) / mid).astype(np.float32)
    out = data.astype(np.float32)
    out *= np.float32(1.0 / -info.min)  # a power of two: exact, same as dividing
    return out


def check_header(path, rate_hz: int, channels: int) -> None:
    """Refuse a header's sample rate or channel count that no real recording has."""
    if not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
        raise InvalidAudio(
            path,
            f"implausible sample rate {rate_hz} Hz in the header "
            f"(accepted: {MIN_RATE_HZ}-{MAX_RATE_HZ} Hz)",
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise InvalidAudio(
            path, f"implausible channel count {channels} in the header (accepted: 1-{MAX_CHANNELS})"
        )


def _check_not_truncated(path, extra_info: str) -> None:
    match = _DATA_CHUNK_RE.search(extra_info or "")
    if not match:
        return
    declared, actual = int(match.group(1)), int(match.group(2))
    if declared not in _UNKNOWN_LENGTHS and declared > actual:
        raise InvalidAudio(
            path, f"truncated: header declares {declared} bytes of audio, file holds {actual}"
        )


def _short_reason(exc: Exception) -> str:
    text = str(exc)
    # libsndfile prefixes "Error opening '<path>': " which repeats the path.
    if ": " in text and text.startswith("Error opening"):
        text = text.split(": ", 1)[1]
    return text.strip() or type(exc).__name__
