"""Batch scoring of many files: streaming input, parallel decoding, batched inference.

    inputs (folders, globs, list files) --lazy--> paths
      -> thread pool decodes ahead, at most `prefetch` files in flight
      -> clips up to the model window are batched; longer ones take the
         sliding-window path of `transcribe` (strongest non-background window)
      -> each file's probabilities; top-k is taken where rows are written
         (CSV or JSON lines, flushed one by one); evaluation reads the
         probabilities themselves

Memory stays bounded whatever the number of files: paths are produced lazily,
and only `prefetch` decoded clips exist at a time. `--resume` reads the paths
already in the output and skips them; a row cut off by a kill is dropped and
its file scored again.
"""

from __future__ import annotations

import csv
import fnmatch
import glob
import hashlib
import io
import json
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import InvalidAudio, is_large, load_audio, stream_audio
from .data.datasets import AUDIO_SUFFIXES
from .outputs import CSV_FIELDS, ENCODING, OutputError, csv_cell, csv_value, open_rows
from .runtime import OnnxRecognizer
from .transcribe import classify_stream, classify_waveform

LIST_SUFFIXES = {".txt", ".lst", ".list"}
DECODE_CHUNK = 32  # files a thread takes at a time (score_paths)


@dataclass
class Scored:
    """One input's outcome: probabilities (classes,) or the reason it failed."""

    path: str
    probs: np.ndarray | None = None
    duration_s: float | None = None
    error: str | None = None
    # False for a batch's rows but its last: the writer flushes once a batch.
    flush: bool = True


