"""Synthetic speech datasets in the Speech Commands layout, from text alone.

    words -> jobs (voice, speaker warp, rate, pitch) -> TTS engine -> 16 kHz
    -> speaker warp -> trim -> loudness -> random offset in a 1 s clip
    -> <word>/<speaker>_nohash_<n>.wav, plus generated _background_noise_/.

A "speaker" is an engine voice under one of a few vocal-tract warps, and its
id leads the file name, so the dataset's own hash split keeps voices apart.
Every job is derived from the seed, so a run can be repeated exactly, and an
interrupted run continues: files already written are skipped.
"""

from __future__ import annotations

import io
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio import SAMPLE_RATE, crop_loudest, to_mono_16k
from ..files import FileRefused, FolderLock, write_atomic
from ..labels import BACKGROUND_NOISE_DIR, SC12_WORDS, SC35_WORDS, UNKNOWN
from ..progress import note, progress_bar
from .noise import make_noise
from .tts import EngineError, Voice, available_engines, normalize_lang, speaks

# Share of clips per engine (renormalised over the engines present): espeak
# brings accents and many voices, piper the most natural prosody. espeak-ng's
# mbrola voices (diphone recordings of real speakers, not formants) draw as
# their own family: among espeak-ng's 416 variants they would get 1% of clips.
ENGINE_WEIGHTS = {
    "espeak": 0.5,
    "piper": 0.25,
    "flite": 0.15,
    "mbrola": 0.15,
    "festival": 0.1,
    "pico": 0.1,
}
WARPS = (0.86, 0.94, 1.0, 1.08, 1.16)  # vocal-tract warp per speaker (resampling factor)
FILLER_WORDS = (
    "apple",
    "table",
    "window",
    "seven",
    "morning",
    "yellow",
    "music",
    "paper",
    "garden",
    "water",
    "happy",
    "number",
    "river",
    "little",
    "orange",
    "pencil",
    "doctor",
    "summer",
    "button",
    "simple",
    "market",
    "kitchen",
    "over",
    "about",
    "hello",
    "maybe",
    "thank you",
    "coffee",
    "light",
    "open",
    "close",
    "later",
    "never",
    "people",
    "again",
    "really",
)
# `_unknown_` words for languages other than English (the CLI picks them for
# --lang): everyday words that sound like none of a typical command set.
FILLER_WORDS_BY_LANG = {
    "en": FILLER_WORDS,
    "de": (
        "apfel", "tisch", "fenster", "sieben", "morgen", "gelb", "musik", "papier",
        "garten", "wasser", "fröhlich", "nummer", "fluss", "klein", "orange", "bleistift",
        "doktor", "sommer", "knopf", "einfach", "markt", "küche", "vielleicht", "danke",
    ),
    "fr": (
        "pomme", "table", "fenêtre", "sept", "matin", "jaune", "musique", "papier",
        "jardin", "eau", "heureux", "numéro", "rivière", "petit", "orange", "crayon",
        "docteur", "été", "bouton", "simple", "marché", "cuisine", "peut-être", "merci",
    ),
    "es": (
        "manzana", "mesa", "ventana", "siete", "mañana", "amarillo", "música", "papel",
        "jardín", "agua", "feliz", "número", "río", "pequeño", "naranja", "lápiz",
        "doctor", "verano", "botón", "sencillo", "mercado", "cocina", "quizás", "gracias",
    ),
}  # fmt: skip


def filler_words(lang: str) -> tuple[tuple[str, ...], bool]:
    """The `_unknown_` words for `lang`, and whether they are in that language
    (False: the English list, spoken by that language's voices)."""
    base = normalize_lang(lang).split("-")[0]
    if base in FILLER_WORDS_BY_LANG:
        return FILLER_WORDS_BY_LANG[base], True
    return FILLER_WORDS, False


BABBLE_TEXT = (
    "the weather is nice today and we could go for a walk later",
    "please remember to buy milk bread and some fresh vegetables",
    "the meeting starts at nine so we should leave a little early",
    "she told me the story of her trip across the mountains",
    "turn the page and read the next chapter out loud",
    "there is a new restaurant around the corner near the station",
)


