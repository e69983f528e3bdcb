"""`speechlstm live`: detect commands from the microphone (or a file) as they are spoken."""

from __future__ import annotations

import json
import os
import sys
import time
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
    fail,
    load_recognizer,
    load_verifier,
    stdout_line,
)


def live(
    model: Path | None = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    device: str | None = typer.Option(None, "--device", "-d", help="Input device name or index."),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        min=0.0,
        max=1.0,
        help="Smoothed probability needed to report a command, every label "
        "(default: the model's tuned values).",
    ),
    hop_ms: float | None = typer.Option(
        None, "--hop-ms", min=10.0, max=60000.0, help="Run the model every N ms."
    ),
    smoothing_ms: float | None = typer.Option(None, "--smoothing-ms", min=10.0, max=60000.0),
    refractory_ms: float | None = typer.Option(None, "--refractory-ms", min=0.0, max=60000.0),
    gate_dbfs: float | None = typer.Option(
        None, "--gate-dbfs", help="Skip the model on windows quieter than this."
    ),
    no_gate: bool = typer.Option(False, "--no-gate", help="Run the model on every hop."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per detection."),
    list_devices: bool = typer.Option(False, "--list-devices", help="List input devices."),
    input_file: Path | None = typer.Option(
        None, "--input", "-i", help="Stream a file instead of the microphone."
    ),
    fast: bool = typer.Option(False, "--fast", help="With --input: as fast as possible."),
    detector_file: Path | None = typer.Option(None, "--detector", help=DETECTOR_FILE_HELP),
    verifier: Path | None = typer.Option(None, "--verifier", help=VERIFIER_HELP),
    verifier_threshold: float = typer.Option(
        0.5, "--verifier-threshold", min=0.01, max=1.0, help=VERIFIER_THRESHOLD_HELP
    ),
    verifier_relabel: bool = typer.Option(False, "--verifier-relabel", help=VERIFIER_RELABEL_HELP),
    verifier_centre: bool = typer.Option(False, "--verifier-centre", help=VERIFIER_CENTRE_HELP),
    threads: int = typer.Option(1, "--threads", min=0, max=256),
) -> None:
    """Listen and print each detected command: wall-clock time, label, confidence.

    The detector settings not given (threshold, hop, smoothing, refractory
    period, gate) are the model's own defaults (`speechlstm info` shows them).

    A status line on stderr shows the input level. Ctrl-C stops with a summary.

    Examples:

      speechlstm live

      speechlstm live --model mywords.onnx --threshold 0.7 --device 2

      speechlstm live --input recording.wav --fast --json

      speechlstm live --verifier models/sc12.verifier.onnx --verifier-threshold 0.8 \\
          --detector models/sc12.verifier.detector.toml   (make verifier builds both)
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
    from speechlstm import live as live_lib
    from speechlstm.audio import InvalidAudio
    from speechlstm.stream import StreamingDetector

    recognizer = load_recognizer(model, threads)
    cfg = detector_settings(recognizer, detector_file).with_overrides(
        hop_ms=hop_ms,
        smoothing_ms=smoothing_ms,
        threshold=threshold,
        refractory_ms=refractory_ms,
        gate_dbfs=gate_dbfs,
        gate=False if no_gate else None,
    )
    detector = StreamingDetector(
        recognizer,
        cfg,
        verifier=load_verifier(
            verifier, verifier_threshold, recognizer, threads, verifier_relabel, verifier_centre
        ),
    )
    tty = sys.stderr.isatty()

    def on_detection(det, wall_time: float) -> None:
        stamp = (
            time.strftime("%H:%M:%S", time.localtime(wall_time))
            + f".{int(wall_time % 1 * 1000):03d}"
        )
        if tty:
            sys.stderr.write("\r\033[K")
        if as_json:
            stdout_line(json.dumps({"time": stamp, **det.to_json()}))
        else:
            stdout_line(f"{stamp}  {det.label:<12} {det.score:.2f}")

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
        if input_file is not None:
            blocks = live_lib.file_blocks(input_file, detector.rate_hz, realtime=not fast)
            summary = live_lib.run(detector, blocks, on_detection, on_status)
        else:
            with Microphone(device, target_rate_hz=recognizer.sample_rate) as mic:
                typer.echo(
                    f"listening on [{mic.device.index}] {mic.device.name} "
                    f"({mic.rate_hz} Hz); Ctrl-C to stop",
                    err=True,
                )
                try:
                    summary = live_lib.run(
                        detector, live_lib.mic_blocks(mic), on_detection, on_status, flush=False
                    )
                except MicError as exc:
                    failed = str(exc)
                    summary = live_lib.LiveSummary([], 0.0, 0.0, 0.0)
                overflows = mic.overflows
            close_hung = mic.close_hung
    except InvalidAudio as exc:
        fail(str(exc))
    except MicError as exc:
        fail(str(exc))
    if tty:
        sys.stderr.write("\r\033[K")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.counts().items())) or "none"
    typer.echo(
        f"heard {len(summary.detections)} command(s) in {summary.seconds:.1f} s of audio "
        f"({counts}); model ran on {detector.stats.inferences} of {detector.stats.hops} "
        f"hops; {overflows} overflow(s)"
        + (
            f"; the verifier turned down {detector.stats.rejected} of "
            f"{detector.stats.verified} candidate(s)"
            + (
                f" and renamed {detector.stats.relabelled}"
                if detector.verifier is not None and detector.verifier.relabel
                else ""
            )
            if detector.verifier is not None
            else ""
        ),
        err=True,
    )
    if close_hung:
        # The audio device did not close: PortAudio's exit-time clean-up would
        # wait on it for ever, so leave now, with everything printed.
        typer.echo("note: the audio device did not close in time; exiting anyway", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_SOME_FAILED if failed else 0)
    if failed:
        fail(f"audio input stopped: {failed}", EXIT_SOME_FAILED)
