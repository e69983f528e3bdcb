"""`speechlstm data ...`: make, download or record datasets (no torch needed)."""

from __future__ import annotations

import getpass
import hashlib
from pathlib import Path

import typer

from .common import EXIT_SOME_FAILED, fail, finite, stdout_line

app = typer.Typer(help="Make, download or record datasets.", no_args_is_help=True)


@app.command()
def synth(
    words: str = typer.Option("", "--words", help="Comma-separated words or short phrases."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Dataset folder to write (or continue)."
    ),
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
    engines: str = typer.Option(
        "", "--engines", help="Subset of espeak,flite,festival,pico,piper."
    ),
    lang: str | None = typer.Option(
        None,
        "--lang",
        help="Language of the voices: en (the default: every English accent), en-gb, de, "
        "fr, es, ... "
        "(--list-voices shows what is installed).",
    ),
    unknown_words: str = typer.Option(
        "",
        "--unknown-words",
        help="Comma-separated other words for _unknown_ (default: a built-in list "
        "for en, de, fr, es; English words otherwise).",
    ),
    list_voices: bool = typer.Option(
        False,
        "--list-voices",
        help="List the installed voices by language (with --lang: "
        "that language's voices) and exit.",
    ),
    seed: int = typer.Option(0, "--seed"),
    workers: int = typer.Option(4, "--workers", min=1),
) -> None:
    """Synthesize a dataset in the Speech Commands layout for any words.

    Voices from every installed engine (espeak-ng accents and variants in
    about 100 languages, mbrola, flite, festival, pico, piper), random rate,
    pitch and loudness, generated background noise. Re-running continues an
    interrupted run.

    Examples:

      speechlstm data synth --words "lights on,lights off,play music" --out data/mywords

      speechlstm data synth --lang de --words "licht an,licht aus" --out data/licht

      speechlstm data synth --list-voices --lang fr

      speechlstm train data/mywords --out runs/mywords
    """
    import dataclasses

    from speechlstm.data.synth import SynthConfig, filler_words, sc12_config
    from speechlstm.labels import parse_words
    from speechlstm.progress import note

    engine_names = tuple(e.strip() for e in engines.split(",") if e.strip())
    if list_voices:
        _list_voices(engine_names, lang)
        return
    if out is None:
        fail("--out: name the dataset folder to write (or use --list-voices)")
    if preset is not None:
        if preset != "sc12":
            fail(f"--preset {preset!r}: the only preset is sc12")
        if lang is not None and lang.lower() != "en":
            fail(f"--preset sc12 is English; --lang {lang} goes with --words")
        cfg = dataclasses.replace(sc12_config(clips, seed), workers=workers)
        if engine_names:
            cfg = dataclasses.replace(cfg, engines=engine_names)
        _run_synth(cfg, out)
        return
    try:
        chosen = parse_words(words)
        others = parse_words(unknown_words) if unknown_words.strip(", ") else None
    except ValueError as exc:
        fail(f"{exc} (or use --preset sc12)" if not words.strip(", ") else str(exc))
    lang = lang or "en"
    _check_lang(engine_names, lang)
    if others is None:
        others, native = filler_words(lang)
        if not native:
            note(
                f"--lang {lang}: no built-in {lang} words for _unknown_; using English ones "
                "spoken by its voices (give your own with --unknown-words)"
            )
    cfg = SynthConfig(
        words=chosen,
        clips_per_word=clips,
        unknown_words=tuple(w for w in others if w not in chosen),
        unknown_clips=unknown_clips,
        engines=engine_names,
        lang=lang,
        seed=seed,
        workers=workers,
    )
    _run_synth(cfg, out)


def _check_lang(engine_names: tuple[str, ...], lang: str) -> None:
    """Fail naming the languages the installed voices speak when none speaks `lang`."""
    from speechlstm.data.synth import voices_for
    from speechlstm.data.tts import available_engines

    try:
        engines, _ = available_engines(list(engine_names) or None)
        if engines:  # none installed: synthesize_dataset says how to install one
            voices_for(engines, lang)
    except ValueError as exc:
        fail(str(exc))


def _list_voices(engine_names: tuple[str, ...], lang: str | None) -> None:
    from collections import defaultdict

    from speechlstm.data.synth import voices_for
    from speechlstm.data.tts import available_engines
    from speechlstm.progress import note

    try:
        engines, notes = available_engines(list(engine_names) or None)
    except ValueError as exc:
        fail(str(exc))
    for line in notes:
        note(line)
    if not engines:
        fail("no text-to-speech engine is installed (apt-get install espeak-ng)")
    if lang is not None:
        try:
            voices = voices_for(engines, lang)
        except ValueError as exc:
            fail(str(exc))
        for v in voices:
            stdout_line(f"{v.lang:12s} {v.engine:9s} {v.id}")
        stdout_line(f"{len(voices)} voices speak {lang}")
        return
    by_lang: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in engines:
        for v in e.voices():
            by_lang[v.lang][v.engine] += 1
    for code in sorted(by_lang):
        counts = by_lang[code]
        detail = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
        stdout_line(f"{code:24s} {sum(counts.values()):4d} voices ({detail})")
    total = sum(sum(c.values()) for c in by_lang.values())
    stdout_line(f"{total} voices in {len(by_lang)} languages; --lang X lists one language's")


