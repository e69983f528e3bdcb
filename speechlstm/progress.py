"""Progress bars and notes on stderr, so stdout stays clean for results and --json."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def note(message: str) -> None:
    """One line of information for the user, on stderr."""
    stderr_console().print(message, markup=False)


@contextmanager
def progress_bar(
    description: str, total: int | None, enabled: bool | None = None, unit: str = "files"
):
    """A rich progress bar on stderr; yields an `advance(n=1, **fields)` function.

    Disabled (silently counting) when `enabled` is false, and by default when
    stderr is not a terminal: a log file never fills with redrawn bars, whoever
    draws one (`--no-progress` passes False for the terminal too).
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield lambda n=1, **fields: None
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(f"{unit}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    ]
    with Progress(*columns, console=stderr_console(), transient=False) as prog:
        task_id = prog.add_task(description, total=total, info="")

        def advance(n: int = 1, info: str | None = None) -> None:
            if info is None:
                prog.advance(task_id, n)
            else:
                prog.update(task_id, advance=n, info=info)

        yield advance
