"""Generated audio for the tests: tone "words" spoken by pitch-shifted "speakers".

Each word is a distinct pitch contour (rising, falling, two-tone, ...) so a
tiny model can learn them in seconds; a speaker scales the pitch, which gives
the speaker-disjoint splits something real to generalise over.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
WORD_CONTOURS = {
    "yes": (300.0, 900.0),  # rising sweep
    "no": (900.0, 300.0),  # falling sweep
    "up": (1200.0, 1200.0),  # high steady tone
    "down": (200.0, 200.0),  # low steady tone
    # Other words (transfer tests): contours the four above do not have.
    "left": (550.0, 550.0),  # middle steady tone
    "right": (250.0, 1500.0),  # steep rise
    "stop": (1500.0, 250.0),  # steep fall
}


def tone_word(
    word: str,
    speaker_scale: float = 1.0,
    seconds: float = 0.6,
    sr: int = SR,
    offset_s: float = 0.2,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """A 1 s clip holding the word's contour (with harmonics) inside light noise."""
    rng = rng or np.random.default_rng(0)
    start_hz, end_hz = WORD_CONTOURS[word]
    n = int(seconds * sr)
    freq = np.linspace(start_hz, end_hz, n) * speaker_scale
    phase = 2 * np.pi * np.cumsum(freq) / sr
    voice = sum(np.sin(k * phase) / k for k in (1, 2, 3)) * np.hanning(n) * 0.3
    clip = rng.standard_normal(sr) * 0.003
    start = int(offset_s * sr)
    clip[start : start + n] += voice[: sr - start]
    return clip.astype(np.float32)


def make_dataset(
    root: Path,
    words=("yes", "no", "up", "down"),
    speakers: int = 10,
    takes: int = 3,
    lists: bool = True,
    noise: bool = True,
    seed: int = 0,
) -> Path:
    """A Speech Commands-layout folder. With `lists`, speakers 1, 6, 11, ... are
    validation and 3, 8, 13, ... test (spread over the pitch range); the rest train."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    val, test = [], []
    for word in words:
        (root / word).mkdir(exist_ok=True)
        for s in range(speakers):
            scale = 0.8 + 0.4 * s / max(1, speakers - 1)
            for t in range(takes):
                name = f"spk{s:02d}_nohash_{t}.wav"
                clip = tone_word(word, scale, offset_s=rng.uniform(0.05, 0.3), rng=rng)
                sf.write(root / word / name, clip, SR, subtype="PCM_16")
                if s % 5 == 1:
                    val.append(f"{word}/{name}")
                elif s % 5 == 3:
                    test.append(f"{word}/{name}")
    if lists:
        (root / "validation_list.txt").write_text("\n".join(val) + "\n")
        (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    if noise:
        (root / "_background_noise_").mkdir(exist_ok=True)
        sf.write(
            root / "_background_noise_" / "pink.wav",
            (rng.standard_normal(SR * 5) * 0.05).astype(np.float32),
            SR,
        )
    return root


# A command stream for the detector tests: four tone words at these starts
# (seconds), in light noise; the tiny test model's working threshold on it.
STREAM_TRUTH = [(2.0, "yes"), (5.0, "up"), (8.5, "no"), (11.0, "down")]
STREAM_THRESHOLD = 0.37  # the tiny test model is never very confident (noise peaks at 0.27)


def tone_stream(seconds: float = 14.0, noise: float = 0.003, seed: int = 0) -> np.ndarray:
    """STREAM_TRUTH's words, each in its own 1 s clip (word from +0.2 s), in noise."""
    rng = np.random.default_rng(seed)
    stream = (rng.standard_normal(int(SR * seconds)) * noise).astype(np.float32)
    for start_s, word in STREAM_TRUTH:
        start = int(start_s * SR)
        stream[start : start + SR] += tone_word(word, 1.0, offset_s=0.2, rng=rng)
    return stream