@dataclass(frozen=True)
class SynthConfig:
    words: tuple[str, ...]
    clips_per_word: int = 100
    # Other words for the `_unknown_` class. "folders": one folder per word (the
    # Speech Commands layout); "single": all in one `_unknown_/` folder.
    unknown_words: tuple[str, ...] = FILLER_WORDS
    unknown_clips: int = 300  # total over all unknown words
    unknown_layout: str = "single"
    engines: tuple[str, ...] = ()  # empty: every installed engine
    # Voices that speak this language ("en": every English accent; "fr-be" only
    # Belgian French). tts.speaks() decides.
    lang: str = "en"
    # Voice ids starting with any of these are left out: pins a recipe's voice
    # set when more voices get installed later.
    exclude_voices: tuple[str, ...] = ()
    # At most this many voices, a seeded draw of those that speak `lang`
    # (the custom-words protocol's voice-count lever); 0: every one.
    max_voices: int = 0
    # Vocal-tract warps each voice is heard under (a subset of WARPS): each
    # is another "speaker"; (1.0,) is the engines' own voices.
    warps: tuple[float, ...] = WARPS
    rate_range: tuple[float, float] = (0.75, 1.35)  # speaking-rate factor
    pitch_range: tuple[float, float] = (0.75, 1.35)  # engine pitch factor
    level_dbfs_range: tuple[float, float] = (-32.0, -14.0)  # RMS level of the speech
    noise_seconds: float = 60.0
    seed: int = 0
    workers: int = 4


@dataclass(frozen=True)
class Job:
    text: str
    folder: str
    voice: Voice
    warp: float
    rate: float
    pitch: float
    level_dbfs: float
    offset: float  # where in the clip's free space the speech starts, 0..1
    n: int  # take number of this speaker for this folder

    @property
    def speaker(self) -> str:
        return f"{self.voice.id}-w{WARPS.index(self.warp)}"

    def relpath(self) -> str:
        return f"{self.folder}/{self.speaker}_nohash_{self.n}.wav"


def sc12_config(clips_per_word: int = 300, seed: int = 0) -> SynthConfig:
    """The default model's data: the ten commands plus the other Speech Commands words."""
    others = tuple(w for w in SC35_WORDS if w not in SC12_WORDS)
    return SynthConfig(
        words=SC12_WORDS,
        clips_per_word=clips_per_word,
        unknown_words=others,
        unknown_clips=clips_per_word * 4,
        unknown_layout="folders",
        seed=seed,
        # The voice set the shipped model was made with: 416 espeak-ng, 4 flite,
        # festival kal, piper joe. Voices installed later (other festvox
        # packages, mbrola, pico) would change every clip's draw.
        engines=("espeak", "festival", "flite", "piper"),
        exclude_voices=("festival-ked", "festival-cmu", "espeak-mb-"),
    )


def vocabulary_config(words: tuple[str, ...], clips_per_word: int, seed: int = 0) -> SynthConfig:
    """The pretrained encoder's synthesized vocabulary (scripts/synth_vocab.sh): `words`
    in the voices it was made with, so that installing more (mbrola, pico) does
    not change its clips: 416 espeak-ng, 4 flite, festival kal, ked and cmu, piper joe."""
    return SynthConfig(
        words=words,
        clips_per_word=clips_per_word,
        unknown_clips=0,
        seed=seed,
        engines=("espeak", "festival", "flite", "piper"),
        exclude_voices=("espeak-mb-",),
    )


def voice_family(voice: Voice) -> str:
    """The group a voice is drawn in (ENGINE_WEIGHTS): its engine, or "mbrola"."""
    return "mbrola" if voice.id.startswith("espeak-mb-") else voice.engine


