"""Files as the careful Unix tools treat them: read only regular files, with a size
cap; replace only what is ours; write whole or not at all; one writer a folder.

- `open_regular` opens without blocking (a FIFO would hang a plain open) and
  refuses anything that is not a regular file, by name: FIFOs, devices
  (/dev/zero, /dev/urandom), sockets, folders.
- `read_capped` reads such a file whole, refusing it past a size cap.
- `check_output` refuses an output path that is not a regular file (/dev/full,
  a FIFO) and one that exists and is not ours, unless `force`; `rows_are_ours`
  recognises the results files written row by row (outputs.py, shards.py):
  every "replace or append only what is ours" check lives here.
- `write_atomic` writes through an unpredictable temporary file created
  exclusively in the target's folder, then renames it over the target: a
  planted symlink at a guessable name is never followed, and a reader sees the
  old file or the new one, never half of one.
- `FolderLock` is an advisory lock (flock) on a folder: a second run into the
  same output folder is refused while the first holds it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

# Settings files (--config, --detector TOML): far larger is a mistake or an attack.
MAX_SETTINGS_BYTES = 1 << 20
# One line of a list file or manifest: a path is at most PATH_MAX (4096) bytes.
MAX_LINE_BYTES = 1 << 16
LOCK_NAME = ".speechlstm.lock"


class FileRefused(ValueError):
    """A file that must not be read or written; the message names it and the reason."""


def kind(mode: int) -> str:
    """A file type in words, for messages."""
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | os.PathLike, what: str = "file") -> IO[bytes]:
    """`path` opened for reading in binary; FileRefused unless it is a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise FileRefused(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise FileRefused(f"{path}: is {kind(mode)}; the {what} must be a regular file")
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_regular(path: str | os.PathLike, what: str = "file") -> None:
    """FileRefused unless `path` is a regular file (opened and closed again)."""
    open_regular(path, what).close()


def same_source(given: str | os.PathLike, recorded: str | os.PathLike) -> bool:
    """True when `given` names the file or folder `recorded` names: one path in
    one normal form (`./data/sc/` is `data/sc`), or one file reached two ways
    (an absolute path, a link). `train --resume` compares the run's data so."""
    a, b = os.fspath(given), os.fspath(recorded)
    if os.path.normpath(a) == os.path.normpath(b) or os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # ValueError: a NUL byte in a name
        return False


def read_capped(path: str | os.PathLike, limit: int = MAX_SETTINGS_BYTES, what="file") -> bytes:
    """The bytes of a regular file of at most `limit` bytes."""
    with open_regular(path, what) as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise FileRefused(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise FileRefused(
            f"{path}: the {what} is larger than {limit:,} bytes; is it the right file?"
        )
    return data


def read_text_capped(path, limit: int = MAX_SETTINGS_BYTES, what: str = "file") -> str:
    data = read_capped(path, limit, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileRefused(f"{path}: the {what} is not UTF-8 text (byte {exc.start})") from None


def check_output(
    path: str | os.PathLike,
    is_ours: Callable[[Path], bool] | None = None,
    force: bool = False,
    what: str = "output",
) -> None:
    """Refuse an output that is not a regular file, or that exists and is not ours
    (unless `force`): a file is replaced only if `is_ours(path)` recognises it.
    A symbolic link there (dangling or not) is refused: the atomic rename would
    put our file in place of the link, which is not ours either."""
    path = Path(path)
    if path.is_symlink():
        raise FileRefused(
            f"{path}: is a symbolic link (to {os.readlink(path)}); give the real file's "
            f"path as the {what}, or remove the link"
        )
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        parent = path.parent if str(path.parent) else Path(".")
        if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
            raise FileRefused(
                f"{path}: cannot write the {what}: {parent} is not writable"
            ) from None
        return
    except OSError as exc:
        raise FileRefused(f"{path}: cannot use as {what} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        raise FileRefused(f"{path}: is {kind(mode)}; the {what} must be a regular file")
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
        raise FileRefused(f"{path}: cannot write the {what} (permission denied)")
    if force or is_ours is None:
        return
    if not is_ours(path):
        raise FileRefused(
            f"{path}: exists and is not a file speechlstm wrote; refusing to replace it "
            "(choose another name, or --force)"
        )


def first_line(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.readline(4096).rstrip(b"\r\n")


def rows_are_ours(path: Path, csv_header: tuple[str, ...], json_keys: tuple[str, ...]) -> bool:
    """A results file we write row by row: empty, or its first line is what we
    write first (the CSV header, or a JSON object with our row keys). A user's
    spreadsheet or a typo'd path to a source file is not."""
    if path.stat().st_size == 0:
        return True
    line = first_line(path)
    if line == ",".join(csv_header).encode():
        return True
    try:
        row = json.loads(line)
    except ValueError:
        return False
    return isinstance(row, dict) and all(key in row for key in json_keys)


def umask_mode() -> int:
    """The mode an ordinary `open(path, "w")` gives a new file under this process's
    umask (0o644 under the usual 022): what our atomic writes end with too, so a
    service or another user can read results, models and checkpoints."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back
    os.umask(mask)
    return 0o666 & ~mask


def temp_beside(path: str | os.PathLike) -> tuple[int, str]:
    """An exclusive, unpredictable temporary file in `path`'s folder for an atomic
    write of `path` (fd, name), with the mode a plain write would give it:
    mkstemp's 0600 would make every result, model and checkpoint private."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:64]}.", suffix=".tmp")
    try:
        os.fchmod(fd, umask_mode())
    except OSError:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return fd, tmp


def write_atomic(path: str | os.PathLike, data: bytes | str, fsync: bool = True) -> Path:
    """Write `data` to `path` whole: an exclusive, unpredictable temporary file in
    the same folder, flushed (and synced to disk unless `fsync` is False: many
    small files whose loss in a power cut costs only a re-run), then renamed."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class FolderLock:
    """An exclusive advisory lock on a folder (a `.speechlstm.lock` file in it),
    held until `release()` or the process ends."""

    def __init__(self, folder: str | os.PathLike, what: str = "output folder"):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FileRefused(
                f"{self.folder}: cannot use as the {what} ({exc.strerror or exc})"
            ) from None
        lock = self.folder / LOCK_NAME
        try:
            self.fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise FileRefused(f"{lock}: cannot lock the {what} ({exc.strerror or exc})") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self.fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise FileRefused(
                    f"{self.folder}: another speechlstm process is writing this {what}; "
                    "wait for it or choose another"
                ) from None
            raise FileRefused(f"{lock}: cannot lock ({exc.strerror or exc})") from None

    def release(self) -> None:
        if self.fd >= 0:
            # Removed while still held, so no lock file is left behind in the folder.
            (self.folder / LOCK_NAME).unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
