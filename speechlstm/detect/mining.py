"""Hard negatives mined from long audio, as Mycroft Precise's incremental training
does with false activations (`speechlstm data mine`).

Run a model's streaming detector over audio that holds no command (noise,
other speech, music) and keep every window it fires on, as a 1 s clip in
`OUT/_unknown_/`, named by its source, its offset and its content (a hash of
the 16-bit window: two recordings of one name never overwrite each other's
windows, and a window already there is known as such). `speechlstm train
... --add OUT` then learns that these are not commands; mine again with the
new model, and repeat until the mined set stops growing. A threshold under
the model's own mines the near misses too.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import InvalidAudio, is_large, load_audio, stream_audio
from ..files import FolderLock, write_atomic
from ..labels import UNKNOWN
from .stream import MAX_BATCH, StreamingDetector, detect_file


@dataclass(frozen=True)
class Mined:
    source: str
    start_s: float  # where the window starts in the source
    label: str  # what the model took it for
    score: float
    path: Path  # the clip written
    new: bool = True  # False: the same window was already in the folder


def _stem(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(path).stem)[:60] or "audio"


def mine(
    recognizer, paths: list[str], out_dir: str | Path, threshold: float | None = None
) -> tuple[list[Mined], dict[str, str]]:
    """Every window the detector fires on in `paths`, written to out_dir/_unknown_/
    (a clip already there is kept: mining again adds only new windows). Returns
    the mined clips and the files that could not be read, with the reason."""
    cfg = recognizer.description.detector
    if threshold is not None:
        cfg = cfg.with_overrides(threshold=threshold)
    detector = StreamingDetector(recognizer, cfg)
    folder = Path(out_dir) / UNKNOWN
    found, errors = [], {}
    window = recognizer.clip_samples
    rate = recognizer.sample_rate
    with FolderLock(out_dir, "mining folder"):
        folder.mkdir(parents=True, exist_ok=True)

        def keep(path, start: int, piece: np.ndarray, label: str, score: float) -> None:
            clip = window_wav(piece, window, rate)
            digest = hashlib.sha256(clip).hexdigest()[:10]
            name = f"mined_{_stem(str(path))}_{round(1000 * start / rate):09d}ms_{digest}.wav"
            new = write_wav_once(folder / name, clip)
            found.append(Mined(str(path), start / rate, label, score, folder / name, new))

        for path in paths:
            try:
                if is_large(path):
                    # Streamed block by block: memory does not grow with the
                    # recording (a 20-minute 48 kHz stereo file decoded whole
                    # is a gigabyte). Windows are written as they are found.
                    _mine_stream(detector, path, rate, window, keep)
                    continue
                wave = load_audio(path, rate)
            except InvalidAudio as exc:
                errors[str(path)] = exc.reason
                continue
            saved = saved_window(path, wave, rate, window)
            if saved is not None:  # a detection `live --save-detections` kept: its own window
                start, label, score = saved
                keep(path, start, wave[start : start + window], label, score)
                continue
            for det in detect_file(detector, wave):
                end = min(len(wave), round(det.end_s * rate))
                start = max(0, end - window)
                keep(path, start, wave[start:end], det.label, det.score)
    return found, errors


class _Recent:
    """The last samples of a stream, addressed by stream position: what the
    detector may still report a window from."""

    def __init__(self, keep: int):
        self.keep = keep
        self.data = np.zeros(0, np.float32)
        self.start = 0  # stream position of data[0]

    @property
    def end(self) -> int:
        return self.start + len(self.data)

    def push(self, block: np.ndarray) -> None:
        self.data = np.concatenate([self.data, block])

    def trim(self) -> None:
        drop = max(0, len(self.data) - self.keep)
        if drop:
            self.data = self.data[drop:].copy()
            self.start += drop

    def piece(self, start: int, end: int) -> np.ndarray:
        lo = max(start, self.start)
        return self.data[lo - self.start : max(lo, end) - self.start]


def _mine_stream(detector: StreamingDetector, path, rate: int, window: int, keep) -> None:
    """`detect_file`'s windows of a long recording, read block by block
    (audio.stream_audio); `keep(path, start, piece, label, score)` gets each.
    InvalidAudio mid-way keeps the windows found before it."""
    # A detection is reported at most a batch of hops and the peak wait after
    # its window ends (the verifier's history is sized alike): kept twice over.
    lag = (MAX_BATCH + 2) * detector.hop + round(rate * detector.cfg.peak_wait_ms / 1000)
    recent = _Recent(window + 2 * lag)
    detector.reset()

    def take(detections) -> None:
        for det in detections:
            end = min(recent.end, round(det.end_s * rate))
            start = max(0, end - window)
            keep(path, start, recent.piece(start, end), det.label, det.score)

    for block in stream_audio(path, rate):
        recent.push(block)
        take(detector.push(block))
        recent.trim()
    take(detector.flush())


def saved_window(path, wave: np.ndarray, rate: int, window: int):
    """(start sample, label, score) of the window a saved detection fired on, read
    from its JSON sidecar (saved.py), or None for audio without one: a false
    alarm the user judged needs no threshold to be found again."""
    import json

    from ..files import FileRefused, read_text_capped

    sidecar = Path(path).with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        meta = json.loads(read_text_capped(sidecar, 1 << 16, "sidecar"))
        offset = float(meta["start_s"]) - float(meta["audio_start_s"])
        label, score = str(meta["label"]), float(meta["score"])
    except (FileRefused, OSError, ValueError, KeyError, TypeError):
        return None  # not one of ours: mined like any recording
    start = round(offset * rate)
    if not 0 <= start <= max(0, len(wave) - window // 2):
        return None
    return start, label, score


def expand_inputs(items) -> tuple[list[str], list[str]]:
    """The audio files `items` name: files as given, folders walked for audio by
    suffix; and the other files found in those folders (a user's notes, say),
    leaving out the JSON sidecars of `live --save-detections`."""
    import os

    from ..data.datasets import AUDIO_SUFFIXES

    paths, foreign = [], []
    for item in items:
        item = Path(item)
        if not item.is_dir():
            paths.append(str(item))
            continue
        for root, dirs, files in os.walk(item):
            dirs.sort()
            for name in sorted(files):
                suffix = Path(name).suffix.lower()
                if suffix in AUDIO_SUFFIXES:
                    paths.append(os.path.join(root, name))
                elif suffix != ".json":
                    foreign.append(os.path.join(root, name))
    return paths, foreign


def window_wav(piece: np.ndarray, window: int, rate: int) -> bytes:
    """`piece` zero-padded to `window` samples, as the bytes of a 16-bit WAV."""
    import soundfile as sf

    clip = np.zeros(window, np.float32)
    clip[: len(piece)] = piece
    buf = io.BytesIO()
    sf.write(buf, clip, rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def write_wav_once(target: Path, data: bytes) -> bool:
    """Write `data` at `target` unless a file is there already; True if written."""
    if target.exists():
        return False
    write_atomic(target, data, fsync=False)
    return True


def write_window(target: Path, piece: np.ndarray, window: int, rate: int) -> bool:
    """`piece` zero-padded to `window` samples, as a 16-bit WAV at `target`; a clip
    already there is kept. True if written."""
    return write_wav_once(target, window_wav(piece, window, rate))