def _run_synth(cfg, out: Path) -> None:
    from speechlstm.data.synth import synthesize_dataset

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
    stall_timeout: float = typer.Option(
        60.0,
        "--stall-timeout",
        callback=finite,
        min=1.0,
        help="Seconds in which at least 1 KiB must arrive; less is a stall (ended, resumable).",
    ),
    deadline: float = typer.Option(
        12.0,
        "--deadline",
        callback=finite,
        min=0.0,
        help="Hours the whole transfer may take (0: no deadline); past it, ended, resumable.",
    ),
) -> None:
    """Download and extract a dataset (resumable, checksum-verified).

    A stalled transfer or one past --deadline ends with one line; the partial
    file is kept and the next run resumes it.

    Example:

      speechlstm data download speech-commands --out data/
    """
    from speechlstm.data.download import DATASETS, DownloadError, fetch_dataset
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
            folder = fetch_dataset(
                archive,
                out,
                url=url,
                sha256=sha256,
                progress=progress,
                stall_s=stall_timeout,
                deadline_s=deadline * 3600 if deadline > 0 else None,
            )
        except DownloadError as exc:
            fail(str(exc), EXIT_SOME_FAILED)
        except ValueError as exc:  # files.FileRefused: the folder is in use or unusable
            fail(str(exc))
        except OSError as exc:
            fail(f"{exc.filename or out}: cannot write ({exc.strerror or exc})")
    stdout_line(f"{dataset} is ready in {folder}")


@app.command()
def streams(
    source: Path = typer.Argument(..., help="A Speech Commands tree (or a dataset manifest)."),
    out: Path = typer.Option(Path("data/streams"), "--out", "-o", help="Folder to write."),
    split: list[str] = typer.Option(
        ["validation", "test", "train"],
        "--split",
        help="Speaker split(s) to build from (repeatable): train, validation, test.",
    ),
    minutes: float = typer.Option(
        12.0, "--minutes", callback=finite, min=0.0, help="The command stream's length."
    ),
    negative_hours: float = typer.Option(
        5.0,
        "--negative-hours",
        callback=finite,
        min=0.0,
        max=48.0,
        help="Hours of negatives (words, speech, TV, music, noise: no command).",
    ),
    seed: int = typer.Option(0, "--seed", help="The same seed builds the same streams."),
    force: bool = typer.Option(
        False, "--force", help="Replace stream files this command did not write."
    ),
) -> None:
    """Build labelled streams for `tune-detector`, `data mine` and the streaming benchmark.

    For each split: SPLIT_commands.wav with SPLIT_truth.csv (commands and other
    words over noise, the command times), and SPLIT_negatives.wav (hours with no
    command: other words, synthesized conversation, television, music-like
    sound, noise). The train split's negatives feed `data mine`.
    Synthesized voices are split three ways like the speakers.

    Examples:

      speechlstm data streams ../shared/data/speech_commands_subset -o data/streams

      speechlstm tune-detector -m sc12 --commands data/streams/validation_commands.wav \\
          --truth data/streams/validation_truth.csv \\
          --negatives data/streams/validation_negatives.wav --write sc12.detector.toml
    """
    from speechlstm.data.datasets import DatasetError, discover
    from speechlstm.data.streams import SPLITS, StreamSpec, check_outputs
    from speechlstm.files import FolderLock

    bad = [s for s in split if s not in SPLITS]
    if bad:
        fail(f"--split {bad[0]}: choose from {', '.join(SPLITS)}")
    if out.exists() and not out.is_dir():
        fail(f"{out}: is a file; --out names the folder to write")
    try:
        index = discover(source)
    except DatasetError as exc:
        fail(str(exc))
    spec = StreamSpec(minutes=minutes, negative_hours=negative_hours, seed=seed)
    try:
        lock = FolderLock(out, "streams folder")
    except ValueError as exc:  # files.FileRefused: in use or unwritable
        fail(str(exc))
    try:
        try:
            check_outputs(out, dict.fromkeys(split), force)
        except ValueError as exc:  # a file there that this command did not write
            fail(str(exc))
        for name in dict.fromkeys(split):
            _write_streams_split(index, name, out, spec, minutes, negative_hours)
    finally:
        lock.release()
    stdout_line(f"wrote {out}")