def iter_inputs(inputs: Iterable[str]) -> Iterator[str]:
    """Audio paths from folders (recursive, sorted per folder), globs, list files
    (one path per line, relative to the list) and plain paths, lazily."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            # A folder that cannot be listed becomes a row of its own (its
            # error says why), not a silent gap in the results.
            unlisted: list[OSError] = []
            for root, dirs, files in os.walk(path, onerror=unlisted.append):
                while unlisted:
                    yield unlisted.pop().filename
                dirs.sort()
                for name in sorted(files):
                    if Path(name).suffix.lower() in AUDIO_SUFFIXES:
                        yield os.path.join(root, name)
            while unlisted:
                yield unlisted.pop().filename
        elif path.suffix.lower() in LIST_SUFFIXES and path.is_file():
            with path.open(**ENCODING) as fh:
                for line in fh:
                    entry = line.strip()
                    if entry and not entry.startswith("#"):
                        yield entry if os.path.isabs(entry) else str(path.parent / entry)
        elif any(ch in item for ch in "*?[") and not path.exists():
            yield from (recursive_glob(item) if "**" in item else sorted(glob.iglob(item)))
        else:
            yield item  # a file, or a missing one: reported as an error row


def _segments_match(patterns: list[str], parts: list[str]) -> bool:
    """fnmatch per path segment; "**" matches any number of segments (0 included)."""
    if not patterns:
        return not parts
    head, rest = patterns[0], patterns[1:]
    if head == "**":
        return any(_segments_match(rest, parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and _segments_match(rest, parts[1:])


def recursive_glob(pattern: str) -> Iterator[str]:
    """The files matching a pattern with "**", sorted per folder, found by a walk
    that never follows a link to a folder: glob.iglob(recursive=True) follows
    them, and a link loop (a -> ..) makes its walk grow without end."""
    segments = pattern.split(os.sep)
    first_wild = next(i for i, seg in enumerate(segments) if any(c in seg for c in "*?["))
    base = os.sep.join(segments[:first_wild]) or ("/" if pattern.startswith(os.sep) else ".")
    rest = segments[first_wild:]
    for root, dirs, files in os.walk(base, followlinks=False):
        dirs.sort()
        rel = os.path.relpath(root, base)
        parts = [] if rel == "." else rel.split(os.sep)
        for name in sorted(files):
            if _segments_match(rest, [*parts, name]):
                found = os.path.join(root, name)
                # A pattern without a folder part gives names as glob does: "a/x.wav".
                yield os.path.normpath(found) if base == "." else found


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class ScoredPaths:
    """Paths seen (an earlier run's rows, or this run's inputs), kept as 8-byte
    digests of their normal form (os.path.normpath: `./a/x.wav` and `a/x.wav`
    are one file), so that resuming a run of millions of files costs
    megabytes, not gigabytes, and no file is scored twice however it is spelt."""

    def __init__(self, paths: Iterable[str] = ()):
        self._keys = {self._key(p) for p in paths}

    @staticmethod
    def _key(path: str) -> bytes:
        # surrogateescape: a name that is not UTF-8 keeps its own bytes.
        path = os.path.normpath(path)
        return hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()

    def __contains__(self, path: str) -> bool:
        return self._key(path) in self._keys

    def add(self, path: str) -> bool:
        """Record `path`; False if it (in any spelling) was there already."""
        key = self._key(path)
        if key in self._keys:
            return False
        self._keys.add(key)
        return True

    def __len__(self) -> int:
        return len(self._keys)


def done_paths(output: Path, fmt: str) -> ScoredPaths:
    """The paths already scored in `output`; drops a last row cut off by a kill.

    Call it with the output opened by `RowWriter` (locked, known to be ours).
    """
    if not output.is_file():
        return ScoredPaths()
    with output.open("rb+") as fh:
        data = fh.read()
        if data and not data.endswith(b"\n"):  # partial last row: truncate it
            cut = data.rfind(b"\n") + 1
            fh.seek(cut)
            fh.truncate()
            data = data[:cut]
    text = data.decode("utf-8", "surrogateescape")
    try:
        if fmt == "jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            return ScoredPaths(row["path"] for row in rows)
        rows = csv.DictReader(io.StringIO(text, newline=""))
        return ScoredPaths(csv_value(row["path"]) for row in rows)
    except (ValueError, KeyError, TypeError) as exc:
        raise OutputError(
            f"{output}: cannot resume: it does not read as {fmt} results ({exc}); "
            "was it written with another --format?"
        ) from None


class RowWriter:
    """CSV or JSON-lines rows with the top `k` labels, flushed as written so a
    kill loses at most one row."""

    def __init__(
        self,
        output: Path | None,
        fmt: str,
        append: bool,
        labels: tuple[str, ...],
        k: int = 3,
        stream=None,
    ):
        self.fmt = fmt
        self.labels = labels
        self.k = k
        self._owned = output is not None
        self.name = "standard output" if output is None else str(output)
        exists = False
        if output is None:
            self.fh = stream
        else:
            self.fh, exists = open_rows(output, append, CSV_FIELDS, ("path", "label", "top"))
        self.csv = csv.writer(self.fh) if fmt == "csv" else None
        if self.csv is not None and not exists:
            try:
                self.csv.writerow(CSV_FIELDS)
                self.fh.flush()
            except BrokenPipeError:
                raise
            except (OSError, ValueError) as exc:  # a full disk, /dev/full, a closed stdout
                raise OutputError(
                    f"{self.name}: cannot write ({getattr(exc, 'strerror', None) or exc})"
                ) from None

    def write(self, result: Scored) -> None:
        """One row, flushed. OutputError names the output when it cannot take it (a
        full disk, a file-size limit, a closed stdout); a reader that closed the
        pipe early raises BrokenPipeError, which the command ends on quietly."""
        try:
            self._write(result)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"{self.name}: cannot write ({exc.strerror or exc})") from None

    def _write(self, result: Scored) -> None:
        top = []
        if result.probs is not None:
            # Plain Python: numpy's per-call overhead on 12 numbers cost more
            # than the rest of the row. Stable, as batch_top_k: ties keep label order.
            values = result.probs.tolist()
            order = sorted(range(len(values)), key=values.__getitem__, reverse=True)
            top = [[self.labels[i], round(values[i], 6)] for i in order[: max(1, self.k)]]
        label, score = (top[0][0], top[0][1]) if top else (None, None)
        if self.csv is not None:
            self.csv.writerow(
                [
                    csv_cell(result.path),
                    csv_cell(label or ""),
                    "" if score is None else f"{score:.6f}",
                    csv_cell(";".join(f"{lab}:{s:.6f}" for lab, s in top)),
                    "" if result.duration_s is None else f"{result.duration_s:.3f}",
                    csv_cell(result.error or ""),
                ]
            )
        else:
            row = {
                "path": result.path,
                "label": label,
                "score": score,
                "top": top,
                "duration_s": None if result.duration_s is None else round(result.duration_s, 3),
                "error": result.error,
            }
            self.fh.write(json.dumps(row) + "\n")
        if result.flush:
            self.fh.flush()

    def close(self) -> None:
        if self._owned:
            self.fh.close()


def _score_chunk(recognizer: OnnxRecognizer, paths: list[str]) -> list[Scored]:
    """Each file's probabilities, or its error: clips up to the window one model
    call each (runtime.predict_each), a longer one by its strongest window, a
    large file streamed block by block."""
    rate, window = recognizer.sample_rate, recognizer.clip_samples
    out: list[Scored] = []
    clips: list[tuple[Scored, np.ndarray]] = []
    for path in paths:
        try:
            if is_large(path):  # decoded block by block: memory bounded by a block
                probs, n = classify_stream(recognizer, stream_audio(path, rate))
                out.append(Scored(path, probs, n / rate, flush=False))
                continue
            wave = load_audio(path, rate)
        except InvalidAudio as exc:
            out.append(Scored(path, error=exc.reason, flush=False))
            continue
        row = Scored(path, duration_s=len(wave) / rate, flush=False)
        if len(wave) <= window:
            clips.append((row, wave))
        else:
            row.probs = classify_waveform(recognizer, wave)
        out.append(row)
    for (row, _), probs in zip(clips, recognizer.predict_each([w for _, w in clips])):
        row.probs = probs
    out[-1].flush = True
    return out


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def score_waves(
    recognizer: OnnxRecognizer, waves: list[np.ndarray], workers: int = 1
) -> list[np.ndarray]:
    """Probabilities of each waveform (at the recognizer's rate, any length), in
    order, `workers` model calls at once; each is the waveform's own answer,
    equal to it scored alone (one clip a call)."""
    if not waves:
        return []
    workers = max(1, min(workers, len(waves)))
    if workers == 1:
        return [classify_waveform(recognizer, w) for w in waves]
    # Contiguous shares, one a thread: onnxruntime releases the interpreter lock
    # while it runs, and each thread takes a session of its own (runtime.py).
    bounds = np.linspace(0, len(waves), workers + 1).astype(int)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = pool.map(
            lambda ab: [classify_waveform(recognizer, w) for w in waves[ab[0] : ab[1]]],
            zip(bounds[:-1], bounds[1:]),
        )
        return [p for part in parts for p in part]


def score_paths(
    recognizer: OnnxRecognizer,
    paths: Iterable[str],
    batch_size: int = DECODE_CHUNK,
    workers: int = 1,
    prefetch: int = 256,
    parallel_batches: int = 1,
) -> Iterator[Scored]:
    """Probabilities of each input, in input order, on max(`workers`,
    `parallel_batches`) threads.

    Each thread takes `batch_size` files at a time and decodes and scores them
    itself, with a model session of its own (runtime.OnnxRecognizer's pool),
    one clip a model call, so every clip's answer is its own whatever the
    threads. At most `prefetch` files are in flight; the caller's thread only
    hands out paths and keeps the order. The earlier pipeline (one decoding
    thread, batches handed to inference threads sharing one session) ran at
    1.5-1.7x a one-file-at-a-time loop on two cores; this one at 2x
    (bench/batch_speed.py): the hand-offs and the shared session cost more
    than the decoding they overlapped.
    """
    threads = max(1, workers, parallel_batches)
    chunk = max(1, min(batch_size, prefetch))
    in_flight: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for paths_chunk in _chunks(paths, chunk):
            in_flight.append(pool.submit(_score_chunk, recognizer, paths_chunk))
            while len(in_flight) * chunk >= prefetch or (in_flight and in_flight[0].done()):
                yield from in_flight.popleft().result()
        while in_flight:
            yield from in_flight.popleft().result()
