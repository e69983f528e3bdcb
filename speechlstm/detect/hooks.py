"""Commands run when a command is heard (`live --exec CMD`), off the audio path.

    detection --submit (never blocks)--> bounded queue --> `max_running` worker threads
      each: sh -c CMD, in its own process group, with
        SPEECHLSTM_LABEL / _SCORE / _START_S / _END_S / _MODEL in its environment
        and the detection's JSON line on its stdin
      -> exit 0: nothing said; another code: one line on stderr with it;
         past `timeout_s`: its process group killed, one line

The listening loop only calls `submit`, which puts the detection on a queue
and returns: a hook that hangs, fails or floods its output never delays the
audio. At most `max_running` hooks run at once; the rest wait in the queue
(counted), and once `max_queued` wait, a new detection's hook is dropped
(counted, one line). The hook's stdout goes to our stderr, so a program
reading our stdout (`--json`, `--names`) never sees a hook's output. As
wyoming-satellite's `--detection-command` and Precise's `on_activation`, but
with the bounds those leave out.

The command string is the user's own, run through the shell as they wrote it;
what varies per detection travels in the environment and on stdin, never
spliced into the command.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .stream import Detection

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_RUNNING = 2
DEFAULT_MAX_QUEUED = 16
_STOP = object()


@dataclass
class HookStats:
    started: int = 0
    succeeded: int = 0
    failed: int = 0  # exited with another code, or could not start
    timed_out: int = 0
    waited: int = 0  # queued behind running hooks before they started
    dropped: int = 0  # not run: the queue was full


def hook_environment(det: Detection) -> dict[str, str]:
    """The detection in the hook's environment (added to ours)."""
    return {
        "SPEECHLSTM_LABEL": det.label,
        "SPEECHLSTM_SCORE": f"{det.score:.4f}",
        "SPEECHLSTM_START_S": f"{det.start_s:.3f}",
        "SPEECHLSTM_END_S": f"{det.end_s:.3f}",
        "SPEECHLSTM_MODEL": det.model,
    }


class HookRunner:
    """Runs `command` once per submitted detection (see module doc). Use as a
    context manager, or call `close()`: it lets queued hooks run (each still
    bounded by its timeout) unless `cancel` is set."""

    def __init__(
        self,
        command: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_running: int = DEFAULT_MAX_RUNNING,
        max_queued: int = DEFAULT_MAX_QUEUED,
        log: Callable[[str], None] | None = None,
        stdout_fd: int | None = None,
    ):
        if not command.strip():
            raise ValueError("the hook command is empty")
        if not timeout_s > 0 or max_running < 1 or max_queued < 0:
            raise ValueError(
                f"hook timeout {timeout_s} s, {max_running} running, {max_queued} queued: "
                "expected a timeout > 0, at least one running and a queue >= 0"
            )
        self.command = command
        self.timeout_s = timeout_s
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        # Where a hook's stdout goes: our stderr, keeping our stdout for results.
        self.stdout_fd = 2 if stdout_fd is None else stdout_fd
        self.stats = HookStats()
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self.max_queued = max_queued
        self._idle = max_running  # workers waiting for a hook to run
        self._running: set[subprocess.Popen] = set()  # killed on close(cancel=True)
        self._pending = 0  # hooks submitted and not yet started
        self._workers = [
            threading.Thread(target=self._work, name=f"hook-{i}", daemon=True)
            for i in range(max_running)
        ]
        for w in self._workers:
            w.start()
        self._closed = False

    def __enter__(self) -> HookRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close(cancel=exc[0] is not None)

    def submit(self, det: Detection) -> bool:
        """Queue the hook for `det`; returns at once. False when it was dropped."""
        if self._closed:
            return False
        with self._lock:
            # Idle workers take a hook at once; beyond them, max_queued may wait.
            full = self._pending >= self._idle + self.max_queued
            if full:
                self.stats.dropped += 1
            else:
                if self._pending >= self._idle:
                    self.stats.waited += 1
                self._pending += 1
                self._queue.put_nowait(det)
        if full:
            self.log(
                f"hook: dropped for {det.label} at {det.end_s:.2f} s: {len(self._workers)} "
                f"running and {self.max_queued} waiting already"
            )
        return not full

    def close(self, cancel: bool = False) -> HookStats:
        """Stop taking detections; run what is queued (or drop it, `cancel`), and
        wait for the running hooks (each bounded by its timeout)."""
        if self._closed:
            return self.stats
        self._closed = True
        if cancel:  # Ctrl-C: nothing more runs, and what runs is stopped
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            with self._lock:
                running = list(self._running)
            for proc in running:
                _kill_group(proc, wait=False)
        for _ in self._workers:
            self._queue.put(_STOP)
        for w in self._workers:
            w.join()
        return self.stats

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            with self._lock:
                self._pending -= 1
                self._idle -= 1
                self.stats.started += 1
            try:
                self._run(item)
            finally:
                with self._lock:
                    self._idle += 1

    def _run(self, det: Detection) -> None:
        what = f"{det.label} at {det.end_s:.2f} s"
        line = (json.dumps({**det.to_json(), "model": det.model}) + "\n").encode()
        try:
            proc = subprocess.Popen(
                self.command,
                shell=True,
                stdin=subprocess.PIPE,
                stdout=self.stdout_fd,
                env={**os.environ, **hook_environment(det)},
                start_new_session=True,  # its own process group: a timeout kills it all
            )
        except OSError as exc:
            self._count("failed")
            self.log(f"hook: could not start for {what}: {exc.strerror or exc}")
            return
        with self._lock:
            self._running.add(proc)
        try:
            proc.communicate(line, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            self._count("timed_out")
            self.log(f"hook: still running after {self.timeout_s:g} s for {what}; killed")
            return
        finally:
            with self._lock:
                self._running.discard(proc)
        if proc.returncode == 0:
            self._count("succeeded")
        else:
            self._count("failed")
            code = proc.returncode
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            self.log(f"hook: failed for {what} ({how})")

    def _count(self, key: str) -> None:
        with self._lock:
            setattr(self.stats, key, getattr(self.stats, key) + 1)


def _kill_group(proc: subprocess.Popen, wait: bool = True) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if wait:
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError, OSError):
            proc.communicate(timeout=5)
