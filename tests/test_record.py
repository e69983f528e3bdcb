"""`speechlstm data record` against a virtual microphone fed by a WAV."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from speechlstm.testing.synth_audio import SR, tone_word

pytestmark = pytest.mark.mic


@pytest.mark.slow
def test_record_prompts_and_keeps_the_spoken_second(quiet_mic, tmp_path):
    word = tmp_path / "word.wav"
    sf.write(word, tone_word("up", 1.0, offset_s=0.2) * 2, SR, subtype="PCM_16")
    # More takes played than the four needed: the recorder may start a few seconds
    # late on a loaded machine (a first import compiles), and the playback
    # stops with the test (quiet_mic silences it).
    quiet_mic.play(word, times=30, gap_s=0.2)
    out = tmp_path / "mine"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "speechlstm",
            "data",
            "record",
            "--words",
            "up,down",
            "--takes",
            "2",
            "--out",
            str(out),
            "--speaker",
            "tester",
            "--seconds",
            "1.2",
        ],
        env=quiet_mic.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "say 'up'  (1/2)" in done.stderr and "say 'down'  (2/2)" in done.stderr
    clips = sorted(out.glob("*/tester_nohash_*.wav"))
    assert [c.relative_to(out).as_posix() for c in clips] == [
        "down/tester_nohash_0.wav",
        "down/tester_nohash_1.wav",
        "up/tester_nohash_0.wav",
        "up/tester_nohash_1.wav",
    ]
    wave, rate = sf.read(clips[-1])
    assert rate == 16000 and len(wave) == 16000
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) - 1200) < 40  # the 1200 Hz "up" tone was captured


def test_missing_device_is_a_clear_error(quiet_mic, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "speechlstm",
            "data",
            "record",
            "--words",
            "yes",
            "--out",
            str(tmp_path / "x"),
            "--device",
            "no-such-device",
        ],
        env=quiet_mic.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no input device 'no-such-device'; available:" in done.stderr
    assert "Traceback" not in done.stderr
