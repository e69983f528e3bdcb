"""The in-memory sample bank: every clip decoded once to int16, cached on disk.

Training reads each file once. The decoded clips (fixed length, int16: half the
memory of float32) are stored in one .npy per dataset split, keyed by a hash of
the files' contents and the audio settings, so a second run, or a run after a
crash, starts in seconds and an edited file is never served stale.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import InvalidAudio, float_to_int16, load_loudest
from ..files import FileRefused, open_regular, temp_beside

BANK_FORMAT = 1  # bump when the decoded representation changes


@dataclass
class Bank:
    audio: np.ndarray  # (N, clip_samples) int16
    ok: np.ndarray  # (N,) bool: False where the file could not be decoded (row is zeros)
    errors: dict[str, str]  # path -> reason for the files that failed


def default_cache_dir() -> Path:
    base = os.environ.get("SPEECHLSTM_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(base) / "speechlstm" if base else Path.home() / ".cache" / "speechlstm"


def load_bank(
    paths: list[Path],
    clip_samples: int,
    sample_rate: int,
    cache_dir: Path | None,
    workers: int = 4,
    progress=None,
) -> Bank:
    """Decode `paths` into a Bank, reusing the on-disk cache when the contents match.

    `progress`, if given, is called with the number of files just finished.
    """
    key = _content_key(paths, clip_samples, sample_rate)
    cache_path = None if cache_dir is None else Path(cache_dir) / f"bank-{key}.npz"
    if cache_path is not None and cache_path.is_file():
        try:
            with np.load(cache_path, allow_pickle=False) as data:
                errors = dict(zip(data["error_paths"].tolist(), data["error_reasons"].tolist()))
                bank = Bank(data["audio"], data["ok"], errors)
            if progress:
                progress(len(paths))
            return bank
        except (OSError, KeyError, ValueError):
            pass  # unreadable cache: rebuild it below

    audio = np.zeros((len(paths), clip_samples), dtype=np.int16)
    ok = np.zeros(len(paths), dtype=bool)
    errors: dict[str, str] = {}

    def decode(i: int) -> tuple[int, str | None]:
        try:
            # A long recording is streamed, its loudest window kept as it goes:
            # four threads decoding hour-long negatives stay far from a gigabyte.
            wav = load_loudest(paths[i], clip_samples, sample_rate)
        except InvalidAudio as exc:
            return i, exc.reason
        audio[i] = float_to_int16(wav)
        return i, None

    # soundfile and soxr release the GIL while decoding, so threads scale here.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, reason in pool.map(decode, range(len(paths)), chunksize=16):
            if reason is None:
                ok[i] = True
            else:
                errors[str(paths[i])] = reason
            if progress:
                progress(1)

    if cache_path is not None:
        _save_atomic(cache_path, audio, ok, errors)
    return Bank(audio, ok, errors)


def _content_key(paths: list[Path], clip_samples: int, sample_rate: int) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"v{BANK_FORMAT}:{clip_samples}:{sample_rate}:{len(paths)}".encode())
    for path in paths:
        digest.update(os.fsencode(path))
        try:
            # Regular files only, opened without blocking: a manifest that lists a
            # FIFO or /dev/zero must not hang (or never end) the key; decoding
            # then refuses that entry by name.
            with open_regular(path, "audio file") as fh:
                digest.update(hashlib.file_digest(fh, "blake2b").digest())
        except (OSError, FileRefused) as exc:  # unreadable files are part of the key as such
            digest.update(f"unreadable:{getattr(exc, 'errno', None) or exc}".encode())
    return digest.hexdigest()


def _save_atomic(cache_path: Path, audio: np.ndarray, ok: np.ndarray, errors: dict) -> None:
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_beside(cache_path)
        with os.fdopen(fd, "wb") as fh:
            np.savez(
                fh,
                audio=audio,
                ok=ok,
                error_paths=np.asarray(list(errors.keys()), dtype=str),
                error_reasons=np.asarray(list(errors.values()), dtype=str),
            )
        os.replace(tmp, cache_path)
    except OSError:
        pass  # a cache we cannot write only costs time on the next run
