"""`speechlstm train`, `speechlstm export` and `speechlstm export-encoder`: the torch
side, imported when they run."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import (
    EXIT_INTERRUPTED,
    EXIT_SOME_FAILED,
    err_line,
    fail,
    require_training_side,
    stdout_line,
)


def train(
    data: Path = typer.Argument(
        ..., help="Dataset: Speech Commands folder, folder-per-label tree, or CSV manifest."
    ),
    out: Path = typer.Option(
        Path("runs/latest"), "--out", "-o", help="Run folder for checkpoints and reports."
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="TOML file of settings (see README)."
    ),
    task: str | None = typer.Option(None, "--task", help="sc12 | all | auto (default auto)."),
    words: str | None = typer.Option(
        None, "--words", help="Comma-separated words (+ _unknown_, _silence_)."
    ),
    epochs: int | None = typer.Option(None, "--epochs", min=1),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1),
    lr: float | None = typer.Option(None, "--lr", min=0.0),
    cell: str | None = typer.Option(
        None,
        "--cell",
        help="Recurrent cell, bidirectional: lstm (fused, default) | peephole | coupled | "
        "gru | rnn.",
    ),
    hidden: int | None = typer.Option(
        None, "--hidden", min=1, help="Recurrent units per direction."
    ),
    grad_clip: float | None = typer.Option(
        None, "--grad-clip", min=0.0, help="Max global gradient norm (0 disables; default 5)."
    ),
    layers: int | None = typer.Option(None, "--layers", min=1),
    pooling: str | None = typer.Option(None, "--pooling", help="attention | mean"),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N"),
    seed: int | None = typer.Option(None, "--seed"),
    threads: int | None = typer.Option(
        None,
        "--threads",
        min=0,
        max=256,
        help="CPU threads for torch (0: the cores free now, re-measured each epoch).",
    ),
    noise: Path | None = typer.Option(
        None, "--noise", help="Folder of background-noise recordings."
    ),
    add: list[Path] = typer.Option(
        [],
        "--add",
        help="Extra training data (synthesized speech, own recordings; repeatable): "
        "training split only, validation and test stay the primary dataset's.",
    ),
    from_scratch: bool = typer.Option(
        False,
        "--from-scratch",
        help="Start from random weights, not the shipped pretrained encoder.",
    ),
    encoder: Path | None = typer.Option(
        None,
        "--encoder",
        help="Start from this pretrained encoder (.safetensors, `speechlstm "
        "export-encoder`) instead of the shipped one.",
    ),
    settings: list[str] = typer.Option(
        [], "--set", help="Any setting: --set model.dropout=0.3 (repeatable)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from last.pt."),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Decoded-audio cache (default ~/.cache/speechlstm)."
    ),
    no_cache: bool = typer.Option(
        False, "--no-cache", help="Decode without reading or writing the cache."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="Also print each epoch's gradient norm per layer (always in metrics.json).",
    ),
    force: bool = typer.Option(
        False, "--force", help="Start a new run even if --out holds another run's files."
    ),
    frontend: str = typer.Option(
        "mfcc",
        "--frontend",
        help="mfcc: the recognizer (MFCC -> BiLSTM). embedding: the embedding model, "
        "Google's pretrained speech embedding (openwakeword 0.4.0's files) plus a BiLSTM "
        "head, trained on the clips and embedding.copies (3) augmented copies of each, "
        "drawn with [augment] (recipes/embedding.recipe.toml holds the measured one); "
        "its settings are [embedding], and --epochs, --batch-size, --lr and --hidden set "
        "them. Writes teacher.safetensors: `export DIR` makes it a model, and "
        "--set train.teacher=DIR/teacher.safetensors distils from it.",
    ),
) -> None:
    """Train a recognizer and write best.pt, last.pt, metrics.json and plots to --out.

    Settings come from the defaults, then --config, then --set, then the named
    flags. The resolved config is saved as config.toml in the run folder.
    A run starts from the shipped pretrained speech encoder (a BiLSTM trained
    on real and synthesized speech of many words) and adopts its shape, unless
    --from-scratch, another shape, or train.encoder = "none" in the config.
    Each epoch shows a progress bar and one summary line on stderr.
    Ctrl-C saves last.pt; --resume continues to the same result (it may change
    only --device, --threads and train.patience: `--resume --set
    train.patience=0` trains an early-stopped run on to its last epoch).

    Examples:

      speechlstm train data/speech_commands --out runs/sc12

      speechlstm train data/mywords --words "lights on,lights off" --epochs 20

      speechlstm train data/mywords --from-scratch --out runs/scratch

      speechlstm train data/sc --config recipe.toml --set model.hidden_size=192

      speechlstm train data/sc --cell gru --out runs/gru

      speechlstm train data/sc --add data/synth_sc12 --add data/mine --out runs/mixed

      torchrun --nproc-per-node 2 -m speechlstm train data/sc --out runs/ddp

      speechlstm train data/sc --frontend embedding --config recipes/embedding.recipe.toml
      --out runs/embedding

      speechlstm train data/sc --set train.teacher=runs/embedding/teacher.safetensors
    """
    require_training_side()
    import torch

    from speechlstm.config_text import given_settings, layered_config
    from speechlstm.data.bank import default_cache_dir
    from speechlstm.data.datasets import DatasetError
    from speechlstm.train import distributed
    from speechlstm.train.run import run_training
    from speechlstm.train.trainer import TrainingInterrupted

    if frontend not in ("mfcc", "embedding"):
        fail(f"--frontend {frontend!r}: choose mfcc or embedding")
    # --epochs, --batch-size, --lr and --hidden set the model that trains: the
    # MFCC model's [train] and [model], or the embedding model's [embedding].
    opt, size = ("embedding", "embedding") if frontend == "embedding" else ("train", "model")
    flags = {
        "data.task": task,
        "data.words": words,
        f"{opt}.epochs": epochs,
        f"{opt}.batch_size": batch_size,
        f"{opt}.lr": lr,
        "model.cell": cell,
        f"{size}.hidden_size": hidden,
        "train.grad_clip": grad_clip,
        "model.num_layers": layers,
        "model.pooling": pooling,
        "train.device": device,
        "train.seed": seed,
        "train.threads": threads,
        "data.extra": [str(p) for p in add] or None,
        "train.encoder": "none" if from_scratch else (str(encoder) if encoder else None),
    }
    if from_scratch and encoder:
        fail("--from-scratch and --encoder: choose one")
    try:
        cfg = layered_config(_base_config(out, resume, frontend), config, settings, flags, resume)
    except ValueError as exc:
        fail(str(exc))
    if frontend == "embedding":
        # The embedding model has its own head: an MFCC model's flags would be
        # recorded in config.toml and never used.
        unused = [
            flag
            for flag, value in (
                ("--cell", cell),
                ("--layers", layers),
                ("--pooling", pooling),
                ("--grad-clip", grad_clip),
                ("--encoder", encoder),
                ("--from-scratch", from_scratch or None),
            )
            if value is not None
        ]
        if unused:
            fail(f"--frontend embedding has no use for {', '.join(unused)}: leave them out")
    try:
        _check_frontend_settings(frontend, given_settings(settings, flags))
    except ValueError as exc:
        fail(str(exc))
    cache = None if no_cache else (cache_dir or default_cache_dir())
    if frontend == "embedding":
        _train_embedding_model(data, out, cfg, resume, noise, cache, progress)
        return
    try:
        # Under torchrun: join the process group (NCCL on GPUs, gloo on CPU).
        ranks = distributed.Ranks.from_env()
        gpu = cfg.train.device != "cpu" and torch.cuda.is_available()
        distributed.start(ranks, "cuda" if gpu else "cpu")
        report = run_training(
            data,
            out,
            cfg,
            resume=resume,
            noise_dir=noise,
            cache_dir=cache,
            show_progress=None if progress else False,
            verbose=verbose,
            ranks=ranks,
            force=force,
            resume_settings=given_settings(settings, flags) if resume else None,
        )
    except TrainingInterrupted as exc:
        fail(str(exc), EXIT_INTERRUPTED)
    except (ValueError, DatasetError, OSError) as exc:
        fail(str(exc))
    finally:
        distributed.stop()
    if not ranks.main:
        return  # rank 0 reports
    stdout_line(
        f"test accuracy {report['test_accuracy']:.4f} on {report['test_clips']} clips "
        f"(best validation {report['best_val_accuracy']:.4f} at epoch {report['best_epoch']})"
    )
    stdout_line(f"wrote {out}/best.pt, last.pt, metrics.json, curves.png, confusion.png")
    skipped = report.get("skipped_files") or {}
    if skipped:
        path, reason = next(iter(skipped.items()))
        err_line(
            f"{len(skipped)} file(s) could not be decoded and were left out, e.g. {path}: "
            f"{reason} (all in {out}/metrics.json, skipped_files)"
        )
        raise typer.Exit(EXIT_SOME_FAILED)


def export(
    checkpoint: Path = typer.Argument(
        ...,
        help="A checkpoint from `speechlstm train` (best.pt), or the folder of a "
        "`train --frontend embedding` run.",
    ),
    output: Path = typer.Option(..., "--output", "-o", help="ONNX file to write."),
    int8: bool = typer.Option(False, "--int8", help="Dynamic int8 quantization (smaller, faster)."),
    detector: Path | None = typer.Option(
        None,
        "--detector",
        help="TOML with a \\[detector] section: the streaming defaults to store in the model "
        "(speechlstm tune-detector --write writes one); default: the training config's.",
    ),
    as_encoder: bool = typer.Option(False, "--as-encoder", hidden=True),
    force: bool = typer.Option(
        False, "--force", help="Replace --output even if it is not a file speechlstm wrote."
    ),
    calibrate: bool = typer.Option(
        False,
        "--calibrate",
        help="Fit a temperature on the run's validation clips so probabilities mean what "
        "they say (tune the detector afterwards: thresholds move).",
    ),
) -> None:
    """Export a checkpoint to a self-describing ONNX model (waveform in, probabilities out).

    The model is checked against PyTorch after writing (max difference 1e-4;
    with --int8, top-1 agreement with fp32 on 99% of a probe set). Other
    detector settings for a model already exported: `speechlstm store-detector`;
    a run's encoder for `train --encoder`: `speechlstm export-encoder`.

    Examples:

      speechlstm export runs/sc12/best.pt -o sc12.onnx

      speechlstm export runs/sc12/best.pt -o sc12.int8.onnx --int8

      speechlstm export runs/sc12/best.pt -o sc12.int8.onnx --int8 --detector tuned.toml

      speechlstm export runs/teacher -o teacher.onnx   (a `train --frontend embedding` run:
      the speech-embedding front-end in the model, fp32; see its licence in `info`)
    """
    _refuse_moved_forms(checkpoint, output, detector, as_encoder)
    require_training_side()
    from speechlstm.config_text import load_detector_toml
    from speechlstm.train.checkpoint import CheckpointError
    from speechlstm.train.export import ExportError
    from speechlstm.train.export import export as do_export
    from speechlstm.train.frontend_export import teacher_path

    if teacher_path(checkpoint) is not None:
        _export_embedding(checkpoint, output, int8, detector, force, calibrate)
        return

    try:
        tuned = load_detector_toml(detector) if detector is not None else None
        result = do_export(
            checkpoint, output, int8=int8, detector=tuned, force=force, calibrate=calibrate
        )
    except (CheckpointError, ExportError, ValueError) as exc:
        fail(str(exc))
    parts = [
        f"wrote {result.path} ({result.size_bytes / 1e6:.2f} MB)",
        f"max |onnx - torch| {result.max_abs_diff:.1e}",
    ]
    if result.int8_agreement is not None:
        parts.append(f"int8 top-1 agreement {result.int8_agreement:.1%}")
    if result.calibration is not None:
        c = result.calibration
        parts.append(
            f"temperature {c.temperature} (validation NLL {c.nll_before:.3f} -> "
            f"{c.nll_after:.3f}, {c.clips} clips)"
        )
    stdout_line("; ".join(parts))


def _refuse_moved_forms(checkpoint: Path, output: Path, detector, as_encoder: bool) -> None:
    """export once also wrote encoders and restored detectors; each has its own
    command now, and the old form names it, with its arguments (before torch is
    asked for: the store needs none)."""
    if as_encoder:
        fail(
            "export --as-encoder is now its own command: "
            f"speechlstm export-encoder {checkpoint} -o {output}"
        )
    if checkpoint.suffix.lower() == ".onnx":
        fail(
            f"{checkpoint} is an exported model; to store other detector settings in it: "
            f"speechlstm store-detector {checkpoint} {detector or 'DETECTOR.toml'} -o {output}"
        )


def export_encoder(
    checkpoint: Path = typer.Argument(
        ..., help="A checkpoint from `speechlstm train` (best.pt) of an MFCC run."
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Encoder file to write (.safetensors)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace --output even if it is not an encoder speechlstm wrote."
    ),
) -> None:
    """Write a run's pretrained encoder (everything but its last layer) for `train --encoder`.

    The file is safetensors, fp16, with the feature and model settings in its
    header; a run started from it adopts them (make encoder builds the shipped
    one this way).

    Examples:

      speechlstm export-encoder runs/encoder/best.pt -o encoder.safetensors

      speechlstm train data/mywords --encoder encoder.safetensors --out runs/mywords
    """
    require_training_side()
    from speechlstm.train.checkpoint import CheckpointError
    from speechlstm.train.encoder import EncoderError
    from speechlstm.train.encoder import export_encoder as do_export_encoder

    try:
        path = do_export_encoder(checkpoint, output, force=force)
    except (CheckpointError, EncoderError, OSError) as exc:
        fail(str(exc))
    stdout_line(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): the encoder of {checkpoint}")


def _base_config(out: Path, resume: bool, frontend: str):
    """What a run's settings are layered on: the defaults, or on --resume the
    run's own, from its last.pt (an embedding-model run does not resume: it is
    refused after the settings, as before)."""
    from speechlstm.config import RunConfig

    if not resume or frontend != "mfcc":
        return RunConfig()

    def saved() -> RunConfig:
        from speechlstm.train.checkpoint import load

        return load(out / "last.pt", resumable=True).config

    return saved


# The settings a run of each front-end reads from a command line (section ->
# its keys, None: all): another is refused by name rather than recorded unused.
_FRONTEND_SETTINGS = {
    "mfcc": {"features": None, "model": None, "augment": None, "train": None, "data": None,
             "detector": None},
    "embedding": {"features": None, "augment": None, "data": None, "embedding": None,
                  "train": ("seed", "device", "threads")},
}  # fmt: skip


def _check_frontend_settings(frontend: str, given: dict) -> None:
    """ValueError naming a --set item (or flag) the front-end's model never reads."""
    from speechlstm.config_text import RENAMED_SETTINGS

    used = _FRONTEND_SETTINGS[frontend]
    for dotted in given:
        dotted = RENAMED_SETTINGS.get(dotted, dotted)
        section, _, key = dotted.partition(".")
        if section not in used or used[section] is None or key in used[section]:
            continue  # an unknown section is layered_config's to refuse
        raise ValueError(
            f"--frontend {frontend} does not use {dotted}"
            + (f"; the embedding model's settings are [embedding] (embedding.{key})"
               if frontend == "embedding" else "; [embedding] is the embedding model's")
        )  # fmt: skip
    if frontend == "mfcc" and any(k.startswith("embedding.") for k in given):
        first = next(k for k in given if k.startswith("embedding."))
        raise ValueError(
            f"{first} is a setting of the embedding model (--frontend embedding); "
            "an MFCC run does not read it"
        )


