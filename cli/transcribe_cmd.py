"""The `speechlstm` command line: parses and validates, then calls the library.

Inference commands (transcribe, info) never import torch; training commands
import it when they run.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .common import EXIT_SOME_FAILED, fail, stdout_line

app = typer.Typer(
    name="speechlstm",
    help="Speech command recognition: MFCC features + a bidirectional LSTM.\n\n"
    "Train with PyTorch (GPU when present), export to ONNX, run on the CPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _resolve_model(model: Path | None) -> Path:
    from speechlstm.runtime import default_model_path

    if model is not None:
        return model
    default = default_model_path()
    if default is None:
        fail(
            "no --model given and this install ships no default model; "
            "train one (`speechlstm train`) and export it (`speechlstm export`)"
        )
    return default


def _load_recognizer(model: Path | None, threads: int):
    from speechlstm.runtime import ModelError, OnnxRecognizer

    path = _resolve_model(model)
    try:
        return OnnxRecognizer(path, threads=threads)
    except ModelError as exc:
        fail(str(exc))


@app.command()
def transcribe(
    files: list[Path] = typer.Argument(..., help="Audio files (WAV, FLAC, OGG; any rate)."),
    model: Path | None = typer.Option(
        None, "--model", "-m", help="ONNX model; default: the shipped one."
    ),
    top_k: int = typer.Option(1, "--top-k", "-k", min=1, help="Show the K most likely labels."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    threshold: float = typer.Option(
        0.8,
        "--threshold",
        min=0.0,
        max=1.0,
        help="Long recordings: probability needed for a detection.",
    ),
    hop_ms: float = typer.Option(
        100.0, "--hop-ms", min=10.0, help="Long recordings: model step in ms."
    ),
    threads: int = typer.Option(1, "--threads", min=0, help="onnxruntime threads (0: all cores)."),
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
    """
    from speechlstm.stream import DetectorConfig, StreamingDetector
    from speechlstm.transcribe import transcribe_files

    recognizer = _load_recognizer(model, threads)
    detector = StreamingDetector(
        recognizer,
        DetectorConfig(hop_ms=hop_ms, threshold=threshold, smoothing_ms=max(300.0, hop_ms)),
    )
    failed = 0
    width = max(len(str(f)) for f in files)
    for result in transcribe_files(recognizer, files, k=top_k, detector=detector):
        if result.error is not None:
            failed += 1
            typer.echo(f"error: {result.path}: {result.error}", err=True)
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


@app.command()
def info(
    model: Path | None = typer.Argument(None, help="ONNX model; default: the shipped one."),
    as_json: bool = typer.Option(False, "--json", help="Print the metadata as JSON."),
) -> None:
    """Show a model's labels, feature settings, size and training recipe.

    Example:

      speechlstm info model.onnx
    """
    recognizer = _load_recognizer(model, threads=1)
    meta = recognizer.info
    if as_json:
        stdout_line(
            json.dumps(
                {
                    "path": str(meta.path),
                    "labels": list(meta.labels),
                    "features": meta.features,
                    "model": meta.model,
                    "training": meta.training,
                    "quantization": meta.quantization,
                    "size_bytes": meta.size_bytes,
                },
                indent=2,
            )
        )
        return
    f, m, t = meta.features, meta.model, meta.training
    lines = [
        f"model:     {meta.path} ({meta.size_bytes / 1e6:.2f} MB, {meta.quantization})",
        f"labels:    {', '.join(meta.labels)}",
        f"features:  {f['n_mfcc']} MFCC from {f['n_mels']} mels, {f['window_ms']} ms window, "
        f"{f['hop_ms']} ms hop, {f['sample_rate']} Hz, {f['clip_ms']} ms clips",
        f"network:   bidirectional {m['cell']}, {m['num_layers']} x {m['hidden_size']}, "
        + (f"{m['frame_stack']} frames a step, " if m.get("frame_stack", 1) > 1 else "")
        + f"{m['pooling']} pooling, {m.get('n_params') or '?'} parameters",
    ]
    if t:
        train = t.get("train", {})
        lines.append(
            f"trained:   {t.get('epochs_completed', '?')} epochs on {t.get('source', '?')} "
            f"(clips {t.get('clips', {})}), lr {train.get('lr', '?')}, "
            f"batch {train.get('batch_size', '?')}, seed {train.get('seed', '?')}"
        )
        lines.append(
            f"accuracy:  validation {t.get('best_val_accuracy', '?')}, "
            f"test {t.get('test_accuracy', '?')}"
        )
    for line in lines:
        stdout_line(line)


def _register_training_commands() -> None:
    from . import data_cmd, live_cmd, score_cmd, train_cmd

    app.command(name="live")(live_cmd.live)
    app.command(name="score")(score_cmd.score)
    app.command(name="evaluate")(score_cmd.evaluate)
    app.command(name="train")(train_cmd.train)
    app.command(name="export")(train_cmd.export)
    app.add_typer(data_cmd.app, name="data")


_register_training_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
