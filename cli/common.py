"""Helpers shared by the commands: error exits, output streams, loading the model.

Every command module imports from here and from the library, never from
another command module, so the CLI has no import cycle.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from speechlstm.api import Detector, Recognizer
    from speechlstm.runtime import OnnxRecognizer

EXIT_OK = 0
EXIT_SOME_FAILED = 1  # the command ran, some inputs failed
EXIT_USAGE = 2  # bad arguments, missing files given as options, unusable model
EXIT_INTERRUPTED = 130
EXIT_PIPE_CLOSED = 141  # stdout's reader went away (128 + SIGPIPE), as Unix tools end

MODEL_HELP = (
    "ONNX model, or a shipped model's name (sc12, sc12_synthetic, sc12_mined); default: sc12."
)
MODELS_HELP = MODEL_HELP + " Repeat for several models on one stream."
RAW_OPTIONS_HELP = "--rate (16000), --format (s16le) and --channels (1) describe it."


def printable(text: str) -> str:
    """`text` safe for a terminal: control and format characters (escape
    sequences, carriage returns, line and paragraph separators, bidi overrides)
    shown as escapes, so a file name cannot move the cursor, recolour or
    rewrite what is shown. Tabs and newlines stay (multi-line output uses them)."""
    import unicodedata

    return "".join(
        ch.encode("unicode_escape", "backslashreplace").decode("ascii")
        if ch not in "\t\n" and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")
        else ch
        for ch in text
    )


def err_line(text: str) -> None:
    """One line of diagnostics on stderr, made printable."""
    typer.echo(printable(text), err=True)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print `error: message` on stderr and exit with `code` (no traceback)."""
    err_line(f"error: {message}")
    raise typer.Exit(code)


