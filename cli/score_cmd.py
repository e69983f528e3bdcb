"""`speechlstm score` and `speechlstm evaluate`: batch inference and reports (no torch)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import typer

from .common import EXIT_SOME_FAILED, MODEL_HELP, err_line, fail, load_recognizer, stdout_line

# score_paths runs max(--workers, --threads) threads, each decoding and scoring
# its own files with a model session of its own.
THREADS_HELP = "threads that decode and score at once, one core each"
WORKERS_HELP = "At least this many threads (more can help slow FLAC/OGG decoding)."


def score(
    inputs: list[str] = typer.Argument(..., help="Files, folders (recursive), globs, list files."),
    model: Path | None = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output file (default: stdout)."),
    fmt: str = typer.Option("csv", "--format", "-f", help="csv | jsonl"),
    resume: bool = typer.Option(
        False, "--resume", help="Append to --out, skip files already in it."
    ),
    top_k: int = typer.Option(3, "--top-k", "-k", min=1),
    batch_size: int = typer.Option(
        32, "--batch-size", min=1, max=4096, help="Files a thread takes at a time."
    ),
    workers: int = typer.Option(1, "--workers", min=1, max=256, help=WORKERS_HELP),
    threads: int = typer.Option(
        0, "--threads", min=0, max=256, help=THREADS_HELP + " (0, the default: all cores)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    shard: str | None = typer.Option(
        None,
        "--shard",
        help="K/N: score only shard K (0..N-1) of the inputs, chosen by a hash of each "
        "path (stable when the list is reordered or extended).",
    ),
    merge: bool = typer.Option(
        False, "--merge", help="INPUTS are the parts of a sharded run: join them into --out."
    ),
) -> None:
    """Score many files: one row per file (path, label, score, top-k, duration, error).

    Rows are flushed as written; --resume continues an interrupted run without
    duplicating or losing rows. Unreadable files get an error row; the exit
    code is then 1. On a cluster, each task scores one --shard and --merge
    joins the parts, refusing missing, unfinished or overlapping shards.

    Examples:

      speechlstm score recordings/ --out results.csv

      speechlstm score 'logs/**/*.wav' files.txt -m model.int8.onnx -f jsonl -o r.jsonl --resume

      speechlstm score corpus.txt --shard $TASK/16 --out part-$TASK.csv

      speechlstm score --merge part-*.csv --out all.csv
    """
    from speechlstm import shards
    from speechlstm.outputs import OutputError
    from speechlstm.progress import progress_bar
    from speechlstm.scoring import (
        RowWriter,
        ScoredPaths,
        done_paths,
        iter_inputs,
        score_paths,
        usable_cores,
    )

    if fmt not in ("csv", "jsonl"):
        fail(f"--format {fmt!r}: choose csv or jsonl")
    if resume and out is None:
        fail("--resume needs --out")
    if merge:
        if out is None or shard is not None or resume:
            fail("--merge needs --out, and neither --shard nor --resume")
        try:
            rows, count = shards.merge([Path(p) for p in inputs], out)
        except (shards.ShardError, OutputError) as exc:
            fail(str(exc))
        err_line(f"merged {count} shard(s), {rows} row(s) into {out}")
        return
    part = None
    if shard is not None:
        if out is None:
            fail("--shard needs --out (one file a shard)")
        try:
            part = shards.Shard.parse(shard)
        except shards.ShardError as exc:
            fail(str(exc))
    # One onnxruntime thread per run, `threads` runs at once: see score_paths.
    recognizer = load_recognizer(model, threads=1)
    writer = None
    try:
        # The writer first: it refuses files that are not ours and takes the
        # lock before an interrupted run's last partial row is dropped.
        writer = RowWriter(
            out, fmt, append=resume, labels=recognizer.labels, k=top_k, stream=sys.stdout
        )
        if out is not None:
            # Results that cannot mix: the rows already there must be this
            # model's, and the file records which model writes the new ones.
            identity = _identity(recognizer)
            if resume:
                shards.check_same_model(out, identity)
            shards.write_model_record(out, identity)
        skip = done_paths(out, fmt) if resume and out is not None else None
    except (OutputError, shards.ShardError) as exc:
        if writer is not None:
            with contextlib.suppress(OSError):
                writer.close()
        fail(str(exc))
    if part is not None:
        shards.clear_receipt(out)  # unfinished until this run says otherwise
    # The output is never an input: `score in -o in/results.wav` would score it.
    own = None if out is None else os.path.abspath(out)
    seen = ScoredPaths()  # one row a file, however often or however it is named
    paths = (
        p
        for p in iter_inputs(inputs)
        if (not skip or p not in skip)
        and (part is None or part.owns(p))
        and (own is None or os.path.abspath(p) != own)
        and seen.add(p)
    )
    failed = total = shown = 0
    started = shown_at = now = time.perf_counter()
    try:
        with progress_bar("scoring", None, enabled=None if progress else False) as advance:
            for result in score_paths(
                recognizer,
                paths,
                batch_size=batch_size,
                workers=workers,
                parallel_batches=threads or usable_cores(),
            ):
                writer.write(result)
                total += 1
                failed += result.error is not None
                now = time.perf_counter()
                if now - shown_at > 0.1:  # redrawing per file would cost more than scoring
                    rate = total / max(now - started, 1e-9)
                    advance(total - shown, info=f"{rate:.0f} files/s, {failed} failed")
                    shown, shown_at = total, now
            rate = total / max(now - started, 1e-9)
            advance(total - shown, info=f"{rate:.0f} files/s, {failed} failed")
    except OutputError as exc:
        # The rows written so far stay (each is flushed); --resume continues.
        fail(f"{exc}; {total} row(s) written before it")
    finally:
        # A failed close was reported above, or the rows were already flushed.
        with contextlib.suppress(OSError):
            writer.close()
    if part is not None:
        rows = len(shards.read_rows(out, fmt)[1])
        shards.write_receipt(out, part, rows, fmt, model=identity)
        err_line(f"shard {part}: {rows} row(s) in {out}")
    if skip:
        typer.echo(f"resumed: {len(skip)} file(s) were already scored", err=True)
    typer.echo(f"scored {total - failed} file(s), {failed} failed", err=True)
    if failed:
        raise typer.Exit(EXIT_SOME_FAILED)


def _identity(recognizer) -> dict:
    """The model's name and content hash, for the receipt."""
    import hashlib

    path = recognizer.file.path
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    return {"name": str(path), "sha256": digest}


