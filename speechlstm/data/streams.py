"""Labelled streams for tuning and measuring the live detector (`speechlstm data streams`).

From a Speech Commands tree, one speaker split at a time:

- SPLIT_commands.wav + SPLIT_truth.csv: the split's command clips at random
  times over the tree's background noise, a non-command word (the other
  Speech Commands words, same speakers) in every other gap, the true word
  times recorded (as TensorFlow's streaming accuracy test does);
- SPLIT_negatives.wav: hours of audio with no command in it, what a device in
  a home hears between commands, stretch after stretch in five kinds:
    words   the split's non-command words over background noise;
    speech  synthesized sentences and conversation: several voices taking
            turns, the turns sometimes overlapping, over a room's noise;
    tv      a synthesized presenter over a music bed, band-limited like a
            television's speaker, now and then applause;
    music   music-like sound built offline: chords of harmonic tones, a bass
            line, a melody and percussion on a beat;
    noise   the tree's background recordings, coloured noise and mains hum.
  No command word is in it: the sentences are drawn from a grammar whose
  vocabulary holds none of them, so 1 false alarm an hour is resolvable over
  the 5 hours `speechlstm tune-detector` is meant to get.

The synthesized voices are split three ways (train, validation, test by the
voice's place in the engine's list), as the speakers are: negatives mined from
the training speakers' stream (`speechlstm data mine`) never share a voice with
the streams the detector is tuned or measured on. Every file is written block
by block (memory stays at one stretch however long the audio) to a temporary
name and renamed when whole.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE, load_audio, to_mono_16k
from ..labels import BACKGROUND_LABELS, SC12_WORDS
from .noise import make_noise

SPLITS = ("train", "validation", "test")
NOISE_LEVEL = 0.05  # peak of the background noise stretches
# Shares of the negative audio by kind: words as in the command stream, and what
# else a room hears (speech, television, music, noise).
NEGATIVE_SHARES = (("words", 0.3), ("speech", 0.25), ("tv", 0.15), ("music", 0.15), ("noise", 0.15))
STRETCH_S = (20.0, 60.0)  # each stretch of one kind lasts this long

# A small grammar for "ordinary text" with no command word in it (yes no up down
# left right on off stop go are never in these lists): enough variety for hours
# of sentences without a text corpus on the machine.
_SUBJECTS = ("the old man", "my sister", "a neighbour", "the teacher", "our team", "the driver",
             "everybody", "the children", "a friend of mine", "the doctor", "this company",
             "the waiter", "her brother", "the reporter", "my uncle", "the students")  # fmt: skip
_VERBS = ("bought", "painted", "carried", "found", "mentioned", "cleaned", "watched", "wanted",
          "borrowed", "described", "fixed", "ordered", "visited", "remembered", "sold",
          "noticed", "cooked", "explained", "forgot", "delivered")  # fmt: skip
_OBJECTS = (
    "a yellow bicycle",
    "the kitchen table",
    "some fresh bread",
    "the garden fence",
    "a long letter",
    "the small window",
    "three new chairs",
    "a bowl of soup",
    "the evening news",
    "a quiet room",
    "the blue jacket",
    "an expensive watch",
    "the morning train",
    "a box of apples",
    "the whole building",
    "a funny story",
)
_TAILS = ("last week", "after dinner", "in the morning", "before the holidays", "at the market",
          "near the station", "with great care", "for the first time", "during the storm",
          "yesterday afternoon", "without a word", "in the city centre", "at the weekend",
          "", "", "")  # fmt: skip
_OPENERS = ("well", "you know", "honestly", "by the way", "so", "actually", "I think", "")


def sentence(rng: np.random.Generator) -> str:
    """One ordinary sentence (no command word), sometimes two joined."""
    parts = [_OPENERS[rng.integers(len(_OPENERS))], _SUBJECTS[rng.integers(len(_SUBJECTS))],
             _VERBS[rng.integers(len(_VERBS))], _OBJECTS[rng.integers(len(_OBJECTS))],
             _TAILS[rng.integers(len(_TAILS))]]  # fmt: skip
    text = " ".join(p for p in parts if p)
    if rng.random() < 0.3:
        text += " and then " + sentence(rng)
    return text


def word_span(
    clip: np.ndarray, top_db: float = 30.0, floor_margin_db: float = 10.0, bridge_ms: float = 150.0
) -> tuple[int, int]:
    """First and last sample of the word in a clip: of the runs of 10 ms frames
    that stand out from the clip's own noise (within top_db of the peak and
    floor_margin_db over the clip's 20th-percentile frame; gaps up to
    bridge_ms, a stop's closure, bridged), the one holding the most energy.
    Within top_db of the peak alone, a recording with noise 30 dB under the
    word spans the whole clip and puts the word's centre where it is not; the
    run with the loudest frame can be a click."""
    frame = 160
    n = len(clip) // frame
    power = (clip[: n * frame].reshape(n, frame) ** 2).mean(axis=1)
    energy = 10 * np.log10(power + 1e-10)
    floor = float(np.percentile(energy, 20))
    loud = np.flatnonzero(energy > max(energy.max() - top_db, floor + floor_margin_db))
    if not loud.size:  # nothing stands out (silence, steady noise): the whole clip
        return 0, n * frame
    # Runs: a new one starts where the gap to the previous loud frame exceeds the bridge.
    starts = np.r_[0, np.flatnonzero(np.diff(loud) > round(bridge_ms / 10)) + 1]
    ends = np.r_[starts[1:], len(loud)]
    totals = [power[loud[a] : loud[b - 1] + 1].sum() for a, b in zip(starts, ends)]
    best = int(np.argmax(totals))
    return int(loud[starts[best]] * frame), int((loud[ends[best] - 1] + 1) * frame)


def background(waves: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of 5-20 s stretches of randomly chosen noise recordings."""
    out = np.zeros(n, dtype=np.float32)
    pos = 0
    while pos < n:
        w = waves[rng.integers(len(waves))]
        length = min(n - pos, int(rng.uniform(5, 20) * SAMPLE_RATE), len(w))
        start = rng.integers(0, len(w) - length + 1)
        seg = w[start : start + length]
        out[pos : pos + length] = seg / (np.abs(seg).max() + 1e-9) * NOISE_LEVEL
        pos += length
    return out


