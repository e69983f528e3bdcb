"""`speechlstm tune-detector` and `speechlstm store-detector`: choose a model's streaming
detector settings, and store them in a model already exported (no torch)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer

from .common import (
    MODEL_HELP,
    VERIFIER_HELP,
    VERIFIER_RELABEL_HELP,
    VERIFIER_THRESHOLD_OPTION,
    err_line,
    fail,
    finite,
    load_recognizer,
    load_verifier,
    stdout_line,
)

# The second stage's thresholds the operating points of a cascade are searched over.
VERIFIER_POINT_THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95)


def point_line(point) -> str:
    """One operating point as `tune-detector` and `info` print it."""
    second = f", verifier {point.verifier_threshold}" if point.verifier_threshold else ""
    per_label = f" (+{len(point.thresholds)} per label)" if point.thresholds else ""
    return (
        f"  point <= {point.max_false_per_hour:g}/h: threshold {point.threshold}{per_label}, "
        f"smoothing {point.smoothing_ms:.0f} ms{second} -> matched {point.matched:.3f}, "
        f"{point.false_per_hour:g} false/h, latency {point.latency_median_ms:.0f} ms"
    )


def _is_detector_toml(path: Path) -> bool:
    from speechlstm.files import FileRefused, read_capped

    try:
        return read_capped(path, 1 << 20, "detector file").startswith(b"[detector]")
    except FileRefused:
        return False


def tune_detector(
    commands: Path = typer.Option(
        ..., "--commands", help="A recording of spoken commands (noise and other words between)."
    ),
    truth: Path = typer.Option(
        ..., "--truth", help="CSV with a header: label,start_s,end_s of each command in it."
    ),
    negatives: list[Path] = typer.Option(
        ...,
        "--negatives",
        help="Audio with no command in it: noise, other speech (repeatable; an hour or more "
        "resolves 1 false alarm an hour).",
    ),
    model: Path | None = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    max_false_per_hour: float = typer.Option(
        1.0,
        "--max-false-per-hour",
        callback=finite,
        min=0.0,
        help="False alarms allowed an hour of negatives.",
    ),
    max_latency_ms: float = typer.Option(
        300.0,
        "--max-latency-ms",
        callback=finite,
        min=0.0,
        help="Median latency allowed from a word's end.",
    ),
    write: Path | None = typer.Option(
        None, "--write", help="Write the chosen settings as a [detector] TOML (for export)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace --write or --plot even if it is not ours."
    ),
    as_json: bool = typer.Option(False, "--json", help="The result as one JSON object."),
    plot: Path | None = typer.Option(
        None,
        "--plot",
        help="Draw the DET curve (commands matched against false alarms an hour, every "
        "setting tried, the chosen one marked) as a PNG here.",
    ),
    verifier: Path | None = typer.Option(
        None, "--verifier", help=VERIFIER_HELP + " Tune the first stage for it."
    ),
    verifier_threshold: float | None = VERIFIER_THRESHOLD_OPTION,
    verifier_relabel: bool = typer.Option(False, "--verifier-relabel", help=VERIFIER_RELABEL_HELP),
) -> None:
    """Choose the detector settings that catch the most commands within a false-alarm
    budget, on your own labelled recordings; store them in a model with
    `store-detector` (or `export --detector` when exporting a checkpoint).

    The smoothing span and a threshold (global, then per label, at most 0.05
    lower and only where it adds no false alarm) are searched; the detector's
    inputs are recorded once per span and every threshold replayed over them.

    Examples:

      speechlstm tune-detector -m my.onnx --commands session.wav --truth session.csv \\
          --negatives kitchen.wav --negatives radio.flac --write my.detector.toml

      speechlstm store-detector my.onnx my.detector.toml -o my.tuned.onnx

      speechlstm export runs/my/best.pt -o my.int8.onnx --int8 --detector my.detector.toml

    With --verifier, each candidate is judged by the second model as `live
    --verifier` judges it, so the thresholds found are for the two together.
    """
    from speechlstm.audio import InvalidAudio
    from speechlstm.config_text import to_dict
    from speechlstm.detect.labelled import LabelledStreams, read_truth
    from speechlstm.detect.tuning import POINT_BUDGETS, Tuner, detector_toml
    from speechlstm.files import FileRefused, check_output, write_atomic
    from speechlstm.progress import progress_bar
    from speechlstm.shipped_verifier import first_stage

    # As live runs it: a shipped verifier behind its own first stage unless -m names one.
    recognizer = load_recognizer(first_stage(verifier, model), threads=1)
    from speechlstm.plots import is_our_png

    try:
        if write is not None:
            check_output(write, _is_detector_toml, force, what="detector file")
        if plot is not None:  # before the work, like --write: a plot we did not draw stays
            check_output(plot, is_our_png, force, what="plot")
    except FileRefused as exc:
        fail(str(exc))
    try:
        truth_rows = read_truth(truth)
        # Files are read block by block, never whole: hours of negatives fit.
        streams = LabelledStreams(
            commands, truth_rows, list(negatives), rate_hz=recognizer.sample_rate
        )
    except (InvalidAudio, ValueError) as exc:
        fail(str(exc))
    known = set(recognizer.labels)
    unknown = sorted({t["label"] for t in truth_rows} - known)
    if unknown:
        fail(f"{truth}: labels {unknown} are not the model's ({', '.join(recognizer.labels)})")
    stream_s = streams.recording.samples / recognizer.sample_rate
    late = [t for t in truth_rows if t["end_s"] > stream_s + 0.5]
    if late:
        hint = " (they look like milliseconds)" if late[0]["end_s"] > 1000 * stream_s / 2 else ""
        fail(
            f"{truth}: {len(late)} commands end after the recording's {stream_s:.1f} s, "
            f"the first at {late[0]['end_s']} s{hint}"
        )
    if streams.negative_hours < 0.25:
        err_line(
            f"note: {streams.negative_hours * 60:.0f} minutes of negatives resolve about "
            f"{1 / streams.negative_hours:.0f} false alarms an hour at best"
        )
    base = recognizer.description.detector
    verify = None
    second = load_verifier(verifier, verifier_threshold, recognizer, relabel=verifier_relabel)
    if second is not None:
        from speechlstm.detect.cascade import rulings

        verify = rulings(second, streams)
    total_s = round(stream_s + streams.negative_hours * 3600)
    try:
        with progress_bar("tuning (audio seconds)", total_s, unit="s") as advance:
            tuner = Tuner(recognizer, base, streams, verify, advance)
    except InvalidAudio as exc:
        fail(str(exc))
    cfg, row = tuner.search(max_false_per_hour, max_latency_ms)
    # The points along the DET curve `--sensitivity` chooses from; with a second
    # stage each is the best over the verifier thresholds too.
    vthresholds = () if second is None else VERIFIER_POINT_THRESHOLDS
    cfg = dataclasses.replace(cfg, points=tuner.points(max_latency_ms, POINT_BUDGETS, vthresholds))
    trace = tuner.trace
    detector = to_dict(cfg)
    detector["thresholds"] = dict(cfg.thresholds)
    for point in detector["points"]:
        point["thresholds"] = dict(point["thresholds"])
    result = {"detector": detector, **row}
    if as_json:
        stdout_line(json.dumps(result))
    else:
        stdout_line(
            f"threshold {cfg.threshold}, smoothing {cfg.smoothing_ms:.0f} ms"
            + (
                ", per label " + ", ".join(f"{k} {v}" for k, v in cfg.thresholds)
                if cfg.thresholds
                else ""
            )
        )
        stdout_line(
            f"matched {row['matched']:.3f} of {row['commands']} commands, wrong label "
            f"{row['wrong_label']:.3f}, {row['false_per_hour']} false alarms an hour, "
            f"latency median {row['latency_median_ms']:.0f} ms"
        )
        for point in cfg.points:
            stdout_line(point_line(point))
    if row["budget"] == "none":
        err_line(
            f"note: no setting matched a command within {max_false_per_hour} false alarms "
            "an hour; these are the strictest"
        )
    elif row["budget"] == "false_alarms":
        err_line(
            f"note: no setting met a {max_latency_ms:.0f} ms median latency within "
            f"{max_false_per_hour} false alarms an hour; these match the most commands "
            f"within the false alarms (median {row['latency_median_ms']:.0f} ms)"
        )
    if plot is not None:
        from speechlstm.plots import plot_det

        try:
            plot_det(
                trace,
                row,
                plot,
                title=f"{recognizer.file.path.name}: detector settings",
                points=cfg.points,
            )
        except (OSError, ValueError) as exc:
            fail(f"{plot}: cannot write ({getattr(exc, 'strerror', None) or exc})")
        err_line(f"wrote the DET curve to {plot}")
    if write is not None:
        try:
            write_atomic(write, detector_toml(cfg))
        except OSError as exc:
            fail(f"{write}: cannot write ({exc.strerror or exc})")
        err_line(
            f"wrote {write}; use it with `live`/`transcribe --detector {write}`, or store it "
            f"in a model: speechlstm store-detector MODEL.onnx {write} -o NEW.onnx"
        )


def store_detector(
    model: Path = typer.Argument(..., help="An exported model (.onnx) from `speechlstm export`."),
    detector: Path = typer.Argument(
        ...,
        help="TOML with a \\[detector] section (speechlstm tune-detector --write writes one; "
        "a run's config.toml has one).",
    ),
    output: Path = typer.Option(..., "--output", "-o", help="ONNX file to write."),
    force: bool = typer.Option(
        False, "--force", help="Replace --output even if it is not a file speechlstm wrote."
    ),
) -> None:
    """Write an exported model with other stored detector settings: the streaming
    detector's defaults (what `live` runs with no flag).

    For a model whose checkpoint is gone (a model someone shared; the shipped
    one). Only the stored settings change: the graph and its weights are copied
    as they are, so every answer on clips stays the same. The input is never
    replaced; no checkpoint or torch is needed.

    Examples:

      speechlstm store-detector model.onnx tuned.toml -o tuned.onnx

      speechlstm tune-detector -m model.onnx --commands s.wav --truth s.csv \\
          --negatives kitchen.wav --write tuned.toml
    """
    from speechlstm.config_text import load_detector_toml
    from speechlstm.store_detector import StoreError
    from speechlstm.store_detector import store_detector as do_store

    try:
        tuned = load_detector_toml(detector)
        written = do_store(model, output, tuned, force=force)
    except (StoreError, ValueError, OSError) as exc:
        fail(str(exc))
    cfg = written.detector
    per_label = ", ".join(f"{k} {v}" for k, v in cfg.thresholds)
    stdout_line(
        f"wrote {output}: {model} with the detector of {detector} (threshold "
        f"{cfg.threshold}, smoothing {cfg.smoothing_ms:.0f} ms"
        + (f", per label {per_label}" if per_label else "")
        + ")"
    )
