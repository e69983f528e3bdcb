"""The `speechlstm` command line: one module per command group, registered here.

Each command parses and validates, then calls the library. Inference commands
(transcribe, info, score, evaluate, live, tune-detector, store-detector, data)
never import torch; train, export and export-encoder import it when they run.
Command modules import only `common` and the library, so importing this module
imports each of them once, with no cycle.
"""

from __future__ import annotations

import functools

import typer

from speechlstm.runtime import ModelError

from . import data_cmd, live_cmd, score_cmd, serve_cmd, train_cmd, transcribe_cmd, tune_cmd
from .common import EXIT_INTERRUPTED, EXIT_PIPE_CLOSED, EXIT_USAGE, fail, printable

app = typer.Typer(
    name="speechlstm",
    help="Speech command recognition: MFCC features + a bidirectional LSTM.\n\n"
    "Train with PyTorch (GPU when present), export to ONNX, run on the CPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class PipeClosed(Exception):
    """stdout's reader went away. Not an OSError: click's own handler turns an
    EPIPE OSError into exit 1, and `| head -1` must end as Unix tools do (141)."""


def _model_errors(command):
    """A model found broken while running (NaN or non-probabilities out) ends the
    command like one refused at load: one line, exit 2; rows written are kept.
    A closed stdout becomes PipeClosed, for main to end with 141."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ModelError as exc:
            fail(str(exc))
        except BrokenPipeError:
            raise PipeClosed() from None

    return run


def _pipe_guarded(command):
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except BrokenPipeError:
            raise PipeClosed() from None

    return run


app.command(name="transcribe")(_model_errors(transcribe_cmd.transcribe))
app.command(name="info")(_pipe_guarded(transcribe_cmd.info))
app.command(name="live")(_model_errors(live_cmd.live))
app.command(name="score")(_model_errors(score_cmd.score))
app.command(name="evaluate")(_model_errors(score_cmd.evaluate))
app.command(name="serve")(_model_errors(serve_cmd.serve))
app.command(name="tune-detector")(_model_errors(tune_cmd.tune_detector))
app.command(name="store-detector")(_pipe_guarded(tune_cmd.store_detector))
app.command(name="train")(_pipe_guarded(train_cmd.train))
app.command(name="export")(_pipe_guarded(train_cmd.export))
app.command(name="export-encoder")(_pipe_guarded(train_cmd.export_encoder))
for _info in data_cmd.app.registered_commands:
    _info.callback = _pipe_guarded(_info.callback)
app.add_typer(data_cmd.app, name="data")


def main() -> None:
    import errno
    import os
    import signal
    import sys
    from pathlib import Path

    # Ctrl-C is how live, train and score are stopped (each keeps its work): a
    # parent that ignores SIGINT (nohup, some CI runners and test harnesses)
    # would otherwise pass that on and leave them unstoppable but by SIGKILL.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    # File names need not be UTF-8 on Linux: print them as their own bytes.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    # Past a file-size limit (ulimit -f) a write fails with EFBIG, reported by
    # name like a full disk, instead of SIGXFSZ killing the process mid-row.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        app()
    except (BrokenPipeError, PipeClosed):
        # A reader that stopped early (`| head -1`): end quietly, as Unix tools do
        # (they die of SIGPIPE: 128 + 13). Output files were flushed row by row.
        _silence_stdout()
        sys.exit(EXIT_PIPE_CLOSED)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(EXIT_INTERRUPTED)
    except ModelError as exc:
        # A model found broken while running (NaN or non-probabilities out): an
        # unusable model, as at load; the rows written before it are kept.
        sys.stderr.write(f"error: {printable(str(exc))}\n")
        sys.exit(EXIT_USAGE)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            # Met at the first look at an output (or input) path, before any work.
            name = os.fsdecode(exc.filename or "")
            longest = max((len(os.fsencode(part)) for part in Path(name).parts), default=0)
            sys.stderr.write(
                f"error: {printable(name[:80])}...: the name is too long for the file system "
                f"(a part of {longest} bytes; most allow 255)\n"
            )
            sys.exit(EXIT_USAGE)
        if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO):
            _unexpected(exc)
        # A write nothing else guarded (help or usage text to /dev/full): one
        # line, as coreutils say "write error", and no complaint at exit.
        _silence_stdout()
        where = f" {exc.filename}" if exc.filename else " output"
        sys.stderr.write(f"error: cannot write{where} ({exc.strerror or exc})\n")
        sys.exit(EXIT_USAGE)
    except Exception as exc:  # the last line of defence: one line, never a traceback
        _unexpected(exc)


def _unexpected(exc: BaseException) -> None:
    """One line for an exception nothing handled: a bug, never a traceback."""
    import sys

    where = exc.__traceback__
    while where is not None and where.tb_next is not None:
        where = where.tb_next
    at = f" at {where.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{where.tb_lineno}"
    sys.stderr.write(
        f"error: unexpected {type(exc).__name__}: {str(exc)[:300]}{at if where else ''} "
        "(a bug: please report it with the command line)\n"
    )
    sys.exit(EXIT_USAGE)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush does not complain."""
    import os
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    main()
