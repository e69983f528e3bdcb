"""Helpers shared by the commands: error exits and output streams."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

EXIT_OK = 0
EXIT_SOME_FAILED = 1  # the command ran, some inputs failed
EXIT_USAGE = 2  # bad arguments, missing files given as options, unusable model
EXIT_INTERRUPTED = 130


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print `error: message` on stderr and exit with `code` (no traceback)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def stdout_line(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()  # a consumer piping --json sees each result as it is made
