"""Resumable, checksum-verified downloads and archive extraction that cannot escape its target.

Standard library only (urllib, tarfile). A download goes to `<file>.part`;
an interrupted one resumes with an HTTP Range request; the finished file is
checked against its SHA-256 before it is renamed into place.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CHUNK_BYTES = 1 << 20
# A transfer that brings fewer than STALL_BYTES in `stall_s` seconds (60 by
# default: curl's --speed-limit/--speed-time) has stalled: a server that
# trickles a byte a minute would pass any per-read timeout. The whole
# transfer also has a deadline (`deadline_s`); either ends it with one line,
# the partial file kept for the next run to resume.
STALL_BYTES = 1024
STALL_S = 60.0
DEADLINE_S = 12 * 3600.0  # 2.4 GB at 1 Mbit/s takes 5.4 hours


@dataclass(frozen=True)
class Archive:
    name: str
    url: str
    sha256: str
    size_bytes: int
    folder: str  # extracted under out_dir/folder


SPEECH_COMMANDS = Archive(
    "speech_commands_v0.02.tar.gz",
    "https://storage.googleapis.com/download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
    "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
    2_428_923_189,
    "speech_commands",
)
DATASETS = {"speech-commands": SPEECH_COMMANDS}


class DownloadError(RuntimeError):
    """A download or extraction that failed; the message says what to do."""


URL_SCHEMES = ("http", "https", "ftp", "file")


def check_url(url: str) -> str:
    """`url` if it names a scheme urllib can fetch; DownloadError otherwise."""
    import urllib.parse

    scheme = urllib.parse.urlsplit(str(url)).scheme.lower()
    if scheme not in URL_SCHEMES:
        raise DownloadError(
            f"--url {url!r}: expected an address starting with "
            + ", ".join(f"{s}://" for s in URL_SCHEMES)
        )
    return url


def download(
    url: str,
    dest: Path,
    sha256: str,
    timeout_s: float = 60.0,
    progress=None,
    max_bytes: int | None = None,
    stall_s: float = STALL_S,
    deadline_s: float | None = DEADLINE_S,
) -> Path:
    """Fetch `url` to `dest`, resuming `dest.part`; verify SHA-256. Returns `dest`.

    `progress(done_bytes, total_bytes)` is called as data arrives. The transfer
    stops past `max_bytes` (a mirror that sends more than the archive's size, or
    an endless source such as file:///dev/zero, cannot fill the disk), when
    fewer than STALL_BYTES arrive in `stall_s` seconds, and past `deadline_s`
    seconds in all (None: no deadline); the partial file is kept to resume.
    """
    dest = Path(dest)
    sha256 = normalize_sha256(sha256)  # before any transfer: a typo costs nothing
    check_url(url)
    if not stall_s > 0 or (deadline_s is not None and not deadline_s > 0):
        raise DownloadError("the stall timeout and the deadline must be positive")
    started = time.monotonic()
    if dest.is_file() and _sha256(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _check_regular_or_absent(dest, part)
    have = part.stat().st_size if part.is_file() else 0
    # A read that waits longer than the stall timeout is a stall; so is a connect.
    wait_s = min(timeout_s, stall_s, deadline_s or stall_s)
    response = _open(url, have, wait_s)
    if response is None:  # nothing left to fetch: the part is complete
        return _finish(part, dest, sha256)
    with response:
        if have and response.status != 206:  # server ignored Range: start over
            have = 0
        total = _announced_total(response, have, url, max_bytes)
        transfer = _Transfer(url, part, have, progress, max_bytes, stall_s, deadline_s, started)
        try:
            transfer.copy(response, total)
        except TimeoutError:  # no byte at all for the stall timeout
            raise _stalled(url, part, transfer.done, wait_s) from None
        except (OSError, urllib.error.URLError) as exc:
            raise DownloadError(
                f"{url}: connection lost after {transfer.done} bytes ({exc}); run again to resume"
            ) from None
    if total is not None and transfer.done < total:
        raise DownloadError(
            f"{url}: incomplete, got {transfer.done} of {total} bytes; run again to resume"
        )
    return _finish(part, dest, sha256)


def _check_regular_or_absent(*paths: Path) -> None:
    """Each path absent or a regular file (a link to one is fine)."""
    for path in paths:
        # A FIFO or device at either name would hang the write, or never end.
        if (path.exists() or path.is_symlink()) and not path.is_file():
            raise DownloadError(f"{path}: is not a regular file; move it away and run again")


def _open(url: str, have: int, wait_s: float):
    """The response to a request for `url` from byte `have` on (a Range request
    when `have`); None when the server answers that nothing is left (416)."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        return urllib.request.urlopen(request, timeout=wait_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            return None
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"{url}: cannot connect ({getattr(exc, 'reason', exc)})") from None


