"""`speechlstm data ...`: make, download or record datasets (no torch needed)."""

from __future__ import annotations

import getpass
import hashlib
from pathlib import Path

import typer

from .common import EXIT_SOME_FAILED, fail, stdout_line

app = typer.Typer(help="Make, download or record datasets.", no_args_is_help=True)


@app.command()
def synth(
    words: str = typer.Option("", "--words", help="Comma-separated words or short phrases."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder to write (or continue)."),
    preset: str | None = typer.Option(
        None,
        "--preset",
        help="sc12: the 10 Speech Commands "
        "words + the other 25 as unknown (the default model's data).",
    ),
    clips: int = typer.Option(200, "--clips", min=1, help="Clips per word."),
    unknown_clips: int = typer.Option(
        300, "--unknown-clips", min=0, help="Clips of other words for the _unknown_ class."
    ),
    engines: str = typer.Option("", "--engines", help="Subset of espeak,flite,festival,piper."),
    seed: int = typer.Option(0, "--seed"),
    workers: int = typer.Option(4, "--workers", min=1),
) -> None:
    """Synthesize a dataset in the Speech Commands layout for any words.

    Voices from every installed engine (espeak-ng accents and variants, flite,
    festival, piper), random rate, pitch and loudness, generated background
    noise. Re-running continues an interrupted run.

    Examples:

      speechlstm data synth --words "lights on,lights off,play music" --out data/mywords

      speechlstm train data/mywords --out runs/mywords
    """
    import dataclasses

    from speechlstm.labels import parse_words
    from speechlstm.synth import SynthConfig, sc12_config

    engine_names = tuple(e.strip() for e in engines.split(",") if e.strip())
    if preset is not None:
        if preset != "sc12":
            fail(f"--preset {preset!r}: the only preset is sc12")
        cfg = dataclasses.replace(sc12_config(clips, seed), workers=workers)
        if engine_names:
            cfg = dataclasses.replace(cfg, engines=engine_names)
        _run_synth(cfg, out)
        return
    try:
        chosen = parse_words(words)
    except ValueError as exc:
        fail(f"{exc} (or use --preset sc12)" if not words.strip(", ") else str(exc))
    cfg = SynthConfig(
        words=chosen,
        clips_per_word=clips,
        unknown_clips=unknown_clips,
        engines=engine_names,
        seed=seed,
        workers=workers,
    )
    _run_synth(cfg, out)


def _run_synth(cfg, out: Path) -> None:
    from speechlstm.synth import synthesize_dataset

    if out.exists() and not out.is_dir():
        fail(f"{out}: is a file; --out names the dataset folder to write")
    try:
        summary = synthesize_dataset(cfg, out)
    except (RuntimeError, ValueError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or out}: cannot write ({exc.strerror or exc})")
    stdout_line(
        f"wrote {summary['made']} clips ({summary['skipped_existing']} already there) "
        f"to {out} with {summary['voices']} voices from {', '.join(summary['engines'])}"
    )
    if summary["failed"]:
        raise typer.Exit(EXIT_SOME_FAILED)


@app.command()
def download(
    dataset: str = typer.Argument("speech-commands", help="Dataset name: speech-commands."),
    out: Path = typer.Option(Path("data"), "--out", "-o", help="Folder to download into."),
    url: str | None = typer.Option(None, "--url", help="A mirror of the archive."),
    sha256: str | None = typer.Option(None, "--sha256", help="Expected SHA-256 (with --url)."),
) -> None:
    """Download and extract a dataset (resumable, checksum-verified).

    Example:

      speechlstm data download speech-commands --out data/
    """
    from speechlstm.download import DATASETS, DownloadError, fetch_dataset
    from speechlstm.progress import progress_bar

    if dataset not in DATASETS:
        fail(f"unknown dataset {dataset!r}; available: {', '.join(DATASETS)}")
    archive = DATASETS[dataset]
    with progress_bar(f"downloading {archive.name}", archive.size_bytes, unit="bytes") as adv:
        last = {"done": 0}

        def progress(done: int, total: int | None) -> None:
            adv(done - last["done"])
            last["done"] = done

        try:
            folder = fetch_dataset(archive, out, url=url, sha256=sha256, progress=progress)
        except DownloadError as exc:
            fail(str(exc), EXIT_SOME_FAILED)
        except OSError as exc:
            fail(f"{exc.filename or out}: cannot write ({exc.strerror or exc})")
    stdout_line(f"{dataset} is ready in {folder}")


def _default_speaker() -> str:
    # The speaker id keeps a user's clips in one split; a hash avoids writing a name.
    return "user" + hashlib.sha1(getpass.getuser().encode()).hexdigest()[:8]


@app.command()
def record(
    words: str = typer.Option(..., "--words", help="Comma-separated words to record."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder (clips are added)."),
    takes: int = typer.Option(20, "--takes", min=1, help="Clips per word."),
    device: str | None = typer.Option(None, "--device", help="Input device name or index."),
    seconds: float = typer.Option(1.5, "--seconds", min=1.0, help="Recording time per take."),
    speaker: str | None = typer.Option(None, "--speaker", help="Speaker id for the file names."),
) -> None:
    """Record your own clips from the microphone, prompted word by word.

    Each take keeps the loudest second; silent takes are repeated.

    Example:

      speechlstm data record --words yes,no --takes 20 --out data/mine
    """
    from speechlstm.labels import parse_words
    from speechlstm.mic import MicError
    from speechlstm.record import record_takes

    try:
        chosen = list(parse_words(words))
    except ValueError as exc:
        fail(str(exc))
    try:
        written = record_takes(
            chosen,
            takes,
            out,
            speaker or _default_speaker(),
            device=device,
            seconds=seconds,
            prompt=lambda m: typer.echo(m, err=True),
        )
    except MicError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or out}: cannot write ({exc.strerror or exc})")
    except KeyboardInterrupt:
        fail("stopped; the clips recorded so far are kept", 130)
    stdout_line(", ".join(f"{w}: {n} clips" for w, n in written.items()) + f" in {out}")
    if sum(written.values()) < takes * len(chosen):
        raise typer.Exit(EXIT_SOME_FAILED)