def plan(cfg: SynthConfig, voices: list[Voice]) -> list[Job]:
    """Every clip to make, derived from the seed alone (so runs repeat and resume)."""
    rng = np.random.default_rng(cfg.seed)
    by_engine: dict[str, list[Voice]] = {}
    for v in voices:
        by_engine.setdefault(voice_family(v), []).append(v)
    engines = sorted(by_engine)
    weights = np.array([ENGINE_WEIGHTS.get(e, 0.1) for e in engines])
    weights /= weights.sum()
    items = [(w, _folder(w)) for w in cfg.words for _ in range(cfg.clips_per_word)]
    for k in range(cfg.unknown_clips if cfg.unknown_words else 0):
        word = cfg.unknown_words[k % len(cfg.unknown_words)]
        items.append((word, _folder(word) if cfg.unknown_layout == "folders" else UNKNOWN))
    takes: Counter = Counter()
    jobs = []
    for text, folder in items:
        engine = engines[rng.choice(len(engines), p=weights)]
        voice = by_engine[engine][rng.integers(len(by_engine[engine]))]
        warp = cfg.warps[rng.integers(len(cfg.warps))]
        key = (folder, voice.id, warp)
        jobs.append(
            Job(
                text,
                folder,
                voice,
                warp,
                rng.uniform(*cfg.rate_range),
                rng.uniform(*cfg.pitch_range),
                rng.uniform(*cfg.level_dbfs_range),
                rng.random(),
                takes[key],
            )
        )
        takes[key] += 1
    return jobs


def _folder(word: str) -> str:
    return word.strip()


def render_clip(engine, job: Job, clip_samples: int = SAMPLE_RATE) -> np.ndarray:
    """One finished 1 s clip (float32) for `job`."""
    wave, rate = engine.render(job.text, job.voice, job.rate, job.pitch)
    # Speaker warp: read the samples as if recorded at rate*warp. Pitch and
    # formants scale by `warp`, like a shorter or longer vocal tract.
    wave = to_mono_16k(wave, round(rate * job.warp), SAMPLE_RATE)
    wave = trim(wave)
    if len(wave) > clip_samples:  # a long phrase: keep the loudest second
        wave = crop_loudest(wave, clip_samples)
    rms = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2))) or 1e-9
    wave = wave * (10 ** (job.level_dbfs / 20) / rms)
    peak = float(np.abs(wave).max())
    if peak > 0.95:
        wave *= 0.95 / peak
    clip = np.zeros(clip_samples, dtype=np.float32)
    start = int(job.offset * (clip_samples - len(wave)))
    clip[start : start + len(wave)] = wave
    return clip


def trim(wave: np.ndarray, top_db: float = 40.0, frame: int = 160) -> np.ndarray:
    """Cut leading and trailing frames more than `top_db` below the loudest frame."""
    n = len(wave) // frame
    if n == 0:
        return wave
    energy = (wave[: n * frame].reshape(n, frame).astype(np.float64) ** 2).mean(axis=1)
    loud = np.flatnonzero(
        10 * np.log10(energy + 1e-12) > 10 * np.log10(energy.max() + 1e-12) - top_db
    )
    if loud.size == 0:
        return wave
    return wave[loud[0] * frame : (loud[-1] + 1) * frame]


