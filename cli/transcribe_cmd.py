"""`speechlstm transcribe` (files and long recordings) and `speechlstm info` (no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .common import (
    DETECTOR_FILE_HELP,
    EXIT_SOME_FAILED,
    MODEL_HELP,
    VERIFIER_CENTRE_HELP,
    VERIFIER_HELP,
    VERIFIER_RELABEL_HELP,
    VERIFIER_THRESHOLD_HELP,
    detector_settings,
    err_line,
    fail,
    load_recognizer,
    load_verifier,
    resolve_model,
    stdout_line,
)


def transcribe(
    files: list[Path] = typer.Argument(..., help="Audio files (WAV, FLAC, OGG; any rate)."),
    model: Path | None = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    top_k: int = typer.Option(1, "--top-k", "-k", min=1, help="Show the K most likely labels."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        min=0.0,
        max=1.0,
        help="Long recordings: probability needed for a detection, every label "
        "(default: the model's tuned values).",
    ),
    hop_ms: float | None = typer.Option(
        None,
        "--hop-ms",
        min=10.0,
        max=60000.0,
        help="Long recordings: model step in ms (default: the model's).",
    ),
    detector_file: Path | None = typer.Option(None, "--detector", help=DETECTOR_FILE_HELP),
    verifier: Path | None = typer.Option(None, "--verifier", help=VERIFIER_HELP),
    verifier_threshold: float = typer.Option(
        0.5, "--verifier-threshold", min=0.01, max=1.0, help=VERIFIER_THRESHOLD_HELP
    ),
    verifier_relabel: bool = typer.Option(False, "--verifier-relabel", help=VERIFIER_RELABEL_HELP),
    verifier_centre: bool = typer.Option(False, "--verifier-centre", help=VERIFIER_CENTRE_HELP),
    threads: int = typer.Option(
        1, "--threads", min=0, max=256, help="onnxruntime threads (0: all cores)."
    ),
) -> None:
    """Print the recognized command of each file, with its probability.

    A file longer than the model window (1 s) gets a timeline of the commands
    in it (start-end, label, confidence), found by the same streaming detector
    as `speechlstm live`. Unreadable files are reported and skipped; the exit
    code is then 1.

    Examples:

      speechlstm transcribe --model model.onnx yes.wav no.flac

      speechlstm transcribe -m model.onnx --top-k 3 --json clips/*.wav

      speechlstm transcribe long_recording.wav --threshold 0.7

      speechlstm transcribe long_recording.wav --verifier teacher.onnx
    """
    from speechlstm.stream import StreamingDetector
    from speechlstm.transcribe import transcribe_files

    recognizer = load_recognizer(model, threads)
    defaults = detector_settings(recognizer, detector_file)
    detector = StreamingDetector(
        recognizer,
        defaults.with_overrides(hop_ms=hop_ms, threshold=threshold),
        verifier=load_verifier(
            verifier, verifier_threshold, recognizer, threads, verifier_relabel, verifier_centre
        ),
    )
    failed = 0
    width = max(len(str(f)) for f in files)
    for result in transcribe_files(recognizer, files, k=top_k, detector=detector):
        if result.error is not None:
            failed += 1
            err_line(f"error: {result.path}: {result.error}")
        if as_json:
            stdout_line(json.dumps(result.to_json()))
        elif result.detections is not None:
            stdout_line(
                f"{result.path}  ({result.duration_s:.1f} s, {len(result.detections)} command(s))"
            )
            for d in result.detections:
                stdout_line(f"  {d.start_s:7.2f} - {d.end_s:7.2f} s  {d.label:<12} {d.score:.3f}")
        elif result.error is None:
            if top_k == 1:
                stdout_line(f"{result.path:<{width}}  {result.label}  {result.score:.3f}")
            else:
                tops = ", ".join(f"{lab} {s:.3f}" for lab, s in result.top)
                stdout_line(f"{result.path:<{width}}  {tops}")
    if failed:
        typer.echo(f"{failed} of {len(files)} file(s) could not be transcribed", err=True)
        raise typer.Exit(EXIT_SOME_FAILED)


def info(
    model: Path | None = typer.Argument(None, help=MODEL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the metadata as JSON."),
) -> None:
    """Show a model's labels, feature settings, size and training recipe.

    Example:

      speechlstm info model.onnx
    """
    from speechlstm.runtime import ModelError, read_model
    from speechlstm.settings import to_dict

    try:
        found = read_model(resolve_model(model))
    except ModelError as exc:
        fail(str(exc))
    d = found.description
    if as_json:
        stdout_line(
            json.dumps(
                {
                    "path": str(found.path),
                    "labels": list(d.labels),
                    "features": to_dict(d.features),
                    "model": {**to_dict(d.model), "n_params": d.n_params},
                    "detector": to_dict(d.detector),
                    "training": d.training.to_json(),
                    "quantization": d.quantization,
                    "frontend": {"name": d.frontend, "credit": d.frontend_credit},
                    "size_bytes": found.size_bytes,
                },
                indent=2,
            )
        )
        return
    f, m, t, det = d.features, d.model, d.training, d.detector
    lines = [
        f"model:     {found.path} ({found.size_bytes / 1e6:.2f} MB, {d.quantization})",
        f"labels:    {', '.join(d.labels)}",
        (
            f"features:  {f.n_mfcc} MFCC from {f.n_mels} mels, {f.window_ms} ms window, "
            f"{f.hop_ms} ms hop, {f.sample_rate} Hz, {f.clip_ms} ms clips"
            if d.frontend == "mfcc"
            else f"features:  speech embedding (16 frames of 96, one per 80 ms) of each "
            f"{f.clip_ms} ms clip centred in 2 s"
        ),
        f"network:   bidirectional {m.cell}, {m.num_layers} x {m.hidden_size}, "
        + (f"{m.frame_stack} frames a step, " if m.frame_stack > 1 else "")
        + f"{m.pooling} pooling, {d.n_params or '?'} parameters",
        f"detector:  threshold {det.threshold}, hop {det.hop_ms} ms, smoothing "
        f"{det.smoothing_ms} ms, refractory {det.refractory_ms} ms, "
        + (f"gate {det.gate_dbfs} dBFS" if det.gate else "no gate"),
    ]
    if d.frontend_credit:
        lines.append(f"licence:   {d.frontend_credit}")
    if det.thresholds:
        per_label = ", ".join(f"{label} {value}" for label, value in det.thresholds)
        lines.append(f"           per label: {per_label}")
    if t.source:
        lines.append(
            f"trained:   {t.epochs_completed} epochs on {t.source} "
            f"(clips {t.clips}), lr {t.train.lr}, "
            f"batch {t.train.batch_size}, seed {t.train.seed}"
        )
        lines.append(
            f"accuracy:  validation {_figure(t.best_val_accuracy)}, test {_figure(t.test_accuracy)}"
        )
    for line in lines:
        stdout_line(line)


def _figure(value: float | None) -> str:
    return "?" if value is None else f"{value:.4g}"