def _announced_total(response, have: int, url: str, max_bytes: int | None) -> int | None:
    """The file's full size as the response announces it (None: not announced);
    refused when it is over `max_bytes`."""
    length = response.headers.get("Content-Length")
    try:
        total = have + int(length) if length is not None else None
    except ValueError:
        total = None  # a malformed header: the cap and the checksum still hold
    if max_bytes is not None and total is not None and total > max_bytes:
        raise DownloadError(
            f"{url}: announces {total:,} bytes, more than the {max_bytes:,} expected; refusing it"
        )
    return total


@dataclass
class _Transfer:
    """One response copied into the part file: appended after the `have` bytes
    already there (written afresh when there are none); `done` counts the bytes
    the part file holds, for the messages."""

    url: str
    part: Path
    have: int
    progress: Callable[[int, int | None], None] | None
    max_bytes: int | None
    stall_s: float
    deadline_s: float | None
    started: float  # time.monotonic() when the download began

    def __post_init__(self) -> None:
        self.done = self.have

    def copy(self, response, total: int | None) -> None:
        """Read until the response ends; stop on too many bytes, a stall or the deadline."""
        url, part, max_bytes, deadline_s = self.url, self.part, self.max_bytes, self.deadline_s
        # read1: whatever has arrived, so a trickle is seen as one, not waited out.
        read = getattr(response, "read1", response.read)
        mark_at, mark_bytes = time.monotonic(), self.done  # the last time data flowed
        with part.open("ab" if self.have else "wb") as fh:
            while chunk := read(CHUNK_BYTES):
                if max_bytes is not None and self.done + len(chunk) > max_bytes:
                    raise DownloadError(
                        f"{url}: sent more than the {max_bytes:,} bytes expected; "
                        f"stopped (the partial {part.name} is kept for a look)"
                    )
                fh.write(chunk)
                self.done += len(chunk)
                if self.progress:
                    self.progress(self.done, total)
                now = time.monotonic()
                if self.done - mark_bytes >= STALL_BYTES:
                    mark_at, mark_bytes = now, self.done
                elif now - mark_at > self.stall_s:
                    raise _stalled(url, part, self.done, self.stall_s)
                if deadline_s is not None and now - self.started > deadline_s:
                    fh.flush()
                    raise DownloadError(
                        f"{url}: not finished within the {_seconds(deadline_s)} deadline "
                        f"({self.done:,} bytes); {part.name} is kept: run again to resume"
                    )


def _stalled(url: str, part: Path, done: int, stall_s: float) -> DownloadError:
    return DownloadError(
        f"{url}: stalled, less than {STALL_BYTES:,} bytes in {_seconds(stall_s)} "
        f"({done:,} bytes so far); {part.name} is kept: run again to resume"
    )


def _seconds(s: float) -> str:
    return f"{s:g} s" if s < 120 else f"{s / 60:g} min" if s < 7200 else f"{s / 3600:g} h"


def normalize_sha256(text: str) -> str:
    """A SHA-256 as 64 lower-case hex digits; upper case and spaces around are fine."""
    digest = str(text).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise DownloadError(f"--sha256 {text!r}: expected 64 hexadecimal digits")
    return digest


