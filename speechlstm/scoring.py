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
from .outputs import CSV_FIELDS, ENCODING, OutputError, open_rows
from .runtime import OnnxRecognizer
from .transcribe import batch_top_k, classify_stream, classify_waveform

LIST_SUFFIXES = {".txt", ".lst", ".list"}
DECODE_CHUNK = 32  # files a decoding task


@dataclass
class Scored:
    """One input's outcome: probabilities (classes,) or the reason it failed."""

    path: str
    probs: np.ndarray | None = None
    duration_s: float | None = None
    error: str | None = None


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
    """The paths an earlier run already wrote, kept as 8-byte digests so that
    resuming a run of millions of files costs megabytes, not gigabytes."""

    def __init__(self, paths: Iterable[str] = ()):
        self._keys = {self._key(p) for p in paths}

    @staticmethod
    def _key(path: str) -> bytes:
        # surrogateescape: a name that is not UTF-8 keeps its own bytes.
        return hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()

    def __contains__(self, path: str) -> bool:
        return self._key(path) in self._keys

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
        return ScoredPaths(row["path"] for row in csv.DictReader(io.StringIO(text, newline="")))
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
            self.csv.writerow(CSV_FIELDS)
            self.fh.flush()

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
            top = [
                [lab, round(s, 6)]
                for lab, s in batch_top_k(result.probs[None], self.labels, self.k)[0]
            ]
        label, score = (top[0][0], top[0][1]) if top else (None, None)
        if self.csv is not None:
            self.csv.writerow(
                [
                    result.path,
                    label or "",
                    "" if score is None else f"{score:.6f}",
                    ";".join(f"{lab}:{s:.6f}" for lab, s in top),
                    "" if result.duration_s is None else f"{result.duration_s:.3f}",
                    result.error or "",
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
        self.fh.flush()

    def close(self) -> None:
        if self._owned:
            self.fh.close()


STREAM = np.zeros(0, np.float32)  # _decode's mark for a file to stream, not decode whole


def _decode(path: str, sample_rate: int):
    if is_large(path):
        return path, STREAM, None  # decoded block by block where it is scored
    try:
        return path, load_audio(path, sample_rate), None
    except InvalidAudio as exc:
        return path, None, exc.reason


def _decode_chunk(paths: list[str], sample_rate: int) -> list:
    return [_decode(path, sample_rate) for path in paths]


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
    # while it runs, so the threads' model calls run on separate cores.
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
    batch_size: int = 8,
    workers: int = 1,
    prefetch: int = 256,
    parallel_batches: int = 1,
) -> Iterator[Scored]:
    """Probabilities of each input, in input order. Decoding runs ahead on
    `workers` threads and up to `parallel_batches` batches run through
    onnxruntime at once.

    Several concurrent single-threaded runs use the cores better than one run
    with several intra-op threads: the LSTM is a chain of small matrix products,
    each too small to split well, and the Python work between batches (padding,
    top-k, rows) then overlaps with inference instead of idling the pool.
    """
    rate = recognizer.sample_rate
    window = recognizer.clip_samples
    decoding: deque[Future] = deque()
    # Output order: finished rows (errors, long clips) and batches in flight
    # (with the input buffer each one reads).
    ordered: deque[Scored | tuple[Future, list[tuple[str, int]], np.ndarray]] = deque()
    in_flight = 0
    batch: list[tuple[str, np.ndarray]] = []
    # Input buffers are reused once their batch is done rather than a fresh
    # half-megabyte array allocated and zeroed per batch.
    spare: list[np.ndarray] = []

    def submit_batch(pool: ThreadPoolExecutor) -> None:
        nonlocal in_flight
        if not batch:
            return
        block = spare.pop() if spare else np.empty((batch_size, window), dtype=np.float32)
        for i, (_, wave) in enumerate(batch):
            block[i, : len(wave)] = wave
            block[i, len(wave) :] = 0.0
        future = pool.submit(recognizer.predict, block[: len(batch)])
        ordered.append((future, [(p, len(w)) for p, w in batch], block))
        in_flight += 1
        batch.clear()

    def ready(max_in_flight: int) -> Iterator[Scored]:
        """Rows at the head of the order that are done; waits while too many batches run."""
        nonlocal in_flight
        while ordered:
            head = ordered[0]
            if isinstance(head, Scored):
                yield ordered.popleft()
                continue
            future, items, block = head
            if not future.done() and in_flight <= max_in_flight:
                return
            probs = future.result()
            ordered.popleft()
            spare.append(block)
            in_flight -= 1
            for (path, n_samples), p in zip(items, probs):
                yield Scored(path, p, n_samples / rate)

    def handle(path, wave, error, pool) -> Iterator[Scored]:
        if error is not None:
            submit_batch(pool)  # keep the input order
            ordered.append(Scored(path, error=error))
        elif wave is STREAM:
            submit_batch(pool)
            try:
                p, n = classify_stream(recognizer, stream_audio(path, rate))
                ordered.append(Scored(path, p, n / rate))
            except InvalidAudio as exc:
                ordered.append(Scored(path, error=exc.reason))
        elif len(wave) <= window:
            batch.append((path, wave))
            if len(batch) >= batch_size:
                submit_batch(pool)
        else:
            submit_batch(pool)
            p = classify_waveform(recognizer, wave)
            ordered.append(Scored(path, p, len(wave) / rate))
        yield from ready(max(1, parallel_batches))

    with (
        ThreadPoolExecutor(max_workers=max(1, workers)) as decoders,
        ThreadPoolExecutor(max_workers=max(1, parallel_batches)) as inference,
    ):
        # Files go to the decoders in chunks: one hand-off between threads per
        # file cost more than decoding a 16-bit WAV (the threads take turns on
        # the interpreter lock), and capped throughput at ~3,700 files/s.
        chunk = max(1, min(DECODE_CHUNK, prefetch))
        for paths_chunk in _chunks(paths, chunk):
            decoding.append(decoders.submit(_decode_chunk, paths_chunk, rate))
            if len(decoding) * chunk >= prefetch:
                for decoded in decoding.popleft().result():
                    yield from handle(*decoded, inference)
        while decoding:
            for decoded in decoding.popleft().result():
                yield from handle(*decoded, inference)
        submit_batch(inference)
        yield from ready(0)