def synthesize_dataset(cfg: SynthConfig, out_dir: str | Path, show_progress=None) -> dict:
    """Write the dataset; returns counts. Raises RuntimeError when no engine is installed."""
    out = Path(out_dir)
    engines, notes = available_engines(list(cfg.engines) or None)
    for line in notes:
        note(line)
    if not engines:
        raise RuntimeError(
            "no text-to-speech engine is installed; install espeak-ng "
            "(apt-get install espeak-ng) or piper (pip install 'speechlstm[tts]')"
        )
    voices = voices_for(engines, cfg.lang)
    engines = [e for e in engines if any(v.engine == e.name for v in voices)]
    by_name = {e.name: e for e in engines}
    voices = [v for v in voices if not (cfg.exclude_voices and v.id.startswith(cfg.exclude_voices))]
    if not cfg.warps or any(w not in WARPS for w in cfg.warps):
        raise ValueError(f"warps {cfg.warps}: choose from {WARPS}")
    if 0 < cfg.max_voices < len(voices):
        pick = np.random.default_rng([cfg.seed, 7]).choice(len(voices), cfg.max_voices, False)
        voices = [voices[i] for i in sorted(pick)]
    jobs = plan(cfg, voices)
    todo = [j for j in jobs if not (out / j.relpath()).is_file()]
    failures: list[str] = []

    def work(job: Job) -> None:
        try:
            clip = render_clip(by_name[job.voice.engine], job)
        except EngineError as exc:
            failures.append(f"{job.relpath()}: {exc}")
            return
        path = out / job.relpath()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, clip)

    with FolderLock(out, "dataset folder"):
        with (
            progress_bar("synthesizing", len(todo), enabled=show_progress, unit="clips") as advance,
            ThreadPoolExecutor(max_workers=max(1, cfg.workers)) as pool,
        ):
            for _ in pool.map(work, todo):
                advance(1)
        write_noise(out / BACKGROUND_NOISE_DIR, cfg, by_name)
    if failures:
        note(f"{len(failures)} clip(s) failed, e.g. {failures[0]}")
    made = Counter(j.voice.engine for j in todo) if todo else Counter()
    return {
        "clips": len(jobs),
        "made": len(todo) - len(failures),
        "skipped_existing": len(jobs) - len(todo),
        "failed": len(failures),
        "voices": len(voices),
        "engines": sorted(by_name),
        "per_engine": dict(made),
    }


def voices_for(engines: list, lang: str) -> list[Voice]:
    """Every voice of `engines` that speaks `lang`; a ValueError naming the languages
    they do speak when none does."""
    voices = [v for e in engines for v in e.voices() if speaks(v, lang)]
    if not voices:
        known = sorted({v.lang for e in engines for v in e.voices()})
        raise ValueError(
            f"no installed voice speaks {lang!r} (engines: {', '.join(e.name for e in engines)}); "
            f"languages available ({len(known)}): {', '.join(known)}"
        )
    return voices


def write_wav(path: Path, clip: np.ndarray) -> None:
    """16-bit WAV, written atomically: whole or absent (safe to resume), and in
    place of a link, never through it."""
    buf = io.BytesIO()
    sf.write(buf, clip, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    write_atomic(path, buf.getvalue(), fsync=False)


def write_noise(folder: Path, cfg: SynthConfig, engines: dict) -> None:
    """White, pink, brown, hum and babble recordings for silence and noise mixing.
    A file already there is kept (a resumed run), a link there is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([cfg.seed, 99])
    n = int(cfg.noise_seconds * SAMPLE_RATE)
    for kind in ("white", "pink", "brown", "hum", "babble"):
        path = folder / f"{kind}.wav"
        if path.is_symlink():
            raise FileRefused(f"{path}: is a symbolic link; remove it, the noise is written there")
        if path.is_file() or (kind == "babble" and not engines):
            continue
        if kind == "babble":
            write_wav(path, babble(n, engines, rng, cfg.lang))
        else:
            write_wav(path, make_noise(kind, n, rng))


def babble(
    n_samples: int, engines: dict, rng: np.random.Generator, lang: str = "en", talkers: int = 6
) -> np.ndarray:
    """Several synthetic talkers reading sentences at once: crowd-like noise without words
    a model could pick out (the dataset's language's voices reading English text)."""
    voices = [v for e in engines.values() for v in e.voices() if speaks(v, lang)]
    mix = np.zeros(n_samples, dtype=np.float64)
    for _ in range(talkers):
        track, pos = np.zeros(n_samples), int(rng.integers(0, SAMPLE_RATE))
        while pos < n_samples:
            voice = voices[rng.integers(len(voices))]
            text = BABBLE_TEXT[rng.integers(len(BABBLE_TEXT))]
            try:
                wave, rate = engines[voice.engine].render(text, voice, 1.0, 1.0)
            except EngineError:
                break
            wave = to_mono_16k(wave, rate)
            wave = wave / (np.abs(wave).max() or 1.0)
            end = min(n_samples, pos + len(wave))
            track[pos:end] += wave[: end - pos]
            pos = end + int(rng.integers(0, SAMPLE_RATE // 4))
        mix += track * rng.uniform(0.5, 1.0)
    return (mix * (0.5 / (np.abs(mix).max() or 1.0))).astype(np.float32)