def _finish(part: Path, dest: Path, sha256: str) -> Path:
    got = _sha256(part)
    if got != sha256:
        part.unlink()  # a corrupt file cannot be resumed into a good one
        raise DownloadError(
            f"{dest.name}: checksum mismatch (expected {sha256[:16]}..., got {got[:16]}...); "
            "the partial file was deleted, run again to download afresh"
        )
    part.replace(dest)
    return dest


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# Extraction caps: Speech Commands v0.02 unpacks to about 3.8 GB in 106,000
# files; an archive claiming far more is a bomb or not the dataset.
MAX_EXTRACT_BYTES = 16 * 2**30
MAX_MEMBERS = 2_000_000


def check_members(
    tar: tarfile.TarFile,
    target: Path,
    max_bytes: int = MAX_EXTRACT_BYTES,
    max_members: int = MAX_MEMBERS,
) -> None:
    """Refuse the whole archive if any member would land outside `target`
    (absolute paths, `..`, links pointing out, members under a link, device
    files) or it unpacks to more than `max_bytes` or `max_members`.

    Paths are judged lexically, as extraction will create them: a link is
    checked against where it sits in the archive, and nothing may be
    extracted through a link, so a chain of links cannot step outside even
    where the standard library's extraction filter is absent.
    """
    links: set[PurePosixPath] = set()
    total = 0
    for count, member in enumerate(tar, start=1):
        total += max(member.size, 0)
        if count > max_members or total > max_bytes:
            raise DownloadError(
                f"archive unpacks to more than {max_members:,} files or "
                f"{max_bytes / 2**30:.0f} GiB; refusing it"
            )
        name = PurePosixPath(member.name)
        if name.is_absolute() or ".." in name.parts or _escapes(name):
            raise DownloadError(f"unsafe archive member {member.name!r}: escapes {target}")
        if any(parent in links for parent in name.parents):
            raise DownloadError(f"unsafe archive member {member.name!r}: lies under a link")
        if member.issym() or member.islnk():
            base = name.parent if member.issym() else PurePosixPath()
            linkname = PurePosixPath(member.linkname)
            if linkname.is_absolute() or _escapes(base / linkname):
                raise DownloadError(f"unsafe link {member.name!r} -> {member.linkname!r}")
            links.add(name)
        if member.isdev():
            raise DownloadError(f"unsafe archive member {member.name!r}: device file")


def _escapes(path: PurePosixPath) -> bool:
    """True when `path`, relative to the target, leaves it once `..` is applied."""
    depth = 0
    for part in path.parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def safe_extract(archive: Path, target: Path) -> Path:
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            check_members(tar, target)
            # The "data" filter (Python 3.11.4+) repeats the checks in the standard library.
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(target, **kwargs)
    except tarfile.TarError as exc:
        raise DownloadError(f"{archive}: not a readable archive ({exc})") from None
    except OSError as exc:
        raise DownloadError(f"{target}: extraction failed ({exc.strerror or exc})") from None
    return target


def fetch_dataset(
    archive: Archive,
    out_dir: Path,
    url: str | None = None,
    sha256: str | None = None,
    progress=None,
    stall_s: float = STALL_S,
    deadline_s: float | None = DEADLINE_S,
) -> Path:
    """Download (resumably) and extract a dataset archive; returns the dataset folder.
    `stall_s` and `deadline_s` as for `download`."""
    from ..files import FolderLock

    out_dir = Path(out_dir)
    target = out_dir / archive.folder
    done_marker = target / ".extracted"
    if done_marker.is_file():
        return target
    with FolderLock(out_dir, "download folder"):
        limits = {"stall_s": stall_s, "deadline_s": deadline_s}
        return _fetch(archive, out_dir, target, done_marker, url, sha256, progress, limits)


def _fetch(archive, out_dir, target, done_marker, url, sha256, progress, limits) -> Path:
    # A mirror serves the same archive: twice its size leaves room for another
    # compression and still stops an endless source long before the disk fills.
    path = download(
        url or archive.url,
        out_dir / archive.name,
        sha256 or archive.sha256,
        progress=progress,
        max_bytes=2 * archive.size_bytes,
        **limits,
    )
    safe_extract(path, target)
    done_marker.write_text(archive.sha256 if sha256 is None else sha256)
    return target