def _write_streams_split(index, name: str, out: Path, spec, minutes, negative_hours) -> None:
    from speechlstm.data.streams import note_outputs, split_files, write_split
    from speechlstm.progress import progress_bar

    with progress_bar(f"{name} negatives", round(negative_hours * 3600), unit="s") as advance:
        try:
            summary = write_split(index, name, out, spec, progress=advance)
        except (RuntimeError, ValueError) as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"{exc.filename or out}: cannot write ({exc.strerror or exc})")
    note_outputs(out, split_files(name))
    kinds = ", ".join(
        f"{k} {v / 60:.0f} min" for k, v in summary.get("negative_seconds", {}).items()
    )
    commands = (
        f", {summary['commands']} commands in {minutes:g} min" if "commands" in summary else ""
    )
    stdout_line(
        f"{name}: {summary['speakers']} speakers{commands}"
        + (f"; negatives: {kinds}" if kinds else "")
    )


def _default_speaker() -> str:
    # The speaker id keeps a user's clips in one split; a hash avoids writing a name.
    return "user" + hashlib.sha1(getpass.getuser().encode()).hexdigest()[:8]


@app.command()
def record(
    words: str = typer.Option(..., "--words", help="Comma-separated words to record."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder (clips are added)."),
    takes: int = typer.Option(20, "--takes", min=1, help="Clips per word."),
    device: str | None = typer.Option(None, "--device", help="Input device name or index."),
    seconds: float = typer.Option(
        1.5, "--seconds", callback=finite, min=1.0, help="Recording time per take."
    ),
    speaker: str | None = typer.Option(None, "--speaker", help="Speaker id for the file names."),
) -> None:
    """Record your own clips from the microphone, prompted word by word.

    Each take keeps the loudest second; silent takes are repeated.

    Example:

      speechlstm data record --words yes,no --takes 20 --out data/mine
    """
    from speechlstm.data.record import record_takes
    from speechlstm.labels import parse_words
    from speechlstm.mic import MicError

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
    except (MicError, ValueError) as exc:  # ValueError: files.FileRefused (folder in use)
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or out}: cannot write ({exc.strerror or exc})")
    except KeyboardInterrupt:
        fail("stopped; the clips recorded so far are kept", 130)
    stdout_line(", ".join(f"{w}: {n} clips" for w, n in written.items()) + f" in {out}")
    if sum(written.values()) < takes * len(chosen):
        raise typer.Exit(EXIT_SOME_FAILED)


@app.command()
def mine(
    audio: list[Path] = typer.Argument(
        ...,
        help="Recordings with no command in them (noise, other speech, music), or folders "
        "of them (e.g. the false/ folder of live --save-detections).",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Dataset folder: the windows land in OUT/_unknown_/."
    ),
    model: Path | None = typer.Option(None, "--model", "-m", help="ONNX model; default: shipped."),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        callback=finite,
        min=0.0,
        max=1.0,
        help="Fire at this probability (default: the model's own; lower mines near misses).",
    ),
) -> None:
    """Mine hard negatives: every window a model fires on in audio that holds no
    command, written as 1 s clips for `train --add` (Mycroft Precise's
    incremental training). Mine again with the retrained model until it finds
    no new windows.

    Examples:

      speechlstm data mine kitchen.wav radio.flac -m mywords.onnx --out data/negatives

      speechlstm data mine saved/false -m mywords.onnx --out data/negatives

      speechlstm train data/mywords --add data/negatives --out runs/mywords2
    """
    from speechlstm.detect.mining import mine as run_mine
    from speechlstm.files import FileRefused

    from .common import err_line, load_recognizer

    recognizer = load_recognizer(model, threads=1)
    if out.exists() and not out.is_dir():
        fail(f"{out}: is a file; --out names the dataset folder to write")
    from speechlstm.detect.mining import expand_inputs
    from speechlstm.runtime import ModelError

    paths, foreign = expand_inputs(audio)
    if foreign:
        err_line(
            f"note: skipped {len(foreign)} file(s) that are not audio (e.g. {foreign[0]}); "
            "the .json sidecars of live --save-detections are skipped silently"
        )
    if not paths:
        fail("no audio files to mine in " + ", ".join(str(p) for p in audio))
    try:
        found, errors = run_mine(recognizer, paths, out, threshold)
    except (FileRefused, OSError, ModelError) as exc:
        fail(str(exc))
    for path, reason in errors.items():
        err_line(f"error: {path}: {reason}")
    by_label: dict[str, int] = {}
    for m in found:
        by_label[m.label] = by_label.get(m.label, 0) + 1
    detail = ", ".join(f"{k} {v}" for k, v in sorted(by_label.items())) or "none"
    fresh = sum(m.new for m in found)
    stdout_line(
        f"mined {len(found)} window(s) into {out}/_unknown_, {fresh} new (taken for: {detail})"
    )
    if errors:
        raise typer.Exit(EXIT_SOME_FAILED)
