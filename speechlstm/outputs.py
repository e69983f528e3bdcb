"""Output files we write row by row (score results): only ours are truncated or
appended to, one writer at a time, names kept byte for byte.

A file is ours when its first line is what we write first: the CSV header, or
a JSON object with our row keys (files.rows_are_ours, beside the other
ownership checks). Anything else (a user's spreadsheet, a typo'd path to a
source file) is refused before a byte is written. An
advisory lock (flock) refuses a second writer to the same file, which would
interleave rows. File names that are not valid UTF-8 (legal on Linux) are
written and read back with `surrogateescape`, so a resumed run recognises them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import IO

from .files import rows_are_ours

ENCODING = {"encoding": "utf-8", "errors": "surrogateescape"}
CSV_FIELDS = ("path", "label", "score", "top", "duration_s", "error")  # score's columns


# OWASP's CSV injection rule: a cell a spreadsheet would run as a formula
# (=, +, -, @, tab, carriage return) is written with a leading apostrophe. A
# cell that begins with an apostrophe gets one more, so `csv_value` gives back
# exactly what `csv_cell` was given (a resumed or merged run reads its paths).
CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def csv_cell(text: str) -> str:
    return "'" + text if text.startswith(CSV_FORMULA_STARTS) else text


def csv_value(cell: str) -> str:
    return cell[1:] if cell.startswith("'") else cell


class OutputError(ValueError):
    """An output that cannot or must not be written; the message names the path."""


def open_rows(
    path: Path, append: bool, csv_header: tuple[str, ...], json_keys: tuple[str, ...]
) -> tuple[IO[str], bool]:
    """Open `path` for rows, locked; returns (file, had_rows).

    Truncates unless `append`. Refuses a file that is not ours, a file another
    process is writing, and a path that cannot be written, naming the reason.
    """
    if path.is_symlink():
        # Written through, a link (dangling or not) would put our rows in a file
        # the user never named; replaced, the link itself would be lost.
        raise OutputError(
            f"{path}: is a symbolic link (to {os.readlink(path)}); give the real file's path"
        )
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise OutputError(
            f"{path}: is not a regular file (a device, FIFO or socket); give a file name"
        )
    try:
        had_rows = path.is_file() and path.stat().st_size > 0
        if had_rows and not rows_are_ours(path, csv_header, json_keys):
            raise OutputError(
                f"{path}: exists and is not a speechlstm results file (its first line is not "
                "ours); refusing to overwrite or append to it: choose another output"
            )
        # O_NOFOLLOW: a link planted after the check above is refused, not followed.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fh = os.fdopen(os.open(path, flags, 0o666), "a", newline="", **ENCODING)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        fh.close()
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise OutputError(
                f"{path}: another process is writing it; wait for it or choose another output"
            ) from None
        raise OutputError(f"{path}: cannot lock ({exc.strerror or exc})") from None
    if not append:
        fh.truncate(0)
        had_rows = False
    return fh, had_rows


@contextlib.contextmanager
def held_unless_busy(path: Path):
    """While `path` (if it exists) is replaced as a whole: refuse it when another
    process holds its lock (a running `score` writing it, whose rows the
    replacement would cut off), and hold the lock ourselves meanwhile so no
    `score` starts writing it halfway."""
    if path.is_symlink():
        raise OutputError(
            f"{path}: is a symbolic link (to {os.readlink(path)}); give the real file's path"
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        yield
        return
    except OSError as exc:
        raise OutputError(f"{path}: cannot open ({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise OutputError(
                    f"{path}: another process is writing it; wait for it or choose another output"
                ) from None
            raise OutputError(f"{path}: cannot lock ({exc.strerror or exc})") from None
        yield
    finally:
        os.close(fd)


def same_file(a: Path, b: Path) -> bool:
    """True when `a` and `b` name one existing file (links and `..` included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