def words_over_noise(
    commands: list, others: list, noise: list[np.ndarray], seconds: float, rng, with_commands: bool
) -> tuple[np.ndarray, list[dict]]:
    """Background noise with a word every 1-3 s: commands alternating with other
    words (with_commands) or other words only; the commands' true times."""
    n = int(seconds * SAMPLE_RATE)
    out = background(noise, n, rng)
    truth, pos, k = [], SAMPLE_RATE, 0
    order = rng.permutation(len(commands)) if commands else []
    while pos + SAMPLE_RATE < n:
        is_command = with_commands and k % 2 == 0
        clip = (
            commands[order[(k // 2) % len(order)]]
            if is_command
            else others[rng.integers(len(others))]
        )
        k += 1
        wave = load_audio(clip.path)[:SAMPLE_RATE] * rng.uniform(0.5, 1.0)
        lo, hi = word_span(wave)
        out[pos : pos + len(wave)] += wave
        if is_command:
            truth.append(
                {"label": clip.word, "start_s": (pos + lo) / SAMPLE_RATE,
                 "end_s": (pos + hi) / SAMPLE_RATE}
            )  # fmt: skip
        pos += len(wave) + int(rng.uniform(1.0, 3.0) * SAMPLE_RATE)
    return np.clip(out, -1, 1), truth


# --- music-like and television-like sound, built from nothing but numbers ---


def _tone(freq_hz: float, n: int, harmonics: int, rng) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    vibrato = 1 + 0.003 * np.sin(2 * np.pi * rng.uniform(4, 6) * t)
    out = np.zeros(n)
    for k in range(1, harmonics + 1):
        if freq_hz * k < SAMPLE_RATE / 2 - 500:
            out += np.sin(2 * np.pi * freq_hz * k * t * vibrato) / k**1.3
    attack = min(n, int(0.02 * SAMPLE_RATE))
    env = np.exp(-t * rng.uniform(1.5, 5.0))
    env[:attack] *= np.linspace(0, 1, attack)
    return out * env


def _drum(kind: str, n: int, rng) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    if kind == "kick":
        return np.sin(2 * np.pi * (50 + 80 * np.exp(-t * 30)) * t) * np.exp(-t * 12)
    noise = rng.standard_normal(n)
    if kind == "hat":
        noise = np.diff(noise, prepend=0.0)  # brighter: a first difference
        return noise * np.exp(-t * 60) * 0.3
    return noise * np.exp(-t * 25) * 0.5  # snare


def music(seconds: float, rng) -> np.ndarray:
    """Chords, a bass line, a melody and drums at a random tempo and key."""
    n = int(seconds * SAMPLE_RATE)
    beat = int(SAMPLE_RATE * 60 / rng.uniform(70, 150))
    out = np.zeros(n + 4 * beat)  # the last bar's chord rings past the end
    root = 110 * 2 ** (rng.integers(0, 12) / 12)
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    progression = [(0, 4, 7), (5, 9, 12), (7, 11, 14), (9, 12, 16)]
    order = rng.permutation(len(progression))
    harmonics = int(rng.integers(2, 8))
    for b, start in enumerate(range(0, n, beat)):
        bar, in_bar = divmod(b, 4)
        chord = progression[order[bar % len(order)]]
        if in_bar == 0:  # a chord and a bass note each bar
            for step in chord:
                out[start : start + 4 * beat] += 0.15 * _tone(
                    root * 2 ** (step / 12) * 2, 4 * beat, harmonics, rng
                )
            out[start : start + 2 * beat] += 0.3 * _tone(
                root * 2 ** (chord[0] / 12) / 2, 2 * beat, 3, rng
            )
        if rng.random() < 0.7:  # a melody note on most beats
            note = root * 4 * 2 ** (scale[rng.integers(len(scale))] / 12)
            out[start : start + beat] += 0.2 * _tone(note, beat, harmonics, rng)
        drum = "kick" if in_bar in (0, 2) else "snare"
        out[start : start + beat] += 0.4 * _drum(drum, beat, rng)
        half = start + beat // 2
        out[half : half + beat // 2] += 0.4 * _drum("hat", len(out[half : half + beat // 2]), rng)
    return out[:n].astype(np.float32)


def _band(wave: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    """A brick-wall band-pass in the frequency domain (a small loudspeaker)."""
    spec = np.fft.rfft(wave)
    freqs = np.fft.rfftfreq(len(wave), 1 / SAMPLE_RATE)
    spec[(freqs < low_hz) | (freqs > high_hz)] = 0
    return np.fft.irfft(spec, len(wave)).astype(np.float32)


class Voices:
    """The synthesized voices of one split (a third of each engine's), rendering text."""

    def __init__(self, split: str, engine_names: list[str] | None = None):
        from .tts import available_engines, speaks

        engines, self.notes = available_engines(engine_names or ["espeak", "flite"])
        self.engines = {e.name: e for e in engines}
        part = SPLITS.index(split)
        self.voices = [
            v
            for e in engines
            for i, v in enumerate(e.voices())
            if speaks(v, "en") and i % len(SPLITS) == part
        ]
        if not self.voices:
            raise RuntimeError(
                "no English text-to-speech voice installed (apt-get install espeak-ng); "
                + "; ".join(self.notes)
            )

    def say(self, text: str, rng) -> np.ndarray:
        from .tts import EngineError

        voice = self.voices[rng.integers(len(self.voices))]
        try:
            wave, rate = self.engines[voice.engine].render(
                text, voice, float(rng.uniform(0.85, 1.2)), float(rng.uniform(0.8, 1.2))
            )
        except EngineError:
            return np.zeros(SAMPLE_RATE // 2, np.float32)
        wave = to_mono_16k(wave, rate)
        return wave / (np.abs(wave).max() or 1.0)


def conversation(seconds: float, voices: Voices, rng, talkers: int = 2) -> np.ndarray:
    """Sentences in turns between `talkers` voices; a turn sometimes starts
    before the last one ends (people talk over each other)."""
    n = int(seconds * SAMPLE_RATE)
    out = np.zeros(n, np.float32)
    speakers = [int(rng.integers(1 << 30)) for _ in range(talkers)]
    pos = int(rng.uniform(0, 0.5) * SAMPLE_RATE)
    while pos < n:
        who = np.random.default_rng(speakers[rng.integers(talkers)])  # one voice per talker
        wave = voices.say(sentence(rng), who) * rng.uniform(0.4, 1.0)
        end = min(n, pos + len(wave))
        out[pos:end] += wave[: end - pos]
        gap = rng.uniform(-0.4, 1.2) if rng.random() < 0.3 else rng.uniform(0.2, 1.2)
        pos = end + int(gap * SAMPLE_RATE)
    return out


def television(seconds: float, voices: Voices, rng) -> np.ndarray:
    """A presenter over a music bed through a small loudspeaker; applause now and then."""
    n = int(seconds * SAMPLE_RATE)
    speech = conversation(seconds, voices, rng, talkers=int(rng.integers(1, 3)))
    bed = music(seconds, rng) * rng.uniform(0.1, 0.3)
    out = speech + bed
    if rng.random() < 0.3:  # applause: a swell of dense clicks
        length = min(n, int(rng.uniform(2, 5) * SAMPLE_RATE))
        start = int(rng.integers(0, n - length + 1))
        env = np.sin(np.linspace(0, np.pi, length))
        out[start : start + length] += (
            0.3 * env * _drum("hat", length, rng) / 0.3 * np.abs(rng.standard_normal(length))
        )
    return _band(out, 200.0, 6000.0)


def noise_stretch(seconds: float, noise: list[np.ndarray], rng) -> np.ndarray:
    n = int(seconds * SAMPLE_RATE)
    if noise and rng.random() < 0.5:
        return background(noise, n, rng) * rng.uniform(1.0, 8.0)
    kind = ("white", "pink", "brown", "hum")[rng.integers(4)]
    wave = make_noise(kind, n, rng)
    return wave / (np.abs(wave).max() or 1.0) * rng.uniform(0.02, 0.3)


def _level(wave: np.ndarray, rng) -> np.ndarray:
    """A stretch at a random loudness (-40 to -15 dBFS RMS), never clipped."""
    rms = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2))) or 1.0
    target = 10 ** (rng.uniform(-40, -15) / 20)
    return np.clip(wave * (target / rms), -1, 1).astype(np.float32)


@dataclass(frozen=True)
class StreamSpec:
    """What `write_streams` builds for each split."""

    minutes: float = 12.0  # the command stream
    negative_hours: float = 5.0
    seed: int = 0
    shares: tuple[tuple[str, float], ...] = NEGATIVE_SHARES
    engines: tuple[str, ...] = ("espeak", "flite")


class SplitSource:
    """One split's material: its command and other-word clips, the tree's noise."""

    def __init__(self, index, split: str, commands: tuple[str, ...] = SC12_WORDS):
        clips = index.split(split)
        self.split = split
        self.commands = [c for c in clips if c.word in commands]
        self.others = [
            c for c in clips if c.word not in commands and c.word not in BACKGROUND_LABELS
        ]
        self.speakers = len({c.speaker for c in clips})
        self.noise = [load_audio(p) for p in index.noise_files]
        if not self.others:
            raise ValueError(f"the {split} split has no non-command words to build streams from")


def negative_stretches(source: SplitSource, spec: StreamSpec, voices, rng):
    """(kind, float32 samples) stretches until spec.negative_hours are given."""
    kinds = [k for k, _ in spec.shares]
    weights = np.array([w for _, w in spec.shares], dtype=np.float64)
    total = int(spec.negative_hours * 3600 * SAMPLE_RATE)
    done = 0
    while done < total:
        kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
        seconds = min(rng.uniform(*STRETCH_S), (total - done) / SAMPLE_RATE)
        if kind == "words":
            wave, _ = words_over_noise([], source.others, source.noise, seconds, rng, False)
        elif kind == "speech":
            wave = conversation(seconds, voices, rng, talkers=int(rng.integers(1, 4)))
            wave += background(source.noise, len(wave), rng) if source.noise else 0
            wave = _level(wave, rng)
        elif kind == "tv":
            wave = _level(television(seconds, voices, rng), rng)
        elif kind == "music":
            wave = _level(music(seconds, rng), rng)
        else:
            wave = noise_stretch(seconds, source.noise, rng)
        wave = np.asarray(wave, np.float32)[: total - done]
        done += len(wave)
        yield kind, wave


def _write_wav(path: Path, blocks) -> list[tuple[str, float, float]]:
    """Blocks of float32 to a 16-bit WAV at `path`, atomically; the stretches
    written: (kind, start_s, end_s)."""
    import soundfile as sf

    from ..files import temp_beside

    fd, tmp = temp_beside(path)
    os.close(fd)
    stretches, done = [], 0
    try:
        with sf.SoundFile(tmp, "w", SAMPLE_RATE, 1, "PCM_16", format="WAV") as out:
            for kind, wave in blocks:
                out.write(wave)
                stretches.append((kind, done / SAMPLE_RATE, (done + len(wave)) / SAMPLE_RATE))
                done += len(wave)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return stretches


def seconds_by_kind(stretches) -> dict[str, float]:
    out: dict[str, float] = {}
    for kind, start, end in stretches:
        out[kind] = round(out.get(kind, 0.0) + end - start, 1)
    return out


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> None:
    from ..files import write_atomic

    write_atomic(path, "".join(",".join(row) + "\r\n" for row in [header, *rows]))


def write_truth(path: Path, truth: list[dict]) -> None:
    rows = [[t["label"], f"{round(t['start_s'], 3)}", f"{round(t['end_s'], 3)}"] for t in truth]
    write_rows(path, ["label", "start_s", "end_s"], rows)


MANIFEST = "streams.json"  # what `data streams` wrote in a folder: only these are replaced


def split_files(split: str) -> list[str]:
    return [f"{split}_{name}" for name in ("commands.wav", "truth.csv", "negatives.wav",
                                            "negatives.csv")]  # fmt: skip


def written(out_dir: Path) -> set[str]:
    """The files `data streams` wrote in `out_dir`, as its manifest lists them
    (read as a regular file, capped: a FIFO or a huge file there is no list)."""
    import json

    from ..files import FileRefused, read_text_capped

    manifest = out_dir / MANIFEST
    if not manifest.is_file():
        return set()
    try:
        files = json.loads(read_text_capped(manifest, 1 << 20, "streams manifest")).get("files")
    except (FileRefused, ValueError, AttributeError, OSError):
        return set()
    return {str(f) for f in files} if isinstance(files, list) else set()


def check_outputs(out_dir: Path, splits, force: bool = False) -> None:
    """Refuse (ValueError) to replace a file `data streams` did not write in
    `out_dir` (its manifest lists what it did), unless `force`."""
    from ..files import FileRefused, check_output

    ours = written(out_dir)
    for split in splits:
        for name in split_files(split):
            try:
                check_output(out_dir / name, lambda p: p.name in ours, force, "stream file")
            except FileRefused as exc:
                raise ValueError(str(exc)) from None


def note_outputs(out_dir: Path, names: list[str]) -> None:
    import json

    from ..files import write_atomic

    files = sorted(written(out_dir) | set(names))
    write_atomic(out_dir / MANIFEST, json.dumps({"files": files}, indent=1) + "\n")


def write_split(
    index,
    split: str,
    out_dir: Path,
    spec: StreamSpec,
    commands: bool = True,
    progress: Callable[[float], None] | None = None,
) -> dict:
    """SPLIT_commands.wav and SPLIT_truth.csv (if `commands`), SPLIT_negatives.wav;
    what was written. `progress(seconds)` as negative audio is made."""
    source = SplitSource(index, split)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([spec.seed, SPLITS.index(split)])
    summary: dict = {"split": split, "speakers": source.speakers}
    if commands and spec.minutes > 0:
        if not source.commands:
            raise ValueError(f"the {split} split has no command clips")
        wave, truth = words_over_noise(
            source.commands, source.others, source.noise, spec.minutes * 60, rng, True
        )
        _write_wav(out_dir / f"{split}_commands.wav", [("commands", wave)])
        write_truth(out_dir / f"{split}_truth.csv", truth)
        summary["commands"] = len(truth)
        summary["command_minutes"] = spec.minutes
    if spec.negative_hours > 0:
        voices = Voices(split, list(spec.engines))
        neg_rng = np.random.default_rng([spec.seed, SPLITS.index(split), 1])

        def reported():
            for kind, wave in negative_stretches(source, spec, voices, neg_rng):
                if progress:
                    progress(len(wave) / SAMPLE_RATE)
                yield kind, wave

        stretches = _write_wav(out_dir / f"{split}_negatives.wav", reported())
        # What each stretch is, for reading the false alarms by kind.
        write_rows(out_dir / f"{split}_negatives.csv", ["kind", "start_s", "end_s"],
                   [[k, f"{a:.3f}", f"{b:.3f}"] for k, a, b in stretches])  # fmt: skip
        summary["negative_seconds"] = seconds_by_kind(stretches)
        summary["voices"] = len(voices.voices)
    return summary
