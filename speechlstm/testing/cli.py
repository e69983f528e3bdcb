"""The command line as a user runs it, for tests: `python -m speechlstm ...` in a
child process, stdin closed, output captured."""

from __future__ import annotations

import subprocess
import sys


def run_cli(*args, cwd=None, stdout=subprocess.PIPE, timeout: float = 120):
    """`speechlstm ARGS` (each turned into a string); the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "speechlstm", *map(str, args)],
        cwd=cwd,
        stdout=stdout,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )
