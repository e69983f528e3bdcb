"""`speechlstm transcribe` (files and long recordings) and `speechlstm info` (no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .common import (
    CHANNELS_OPTION,
    DETECTOR_FILE_HELP,
    EXIT_SOME_FAILED,
    FORMAT_OPTION,
    MODEL_HELP,
    RATE_OPTION,
    RAW_OPTIONS_HELP,
    VERIFIER_HELP,
    VERIFIER_RELABEL_HELP,
    VERIFIER_THRESHOLD_OPTION,
    build_detector,
    err_line,
    fail,
    finite,
    raw_input_format,
    resolve_model,
    sensitivity_option,
    stdout_line,
)


def transcribe(
    files: list[str] = typer.Argument(
        ..., help="Audio files (WAV, FLAC, OGG; any rate), or - for standard input."
    ),
    model: str | None = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    top_k: int = typer.Option(1, "--top-k", "-k", min=1, help="Show the K most likely labels."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        callback=finite,
        min=0.0,
        max=1.0,
        help="Long recordings: probability needed for a detection, every label "
        "(default: the model's tuned values).",
    ),
    hop_ms: float | None = typer.Option(
        None,
        "--hop-ms",
        callback=finite,
        min=10.0,
        max=60000.0,
        help="Long recordings: model step in ms (default: the model's).",
    ),
    raw: bool = typer.Option(
        False, "--raw", help="Standard input is headerless PCM. " + RAW_OPTIONS_HELP
    ),
    rate: int = RATE_OPTION,
    sample_format: str = FORMAT_OPTION,
    channels: int = CHANNELS_OPTION,
    sensitivity: float | None = sensitivity_option(),
    detector_file: Path | None = typer.Option(None, "--detector", help=DETECTOR_FILE_HELP),
    verifier: Path | None = typer.Option(None, "--verifier", help=VERIFIER_HELP),
    verifier_threshold: float | None = VERIFIER_THRESHOLD_OPTION,
    verifier_relabel: bool = typer.Option(False, "--verifier-relabel", help=VERIFIER_RELABEL_HELP),
    threads: int = typer.Option(
        1, "--threads", min=0, max=256, help="onnxruntime threads (0: all cores)."
    ),
) -> None:
    """Print the recognized command of each file, with its probability.

    A file longer than the model window (1 s) gets a timeline of the commands
    in it (start-end, label, confidence), found by the same streaming detector
    as `speechlstm live`. `-` reads one clip or recording from standard input
    (a WAV stream, or headerless PCM with --raw). Unreadable files are reported
    and skipped; the exit code is then 1.

    Examples:

      speechlstm transcribe --model model.onnx yes.wav no.flac

      speechlstm transcribe -m model.onnx --top-k 3 --json clips/*.wav

      speechlstm transcribe long_recording.wav --threshold 0.7

      sox in.mp3 -t wav - | speechlstm transcribe -

      arecord -q -d 2 -r 16000 -f S16_LE -t raw | speechlstm transcribe - --raw
    """
    import os
    import sys

    from speechlstm import pcm

    raw_fmt = raw_input_format(raw, rate, sample_format, channels, "-" if "-" in files else None)
    if files.count(pcm.STDIN) > 1:
        fail("standard input (-) can be read once")
    if raw and pcm.STDIN not in files:
        fail("--raw describes standard input (-); files carry their own header")
    if pcm.STDIN in files and os.isatty(sys.stdin.fileno()):
        fail(
            "standard input is a terminal, not audio; pipe a recording in, e.g. "
            "`sox in.mp3 -t wav - | speechlstm transcribe -`"
        )
    detector = build_detector(
        [model],
        threads,
        detector_file,
        dict(hop_ms=hop_ms, threshold=threshold),
        verifier,
        verifier_threshold,
        verifier_relabel,
        sensitivity,
    )
    recognizer = detector.recognizers[0]
    failed = 0
    width = max(len(str(f)) for f in files)
    for name in files:
        if name == pcm.STDIN:
            blocks = pcm.pcm_blocks(name, raw_fmt, recognizer.sample_rate)
            result = recognizer.transcribe_stream(blocks, name, top_k, detector)
        else:
            result = recognizer.transcribe_file(name, top_k, detector)
        if result.error is not None:
            failed += 1
            err_line(f"error: {pcm.display_name(result.path)}: {result.error}")
        if as_json:
            stdout_line(json.dumps(result.to_json()))
        elif result.detections is not None:
            duration = "" if result.duration_s is None else f"{result.duration_s:.1f} s, "
            stdout_line(f"{result.path}  ({duration}{len(result.detections)} command(s))")
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
    model: str | None = typer.Argument(None, help=MODEL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the metadata as JSON."),
    verifier: str | None = typer.Option(
        None,
        "--verifier",
        help="Describe a verifier instead: `sc12` (the shipped one, composed with the "
        "installed speech embedding) or a model file.",
    ),
) -> None:
    """Show a model's labels, feature settings, size and training recipe.

    Examples:

      speechlstm info model.onnx

      speechlstm info --verifier sc12
    """
    from speechlstm.config_text import to_dict
    from speechlstm.runtime import ModelError, read_model

    if verifier is not None and model is not None:
        fail("give a model or --verifier, not both")
    try:
        if verifier is not None:
            from speechlstm.shipped_verifier import resolve_verifier

            found = read_model(resolve_verifier(verifier))
        else:
            found = read_model(resolve_model(model))
    except ModelError as exc:
        fail(str(exc))
    d = found.description
    from speechlstm.shipped_verifier import first_stage

    pair_first = first_stage(verifier, None) if verifier is not None else None
    if as_json:
        pair = {"first_stage": pair_first} if pair_first else {}
        stdout_line(
            json.dumps(
                {
                    **pair,
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
    if pair_first:
        lines.append(
            f"pair:      runs behind {pair_first} (`speechlstm info {pair_first}`) unless -m "
            "names a model; the points below are the pair's"
        )
    if det.thresholds:
        per_label = ", ".join(f"{label} {value}" for label, value in det.thresholds)
        lines.append(f"           per label: {per_label}")
    if verifier is not None:  # a shipped verifier's pair: the first stage's settings with it
        from speechlstm.shipped_verifier import pair_settings

        det = pair_settings(verifier)[0] or det
    lines += points_lines(det)
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


def points_lines(det) -> list[str]:
    """The operating points `--sensitivity` chooses from, as `info` lists them."""
    if not det.points:
        return []
    n = len(det.points)
    out = ["points:    --sensitivity: false alarms an hour, share of commands caught and "
           "median latency on the validation streams"]  # fmt: skip
    for i, p in enumerate(det.points):
        sens = i / (n - 1) if n > 1 else 0.0
        second = f", verifier {p.verifier_threshold}" if p.verifier_threshold else ""
        per_label = f" (+{len(p.thresholds)} per label)" if p.thresholds else ""
        out.append(
            f"           {sens:.1f}: {p.false_per_hour:g}/h, {p.matched:.3f} matched, "
            f"{p.latency_median_ms:.0f} ms (tuned for <= {p.max_false_per_hour:g}/h; "
            f"threshold {p.threshold}{per_label}, smoothing {p.smoothing_ms:.0f} ms{second})"
        )
    return out


def _figure(value: float | None) -> str:
    return "?" if value is None else f"{value:.4g}"
