"""`speechlstm live`: detect commands as they are spoken, from the microphone, a
pipe, a FIFO or a file; print them, or run a command for each."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import typer

from .common import (
    CHANNELS_OPTION,
    DETECTOR_FILE_HELP,
    EXIT_SOME_FAILED,
    FORMAT_OPTION,
    MODELS_HELP,
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
    sensitivity_option,
    stdout_line,
)


def live(
    model: list[str] | None = typer.Option(None, "--model", "-m", help=MODELS_HELP),
    device: str | None = typer.Option(None, "--device", "-d", help="Input device name or index."),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        callback=finite,
        min=0.0,
        max=1.0,
        help="Smoothed probability needed to report a command, every label "
        "(default: the model's tuned values).",
    ),
    hop_ms: float | None = typer.Option(
        None, "--hop-ms", callback=finite, min=10.0, max=60000.0, help="Run the model every N ms."
    ),
    smoothing_ms: float | None = typer.Option(
        None, "--smoothing-ms", callback=finite, min=10.0, max=60000.0
    ),
    refractory_ms: float | None = typer.Option(
        None, "--refractory-ms", callback=finite, min=0.0, max=60000.0
    ),
    gate_dbfs: float | None = typer.Option(
        None,
        "--gate-dbfs",
        callback=finite,
        min=-200.0,
        max=0.0,
        help="Skip the model on windows quieter than this (-200 to 0).",
    ),
    no_gate: bool = typer.Option(False, "--no-gate", help="Run the model on every hop."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per detection."),
    names: bool = typer.Option(
        False,
        "--names",
        help="Print only each detected label, one a line, flushed (wyoming-satellite's "
        "--wake-command contract).",
    ),
    list_devices: bool = typer.Option(False, "--list-devices", help="List input devices."),
    input_file: str | None = typer.Option(
        None,
        "--input",
        "-i",
        help="Listen to an audio file, a named FIFO, or `-` (standard input) instead of "
        "the microphone. Pipes and FIFOs are read as they arrive.",
    ),
    raw: bool = typer.Option(
        False, "--raw", help="The input is headerless PCM. " + RAW_OPTIONS_HELP
    ),
    rate: int = RATE_OPTION,
    sample_format: str = FORMAT_OPTION,
    channels: int = CHANNELS_OPTION,
    fast: bool = typer.Option(
        False, "--fast", help="With --input FILE: as fast as possible (pipes go at their pace)."
    ),
    exec_command: str | None = typer.Option(
        None,
        "--exec",
        help="Run this shell command once per detection, with SPEECHLSTM_LABEL, _SCORE, "
        "_START_S, _END_S and _MODEL set and the detection's JSON on its stdin; its "
        "output goes to stderr. It never holds up listening.",
    ),
    exec_timeout_s: float = typer.Option(
        10.0, "--exec-timeout", min=0.1, max=3600.0, help="Kill a hook running longer (s)."
    ),
    exec_max: int = typer.Option(
        2, "--exec-max", min=1, max=64, help="Hooks running at once (the rest wait, up to 16)."
    ),
    save_detections: Path | None = typer.Option(
        None,
        "--save-detections",
        help="Write each detection's audio (1.5 s around it, WAV) and a JSON sidecar "
        "here; move the wrong ones to DIR/false/ for `speechlstm data mine`.",
    ),
    sensitivity: float | None = sensitivity_option(),
    detector_file: Path | None = typer.Option(None, "--detector", help=DETECTOR_FILE_HELP),
    verifier: Path | None = typer.Option(None, "--verifier", help=VERIFIER_HELP),
    verifier_threshold: float | None = VERIFIER_THRESHOLD_OPTION,
    verifier_relabel: bool = typer.Option(False, "--verifier-relabel", help=VERIFIER_RELABEL_HELP),
    threads: int = typer.Option(1, "--threads", min=0, max=256),
) -> None:
    """Listen and print each detected command: wall-clock time, label, confidence.

    The detector settings not given (threshold, hop, smoothing, refractory
    period, gate) are each model's own defaults (`speechlstm info` shows them).
    With several -m, every model hears the same audio and each detection names
    its model.

    A status line on stderr shows the input level. Ctrl-C (or the end of the
    input) stops with a summary on stderr.

    Examples:

      speechlstm live

      speechlstm live --model mywords.onnx --threshold 0.7 --device 2

      arecord -q -r 16000 -c 1 -f S16_LE -t raw | speechlstm live --input - --raw

      ffmpeg -i URL -f s16le -ac 1 -ar 16000 - | speechlstm live --input - --raw --json

      speechlstm live --input - --raw --names     (wyoming-satellite --wake-command)

      speechlstm live -m lights.onnx -m sc12 --exec 'notify-send "$SPEECHLSTM_LABEL"'

      speechlstm live --input recording.wav --fast --json
    """
    from speechlstm.mic import MicError, Microphone
    from speechlstm.mic import list_devices as query_devices

    if list_devices:
        try:
            devices = query_devices()
        except MicError as exc:
            fail(str(exc))
        if not devices:
            fail("no audio input device found (is a microphone connected, or PulseAudio running?)")
        for d in devices:
            mark = "*" if d.is_default else " "
            stdout_line(
                f"{mark} [{d.index}] {d.name}  ({d.channels} ch, {d.default_rate_hz:.0f} Hz)"
            )
        return
    if names and as_json:
        fail("--names and --json are two output formats: choose one")
    from speechlstm import pcm
    from speechlstm.detect import live as live_lib
    from speechlstm.detect.hooks import HookRunner

    raw_fmt = raw_input_format(raw, rate, sample_format, channels, input_file)
    streamed = input_file is not None and (raw or pcm.is_stream_input(input_file))
    if streamed and input_file == pcm.STDIN and os.isatty(sys.stdin.fileno()):
        fail(
            "standard input is a terminal, not audio; pipe audio in, e.g. "
            "`arecord -q -r 16000 -c 1 -f S16_LE -t raw | speechlstm live --input - --raw`"
        )
    detector = build_detector(
        model,
        threads,
        detector_file,
        dict(
            hop_ms=hop_ms,
            smoothing_ms=smoothing_ms,
            threshold=threshold,
            refractory_ms=refractory_ms,
            gate_dbfs=gate_dbfs,
            gate=False if no_gate else None,
        ),
        verifier,
        verifier_threshold,
        verifier_relabel,
        sensitivity,
    )
    tty = sys.stderr.isatty() and not names

    saver = None
    if save_detections is not None:
        from speechlstm.detect.saved import DetectionSaver, SaveError

        window = detector.recognizers[0].runtime.clip_samples
        try:
            saver = DetectionSaver(save_detections, detector.rate_hz, window, log=err_line)
        except SaveError as exc:
            fail(str(exc))
    hooks = None
    if exec_command is not None:
        try:
            hooks = HookRunner(exec_command, exec_timeout_s, exec_max, log=err_line)
        except ValueError as exc:
            fail(f"--exec: {exc}")

    def on_detection(det, wall_time: float) -> None:
        if hooks is not None:
            hooks.submit(det)
        if saver is not None:
            saver.add(det, wall_time)
        if tty:
            sys.stderr.write("\r\033[K")
        if names:
            stdout_line(det.label)
            return
        stamp = (
            time.strftime("%H:%M:%S", time.localtime(wall_time))
            + f".{int(wall_time % 1 * 1000):03d}"
        )
        if as_json:
            stdout_line(json.dumps({"time": stamp, **det.to_json()}))
        else:
            several = len(detector.models) > 1
            stdout_line(
                f"{stamp}  {det.label:<12} {det.score:.2f}" + (f"  {det.model}" if several else "")
            )

    def on_status(level: float, seconds: float) -> None:
        if tty:
            bars = int(max(0.0, min(1.0, (level + 60) / 60)) * 30)
            sys.stderr.write(
                f"\r\033[Klistening {seconds:6.1f} s  [{'#' * bars:<30}] {level:5.1f} dBFS"
            )
            sys.stderr.flush()

    failed = None
    overflows = 0
    close_hung = False
    try:
        if streamed:
            blocks = pcm.pcm_blocks(input_file, raw_fmt, detector.rate_hz)
            summary = live_lib.run(detector, _kept(saver, blocks), on_detection, on_status)
        elif input_file is not None:
            blocks = live_lib.file_blocks(input_file, detector.rate_hz, realtime=not fast)
            summary = live_lib.run(detector, _kept(saver, blocks), on_detection, on_status)
        else:
            with Microphone(device, target_rate_hz=detector.rate_hz) as mic:
                typer.echo(
                    f"listening on [{mic.device.index}] {mic.device.name} "
                    f"({mic.rate_hz} Hz); Ctrl-C to stop",
                    err=True,
                )
                try:
                    summary = live_lib.run(
                        detector,
                        _kept(saver, live_lib.mic_blocks(mic)),
                        on_detection,
                        on_status,
                        flush=False,
                    )
                except MicError as exc:
                    failed = str(exc)
                    summary = live_lib.LiveSummary([], 0.0, 0.0, 0.0)
                overflows = mic.overflows
            close_hung = mic.close_hung
    except MicError as exc:
        _close_hooks(hooks, cancel=True)
        fail(str(exc))
    if summary.error is not None:
        failed = summary.error
    if tty:
        sys.stderr.write("\r\033[K")
    _summary_line(detector, summary, overflows)
    if saver is not None:
        saved = saver.close()
        typer.echo(
            f"saved {saved.saved} detection(s) to {save_detections}"
            + (f"; {saved.failed} could not be saved" if saved.failed else ""),
            err=True,
        )
    _close_hooks(hooks, cancel=summary.interrupted)
    if close_hung:
        # The audio device did not close: PortAudio's exit-time clean-up would
        # wait on it for ever, so leave now, with everything printed.
        typer.echo("note: the audio device did not close in time; exiting anyway", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_SOME_FAILED if failed else 0)
    if failed:
        # The input broke off or could not be read (what was heard is printed):
        # exit 1, as transcribe does for a file it cannot read.
        fail(failed if summary.error else f"audio input stopped: {failed}", EXIT_SOME_FAILED)


def _kept(saver, blocks):
    """The blocks, kept in the saver's history on the way (as they are without one)."""
    return blocks if saver is None else saver.feed(blocks)


def _summary_line(detector, summary, overflows: int) -> None:
    stats = detector.stats
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.counts().items())) or "none"
    verifiers = [v for v in detector.verifiers if v is not None]
    line = (
        f"heard {len(summary.detections)} command(s) in {summary.seconds:.1f} s of audio "
        f"({counts}); model ran on {stats.inferences} of {stats.hops} hops; "
        f"{overflows} overflow(s)"
    )
    if verifiers:
        line += f"; the verifier turned down {stats.rejected} of {stats.verified} candidate(s)"
        if any(v.relabel for v in verifiers):
            line += f" and renamed {stats.relabelled}"
    typer.echo(line, err=True)


def _close_hooks(hooks, cancel: bool) -> None:
    if hooks is None:
        return
    stats = hooks.close(cancel=cancel)
    if stats.started or stats.dropped:
        typer.echo(
            f"hooks: {stats.started} run, {stats.failed} failed, {stats.timed_out} timed out, "
            f"{stats.waited} waited, {stats.dropped} dropped",
            err=True,
        )
