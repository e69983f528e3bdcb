"""The streaming benchmark's truth (bench/streaming.py): where a command's word
lies in its clip decides which detections match it and how late they are."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("soundfile")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from streaming import word_span  # noqa: E402

RATE = 16_000


def _clip_with_word_at(start_s: float, noise_db: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.3 * RATE)) / RATE
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms in and out
    word = 0.25 * (np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 660 * t)) * ramp
    clip = rng.normal(0, 1, RATE) * 0.5 * 10 ** (noise_db / 20) / np.sqrt(2)
    at = int(start_s * RATE)
    clip[at : at + word.size] += word
    return clip.astype(np.float32)


@pytest.mark.parametrize("start_s", [0.05, 0.35, 0.65])
def test_the_span_is_the_word_not_the_noise_around_it(start_s):
    # Noise 25 dB under the word: within 30 dB of the peak, so a span by the
    # peak alone is the whole clip and centres every word at 0.5 s.
    clip = _clip_with_word_at(start_s, noise_db=-25.0)
    lo, hi = word_span(clip)
    assert abs(lo / RATE - start_s) <= 0.03
    assert abs(hi / RATE - (start_s + 0.3)) <= 0.03


def test_a_click_far_from_the_word_is_not_the_span():
    clip = _clip_with_word_at(0.2, noise_db=-40.0)
    clip[15_000:15_040] = 0.95  # louder than the word, 40 samples long
    lo, hi = word_span(clip)
    assert lo / RATE < 0.25 and hi / RATE < 0.6


def test_a_clip_with_nothing_standing_out_spans_whole():
    assert word_span(np.zeros(RATE, np.float32)) == (0, RATE)


def test_the_ceiling_benchmarks_centred_window_holds_the_word_in_its_middle():
    """bench/cascade_ceiling.py's word-centred verifier window: a burst early in
    the candidate's window is moved to the middle of what the verifier hears, and
    audio after the candidate is used only when the detector would wait for it."""
    from cascade_ceiling import CentredWave

    heard = []

    class Recorder:  # the verifier's interface: window, rec.sample_rate, probs, rule
        window = RATE
        rec = type("Rec", (), {"sample_rate": RATE})()

        def probs(self, clip):
            heard.append(clip)
            return np.zeros(3, np.float32)

    wave = np.zeros(10 * RATE, np.float32)
    wave[int(4.2 * RATE) : int(4.5 * RATE)] = 0.5  # 300 ms word at 4.2-4.5 s
    end = 5 * RATE  # the candidate's window: 4-5 s, word early in it
    CentredWave(Recorder(), wave).probs(end)
    loud = np.flatnonzero(heard[-1])
    assert heard[-1].size == RATE
    assert abs((loud[0] + loud[-1]) / 2 - RATE / 2) < 0.02 * RATE  # the word in the middle
    # A word at the window's very end: without waiting, the window cannot reach past it.
    wave[:] = 0
    wave[int(4.85 * RATE) : int(5.15 * RATE)] = 0.5
    CentredWave(Recorder(), wave).probs(end)
    assert np.flatnonzero(heard[-1])[-1] == RATE - 1  # cut at the candidate's end
    CentredWave(Recorder(), wave, after=RATE // 5).probs(end)
    loud = np.flatnonzero(heard[-1])
    assert loud.size == int(0.3 * RATE)  # waiting 200 ms: the whole word, up to 5.2 s
    assert loud[-1] == RATE - 1 - int(0.05 * RATE)