def _train_embedding_model(data, out, cfg, resume, noise, cache, progress):
    """`train --frontend embedding`: the embedding model (speechlstm/train/embedding_model/)."""
    from speechlstm.data.datasets import DatasetError
    from speechlstm.train.embedding import EmbeddingUnavailable
    from speechlstm.train.embedding_model.model_file import MODEL_FILE
    from speechlstm.train.run import run_embedding_model

    if resume:
        fail(
            "--resume: an embedding-model run is short and its embeddings are cached; "
            "start it again"
        )
    try:
        report = run_embedding_model(
            data,
            out,
            cfg,
            noise_dir=noise,
            cache_dir=cache,
            show_progress=None if progress else False,
        )
    except KeyboardInterrupt:
        fail(
            "interrupted; the embeddings computed so far are cached: run it again", EXIT_INTERRUPTED
        )
    except (ValueError, DatasetError, OSError, EmbeddingUnavailable) as exc:
        fail(str(exc))
    stdout_line(
        f"embedding model test accuracy {report['test_accuracy']:.4f} on "
        f"{report['test_clips']} clips (best validation {report['best_val_accuracy']:.4f} "
        f"at epoch {report['best_epoch']})"
    )
    stdout_line(f"wrote {out}/{MODEL_FILE}, metrics.json, config.toml")


def _export_embedding(run: Path, output: Path, int8, detector, force, calibrate) -> None:
    """`export` of a `train --frontend embedding` run: one ONNX model with the
    speech embedding inside (speechlstm/train/frontend_export.py)."""
    from speechlstm.config_text import load_detector_toml
    from speechlstm.train.embedding import EmbeddingUnavailable
    from speechlstm.train.export import ExportError
    from speechlstm.train.frontend_export import export_embedding

    if int8 or calibrate:
        fail(
            f"{run}: an embedding-front-end model is exported fp32 and uncalibrated; "
            "leave out --int8 and --calibrate"
        )
    try:
        tuned = load_detector_toml(detector) if detector is not None else None
        result = export_embedding(run, output, detector=tuned, force=force)
    except (ExportError, EmbeddingUnavailable, ValueError, OSError) as exc:
        fail(str(exc))
    stdout_line(
        f"wrote {result.path} ({result.size_bytes / 1e6:.2f} MB), speech-embedding "
        f"front-end; max |onnx - teacher| {result.max_abs_diff:.1e}. It carries the "
        "embedding's weights: see `speechlstm info` for their source and terms"
    )
