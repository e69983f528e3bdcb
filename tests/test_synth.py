"""Text-to-speech engines and synthetic datasets (each engine test runs when it is installed)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from speechlstm.datasets import check_speakers_disjoint, discover
from speechlstm.labels import UNKNOWN, make_task
from speechlstm.synth import SynthConfig, plan, synthesize_dataset, trim
from speechlstm.tts import ENGINES, Voice

pytestmark = pytest.mark.tts


def _engine_or_skip(name):
    engine = ENGINES[name]()
    if not engine.available():
        pytest.skip(f"{name} is not installed ({engine.install_hint})")
    return engine


def _voiced_seconds(wave, rate):
    frame = rate // 100
    n = len(wave) // frame
    energy = (wave[: n * frame].reshape(n, frame) ** 2).mean(axis=1)
    return (energy > energy.max() * 1e-3).sum() / 100


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_engine_speaks_and_rate_changes_duration(name):
    engine = _engine_or_skip(name)
    voice = engine.voices()[0]
    slow, rate = engine.render("seven", voice, 0.7, 1.0)
    fast, rate_fast = engine.render("seven", voice, 1.4, 1.0)
    assert slow.dtype == np.float32 and rate >= 8000 and np.isfinite(slow).all()
    assert np.abs(slow).max() > 0.05  # audible speech, not silence
    assert 0.15 < _voiced_seconds(slow, rate) < 2.5
    assert len(fast) / rate_fast < 0.85 * len(slow) / rate


def test_espeak_offers_many_accents_and_voices():
    engine = _engine_or_skip("espeak")
    voices = engine.voices()
    assert len(voices) >= 300
    assert len({v.name.split("+")[0] for v in voices}) >= 8
    assert len({v.id for v in voices}) == len(voices)


def test_text_is_never_interpreted_by_a_shell():
    engine = _engine_or_skip("espeak")
    wave, _ = engine.render("$(touch /tmp/speechlstm-pwned); yes", engine.voices()[0], 1.0, 1.0)
    assert len(wave) > 0
    import os

    assert not os.path.exists("/tmp/speechlstm-pwned")


def test_plan_is_seeded_and_keeps_one_speaker_per_voice_and_warp():
    voices = [Voice("espeak", f"v{i}", f"espeak-v{i}") for i in range(30)] + [
        Voice("piper", "joe", "piper-joe")
    ]
    cfg = SynthConfig(words=("yes", "lights on"), clips_per_word=50, unknown_clips=20)
    a, b = plan(cfg, voices), plan(cfg, voices)
    assert a == b and len(a) == 120
    paths = [j.relpath() for j in a]
    assert len(set(paths)) == len(paths)  # take numbers never collide
    assert sum(j.folder == UNKNOWN for j in a) == 20
    assert all(0.75 <= j.rate <= 1.35 for j in a)


def test_trim_cuts_silence_around_speech():
    wave = np.zeros(16000, np.float32)
    wave[4000:8000] = np.sin(np.arange(4000) * 0.3) * 0.5
    out = trim(wave)
    assert 3900 <= len(out) <= 4400


def test_synthesized_dataset_is_trainable_layout(tmp_path):
    _engine_or_skip("espeak")
    cfg = SynthConfig(
        words=("lights on", "stop"),
        clips_per_word=12,
        unknown_clips=6,
        engines=("espeak", "flite"),
        noise_seconds=3.0,
        workers=2,
    )
    out = tmp_path / "mywords"
    summary = synthesize_dataset(cfg, out, show_progress=False)
    assert summary["made"] == 30 and summary["failed"] == 0
    clips = sorted((out / "lights on").glob("*_nohash_*.wav"))
    assert len(clips) == 12
    wave, rate = sf.read(clips[0])
    assert rate == 16000 and len(wave) == 16000 and 0.01 < np.abs(wave).max() <= 0.96
    noise = sorted(p.stem for p in (out / "_background_noise_").glob("*.wav"))
    assert noise == ["babble", "brown", "hum", "pink", "white"]
    index = discover(out)
    assert check_speakers_disjoint(index) == {}
    task = make_task(None, None, index.words)
    assert task.labels == ("lights on", "stop", "_unknown_", "_silence_")
    # Running again continues: nothing is remade, nothing is lost.
    again = synthesize_dataset(cfg, out, show_progress=False)
    assert again["made"] == 0 and again["skipped_existing"] == 30


def test_no_engine_is_a_clear_error(tmp_path, monkeypatch):
    import speechlstm.synth as synth

    monkeypatch.setattr(synth, "available_engines", lambda names: ([], ["espeak not installed"]))
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        synthesize_dataset(SynthConfig(words=("a",)), tmp_path / "x", show_progress=False)


def test_sc12_preset_pins_its_voice_set(tmp_path, monkeypatch):
    import speechlstm.synth as synth
    from speechlstm.synth import sc12_config

    cfg = sc12_config(clips_per_word=1)
    assert cfg.words[:3] == ("yes", "no", "up") and cfg.unknown_layout == "folders"
    seen = {}

    def fake_plan(c, voices):
        seen["ids"] = [v.id for v in voices]
        return []

    class Engine:
        name = "festival"

        def voices(self):
            return [
                Voice("festival", "kal_diphone", "festival-kal"),
                Voice("festival", "ked_diphone", "festival-ked"),
            ]

    monkeypatch.setattr(synth, "available_engines", lambda names: ([Engine()], []))
    monkeypatch.setattr(synth, "plan", fake_plan)
    monkeypatch.setattr(synth, "write_noise", lambda *a: None)
    synthesize_dataset(cfg, tmp_path / "d", show_progress=False)
    assert seen["ids"] == ["festival-kal"]  # a voice installed later does not change the draw