def stdout_line(text: str) -> None:
    """One line of results on stdout, flushed (a consumer piping --json sees each
    result as it is made). A reader that closed the pipe raises BrokenPipeError
    (main ends quietly); any other failure is one line naming stdout, exit 2."""
    if sys.stdout is None:  # started with stdout closed (`>&-`)
        fail("standard output: cannot write (it is closed)")
    try:
        sys.stdout.write(printable(text) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except (OSError, ValueError) as exc:  # ValueError: stdout closed inside Python
        fail(f"standard output: cannot write ({getattr(exc, 'strerror', None) or exc})")


def resolve_model(model: Path | str | None) -> Path:
    """`--model` (a path or a shipped model's name), or the shipped default model."""
    from speechlstm.runtime import ModelError
    from speechlstm.runtime import resolve_model as resolve

    try:
        return resolve(model)
    except ModelError as exc:
        fail(str(exc))


def load_recognizer(model: Path | str | None, threads: int) -> OnnxRecognizer:
    """The runtime recognizer for `--model` (or the default); a usage error if it is unusable."""
    return load_api_recognizer(model, threads).runtime


def load_api_recognizer(model: Path | str | None, threads: int) -> Recognizer:
    """The API's Recognizer for `--model` (or the default); a usage error if it is unusable."""
    from speechlstm.api import Recognizer
    from speechlstm.runtime import ModelError

    try:
        return Recognizer(model, threads=threads)
    except ModelError as exc:
        fail(str(exc))


def build_detector(
    models,
    threads: int,
    detector_file: Path | None,
    overrides: dict,
    verifier: Path | None = None,
    verifier_threshold: float | None = None,
    relabel: bool = False,
    sensitivity: float | None = None,
) -> Detector:
    """The API's Detector for `-m` (one, several or none: the default) with the
    command's settings; a usage error naming what is unusable."""
    from speechlstm.api import Detector
    from speechlstm.shipped_verifier import first_stage, pair_settings

    # A shipped verifier runs behind its own first stage unless -m names one.
    specs = [first_stage(verifier, m) for m in (models or [None])]
    recognizers = [load_api_recognizer(m, threads) for m in specs]
    # A shipped verifier brings the first stage's settings tuned for the pair.
    base = pair_settings(verifier)[0]
    if detector_file is not None:
        base = detector_settings(None, detector_file)
    try:
        return Detector(
            recognizers,
            detector_settings=base,
            verifier=[
                load_verifier(verifier, verifier_threshold, r.runtime, threads, relabel)
                for r in recognizers
            ],
            verifier_threshold=verifier_threshold,
            sensitivity=sensitivity,
            **overrides,
        )
    except ValueError as exc:  # settings out of range
        fail(str(exc))


def raw_input_format(raw: bool, rate: int, fmt: str, channels: int, source):
    """pcm.PcmFormat of --raw/--rate/--format/--channels (None without --raw); a
    usage error for a format that does not exist or settings given without --raw."""
    from speechlstm.pcm import raw_format

    if not raw:
        if rate != 16000 or fmt != "s16le" or channels != 1:
            fail("--rate, --format and --channels describe headerless PCM: add --raw")
        return None
    if source is None:
        fail("--raw describes the audio of --input (a file, a FIFO or - for standard input)")
    try:
        return raw_format(fmt, rate, channels)
    except ValueError as exc:
        fail(f"--format {exc}")


VERIFIER_HELP = (
    "A second model that rules on each detection: `sc12` (the shipped verifier, on the "
    "speech embedding of `pip install 'speechlstm[embedding]'`; brings its own first stage, "
    "sc12_mined unless -m names one, and the settings tuned for the pair), or a model file "
    "(`export` of a `train --frontend embedding` run). A detection is reported only if it "
    "hears the same command."
)
VERIFIER_THRESHOLD_HELP = "With --verifier: its probability needed for the command (0.5)."
DEFAULT_VERIFIER_THRESHOLD = 0.5


def finite(value):
    """A typer callback: NaN passes click's range checks (every comparison with it
    is false), so a float option refuses it here, at parse time."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


VERIFIER_RELABEL_HELP = (
    "With --verifier: report a detection the verifier hears as another command "
    "(at its threshold) as that command, instead of dropping it."
)


def load_verifier(
    path: Path | None,
    threshold: float | None,
    recognizer,
    threads: int = 1,
    relabel: bool = False,
):
    """The second stage for `--verifier` (None without one); a usage error if the
    model is unusable or cannot judge the detector's commands, and for a
    verifier setting given without a verifier (it would be recorded, not used)."""
    if path is None:
        for given, flag in ((relabel, "relabel"), (threshold, "threshold")):
            if given not in (None, False):
                fail(f"--verifier-{flag} needs --verifier")
        return None
    from speechlstm.detect.verify import Verifier, VerifierError
    from speechlstm.runtime import ModelError, OnnxRecognizer
    from speechlstm.shipped_verifier import pair_settings, resolve_verifier

    if threshold is None:
        threshold = pair_settings(path)[1] or DEFAULT_VERIFIER_THRESHOLD
    try:
        second = OnnxRecognizer(resolve_verifier(path), threads=threads)
        return Verifier(second, threshold, commands=recognizer.labels, relabel=relabel)
    except (ModelError, VerifierError) as exc:
        fail(f"--verifier {exc}")


SENSITIVITY_HELP = (
    "0 to 1: one of the operating points tuned with the model (0 the fewest false "
    "alarms, 1 the most commands; `speechlstm info` lists them). Default: the model's "
    "stored settings, its point at 1 false alarm an hour."
)


def sensitivity_option():
    return typer.Option(
        None, "--sensitivity", "-s", min=0.0, max=1.0, callback=finite, help=SENSITIVITY_HELP
    )


DETECTOR_FILE_HELP = (
    "A \\[detector] TOML (tune-detector --write) to use instead of the model's stored "
    "settings; the other flags still override it."
)


def detector_settings(recognizer, path: Path | None):
    """The detector settings a command starts from: `path`'s [detector] section,
    or the model's own; a usage error naming the file if it cannot be read."""
    if path is None:
        return recognizer.description.detector
    from speechlstm.config_text import load_detector_toml

    try:
        return load_detector_toml(path)
    except (OSError, ValueError) as exc:
        fail(f"--detector {path}: {exc}")


def require_training_side() -> None:
    """Usage error, not a traceback, when the train extra (torch) is not installed."""
    import importlib.util

    missing = []
    for name in ("torch", "torchaudio", "onnx"):
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:  # a finder that refuses the name outright
            found = False
        if not found:
            missing.append(name)
    if missing:
        fail(
            f"this command needs the training side ({', '.join(missing)} not installed): "
            "pip install 'speechlstm[train]'"
        )


# Options several commands share, defined once (typer reads each as a default).
RATE_OPTION = typer.Option(16000, "--rate", min=4000, max=384000, help="With --raw: Hz.")
FORMAT_OPTION = typer.Option("s16le", "--format", help="With --raw: s16le, f32le, s32le or u8.")
CHANNELS_OPTION = typer.Option(1, "--channels", min=1, max=64, help="With --raw: averaged.")
VERIFIER_THRESHOLD_OPTION = typer.Option(
    None,
    "--verifier-threshold",
    min=0.01,
    max=1.0,
    callback=finite,
    help=VERIFIER_THRESHOLD_HELP,
)
