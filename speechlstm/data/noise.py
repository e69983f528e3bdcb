"""Generated background noise: white, pink, brown and mains hum, with no downloads.

Used for the silence class and noise augmentation when a dataset brings no
`_background_noise_/` recordings, and written into synthetic datasets.
Babble (overlapping synthetic speech) is made in `synth.py`, where the
text-to-speech engines live.
"""

from __future__ import annotations

import numpy as np

from ..audio import SAMPLE_RATE

NOISE_KINDS = ("white", "pink", "brown", "hum")


def colored_noise(kind: str, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Noise with a 1/f^beta power spectrum (white 0, pink 1, brown 2), peak-normalised to 0.5."""
    beta = {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind]
    spectrum = np.fft.rfft(rng.standard_normal(n_samples))
    freqs = np.fft.rfftfreq(n_samples)
    freqs[0] = freqs[1]  # no division by zero at DC; DC is removed below anyway
    spectrum *= freqs ** (-beta / 2.0)
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n=n_samples)
    return _peak_normalise(noise)


def hum(n_samples: int, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mains hum (50 or 60 Hz with harmonics) over a little white noise, like a cheap recording."""
    base_hz = rng.choice([50.0, 60.0])
    t = np.arange(n_samples) / sample_rate
    signal = np.zeros(n_samples)
    for harmonic, level in ((1, 1.0), (2, 0.5), (3, 0.3), (5, 0.15)):
        phase = rng.uniform(0, 2 * np.pi)
        signal += level * np.sin(2 * np.pi * base_hz * harmonic * t + phase)
    signal += 0.05 * rng.standard_normal(n_samples)
    return _peak_normalise(signal)


def make_noise(
    kind: str, n_samples: int, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    if kind == "hum":
        return hum(n_samples, rng, sample_rate)
    if kind in ("white", "pink", "brown"):
        return colored_noise(kind, n_samples, rng)
    raise ValueError(f"unknown noise kind {kind!r}; choose from {', '.join(NOISE_KINDS)}")


def default_noise_bank(
    seconds_each: float = 30.0, seed: int = 0, sample_rate: int = SAMPLE_RATE
) -> list[np.ndarray]:
    """One long recording of each generated kind, for datasets that bring none."""
    rng = np.random.default_rng(seed)
    n = int(sample_rate * seconds_each)
    return [make_noise(kind, n, rng, sample_rate) for kind in NOISE_KINDS]


def _peak_normalise(x: np.ndarray, peak: float = 0.5) -> np.ndarray:
    top = float(np.max(np.abs(x))) or 1.0
    return (x * (peak / top)).astype(np.float32)