def evaluate(
    data: Path = typer.Argument(..., help="Labelled dataset: Speech Commands, folders or CSV."),
    model: Path | None = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    split: str = typer.Option("test", "--split", help="test | validation | train | all"),
    report_dir: Path | None = typer.Option(
        None, "--report-dir", "-r", help="Write report.json/.md and plots here."
    ),
    batch_size: int = typer.Option(
        32, "--batch-size", min=1, max=4096, help="Files a thread takes at a time."
    ),
    workers: int = typer.Option(1, "--workers", min=1, max=256, help=WORKERS_HELP),
    threads: int = typer.Option(
        0, "--threads", min=0, max=256, help=THREADS_HELP + " (0: all cores)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace report files in --report-dir that evaluate did not write."
    ),
) -> None:
    """Accuracy, balanced accuracy, per-class precision/recall/F1, confusions, calibration.

    Words the model does not know count as _unknown_ (for the 12-class task).

    Example:

      speechlstm evaluate data/speech_commands --split test --report-dir reports/sc12
    """
    from speechlstm.data.datasets import DatasetError
    from speechlstm.evaluation import check_report_dir, report, write_report
    from speechlstm.evaluation import evaluate as run_eval
    from speechlstm.files import FileRefused
    from speechlstm.progress import progress_bar
    from speechlstm.scoring import usable_cores

    recognizer = load_recognizer(model, threads=1)
    if report_dir is not None:
        # Found now, not after an hour of evaluation.
        try:
            check_report_dir(report_dir, force)
        except FileRefused as exc:
            fail(str(exc))
    try:
        with progress_bar("evaluating", None) as advance:
            ev = run_eval(
                recognizer,
                data,
                split,
                workers=workers,
                batch_size=batch_size,
                progress=advance,
                parallel_batches=threads or usable_cores(),
            )
    except (DatasetError, ValueError) as exc:
        fail(str(exc))
    n_files = sum(not p.startswith("<silence:") for p in ev.paths)
    if n_files == 0:
        reason = ""
        if ev.errors:
            path, why = next(iter(ev.errors.items()))
            reason = f": all {len(ev.errors)} could not be read, e.g. {path}: {why}"
        fail(f"{data}: no clip of the {split} split could be evaluated{reason}", EXIT_SOME_FAILED)
    rep = report(ev)
    stdout_line(f"{rep['clips']} clips ({split} split of {data})")
    stdout_line(f"accuracy           {rep['accuracy']:.4f}")
    stdout_line(f"balanced accuracy  {rep['balanced_accuracy']:.4f}")
    stdout_line(f"calibration error  {rep['expected_calibration_error']:.4f} (ECE)")
    stdout_line(f"{'class':<12} {'precision':>9} {'recall':>7} {'F1':>6} {'support':>8}")
    for label, m in rep["per_class"].items():
        stdout_line(
            f"{label:<12} {m['precision']:>9.3f} {m['recall']:>7.3f} {m['f1']:>6.3f} "
            f"{m['support']:>8}"
        )
    if rep["most_confused"]:
        stdout_line(
            "most confused: "
            + ", ".join(
                f"{p['true']}->{p['predicted']} {p['count']}" for p in rep["most_confused"][:5]
            )
        )
    if report_dir is not None:
        try:
            files = write_report(rep, report_dir, f"speechlstm evaluation: {data} ({split})", force)
        except (FileRefused, OSError) as exc:
            fail(f"{report_dir}: cannot write the report ({getattr(exc, 'strerror', None) or exc})")
        stdout_line("wrote " + ", ".join(str(f) for f in files))
    if ev.errors:
        err_line(
            f"{len(ev.errors)} file(s) could not be read, e.g. "
            f"{next(iter(ev.errors))}: {next(iter(ev.errors.values()))}"
        )
        raise typer.Exit(EXIT_SOME_FAILED)
