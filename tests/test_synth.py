"""Text-to-speech engines and synthetic datasets (each engine test runs when it is installed)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from speechlstm.data.datasets import check_speakers_disjoint, discover
from speechlstm.data.synth import SynthConfig, plan, synthesize_dataset, trim
from speechlstm.data.tts import ENGINES, Voice
from speechlstm.labels import UNKNOWN, make_task

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


def test_mbrola_voices_draw_as_their_own_family_not_as_one_espeak_variant_of_hundreds():
    voices = [Voice("espeak", f"en+v{i}", f"espeak-en-v{i}") for i in range(400)] + [
        Voice("espeak", "mb-us1", "espeak-mb-us1"),
        Voice("espeak", "mb-us2", "espeak-mb-us2"),
    ]
    jobs = plan(SynthConfig(words=("yes",), clips_per_word=2000), voices)
    mbrola_share = sum(j.voice.id.startswith("espeak-mb-") for j in jobs) / len(jobs)
    # espeak 0.5 and mbrola 0.15 renormalised: 0.23 (as an espeak variant: 0.005)
    assert 0.18 < mbrola_share < 0.28


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
    import speechlstm.data.synth as synth

    monkeypatch.setattr(synth, "available_engines", lambda names: ([], ["espeak not installed"]))
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        synthesize_dataset(SynthConfig(words=("a",)), tmp_path / "x", show_progress=False)


def _voices_drawn(cfg, offered, monkeypatch, tmp_path, asked=None) -> list[str]:
    """The voice ids `synthesize_dataset(cfg)` plans with when one engine offers `offered`."""
    import speechlstm.data.synth as synth

    seen = {}

    class Engine:
        name = offered[0].engine

        def voices(self):
            return offered

    def engines(names):
        if asked is not None:
            assert names == asked
        return [Engine()], []

    def fake_plan(c, vs):
        seen["ids"] = [v.id for v in vs]
        return []

    monkeypatch.setattr(synth, "available_engines", engines)
    monkeypatch.setattr(synth, "plan", fake_plan)
    monkeypatch.setattr(synth, "write_noise", lambda *a: None)
    synthesize_dataset(cfg, tmp_path / "d", show_progress=False)
    return seen["ids"]


def test_sc12_preset_pins_its_voice_set(tmp_path, monkeypatch):
    from speechlstm.data.synth import sc12_config

    cfg = sc12_config(clips_per_word=1)
    assert cfg.words[:3] == ("yes", "no", "up") and cfg.unknown_layout == "folders"
    voices = [
        Voice("festival", "kal_diphone", "festival-kal"),
        Voice("festival", "ked_diphone", "festival-ked"),
    ]
    # a voice installed later does not change the draw
    assert _voices_drawn(cfg, voices, monkeypatch, tmp_path) == ["festival-kal"]


def test_the_encoder_vocabulary_pins_its_voice_set(tmp_path, monkeypatch):
    """make encoder's synthesized words keep their clips when mbrola or pico are
    installed later (they would change every draw and add clips)."""
    from speechlstm.data.synth import vocabulary_config

    cfg = vocabulary_config(("apple", "river"), clips_per_word=2)
    assert cfg.unknown_clips == 0 and "pico" not in cfg.engines
    voices = [
        Voice("espeak", "en-us", "espeak-en-us", lang="en-us"),
        Voice("espeak", "mb-us1", "espeak-mb-us1", lang="en-us"),
    ]
    # pico is never asked for, mbrola's voices are left out
    ids = _voices_drawn(cfg, voices, monkeypatch, tmp_path, asked=list(cfg.engines))
    assert ids == ["espeak-en-us"]


def test_languages_choose_voices_and_english_keeps_the_presets_set():
    from speechlstm.data.tts import speaks

    engine = _engine_or_skip("espeak")
    voices = engine.voices()
    english = [v for v in voices if speaks(v, "en")]
    # The sc12 preset draws from this list: English first, in the fixed order.
    assert voices[: len(english)] == english
    assert {v.id.split("-")[1] for v in english} <= {"en", "mb"}
    assert len([v for v in english if v.id.startswith("espeak-en")]) == 8 * len(engine.variants)
    german = [v for v in voices if speaks(v, "de")]
    french = [v for v in voices if speaks(v, "fr")]
    # espeak-ng's own German voices, and mbrola's (mb-de1 ...) after `make voices`
    assert german and all(v.lang == "de" and v.name.startswith(("de", "mb-de")) for v in german)
    assert {"fr-fr", "fr-be"} <= {v.lang for v in french}
    assert not [v for v in voices if speaks(v, "fr-be") and v.lang != "fr-be"]
    assert len({v.id for v in voices}) == len(voices)


def test_a_language_changes_the_pronunciation():
    engine = _engine_or_skip("espeak")
    by_id = {v.id: v for v in engine.voices()}
    en, _ = engine.render("licht an", by_id["espeak-en-us-m1"], 1.0, 1.0)
    de, _ = engine.render("licht an", by_id["espeak-de-m1"], 1.0, 1.0)
    assert np.abs(de).max() > 0.05
    n = min(len(en), len(de))
    assert len(en) != len(de) or not np.allclose(en[:n], de[:n], atol=1e-3)


@pytest.mark.parametrize(
    ("lang", "words"), [("de", "licht an,licht aus"), ("fr", "allume la lumière,éteins")]
)
@pytest.mark.slow
def test_synth_in_another_language_from_the_command_line(tmp_path, lang, words):
    from typer.testing import CliRunner

    from speechlstm.cli.main import app
    from speechlstm.data.synth import FILLER_WORDS_BY_LANG

    _engine_or_skip("espeak")
    out = tmp_path / lang
    args = ["data", "synth", "--lang", lang, "--words", words, "--clips", "4"]
    result = CliRunner().invoke(app, args + ["--unknown-clips", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    from speechlstm.data.synth import voices_for
    from speechlstm.data.tts import available_engines

    speakers = {v.id for v in voices_for(available_engines()[0], lang)}
    for word in words.split(","):
        clips = sorted((out / word).glob("*.wav"))
        assert len(clips) == 4
        assert all(p.name.rsplit("-w", 1)[0] in speakers for p in clips)  # its voices only
        wave, rate = sf.read(clips[0])
        assert rate == 16000 and np.abs(wave).max() > 0.01
    assert len(list((out / UNKNOWN).glob("*.wav"))) == 4
    assert lang in FILLER_WORDS_BY_LANG  # _unknown_ words in the language itself


def test_a_language_nobody_speaks_is_an_error_listing_the_available_ones(tmp_path):
    from typer.testing import CliRunner

    from speechlstm.cli.main import app

    _engine_or_skip("espeak")
    runner = CliRunner()
    result = runner.invoke(
        app, ["data", "synth", "--lang", "tlh", "--words", "qapla", "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 2
    assert "no installed voice speaks 'tlh'" in result.stderr
    assert " de," in result.stderr and " fr-fr," in result.stderr
    assert not (tmp_path / "x").exists()
    listing = runner.invoke(app, ["data", "synth", "--list-voices", "--lang", "de"])
    assert listing.exit_code == 0, listing.output
    lines = listing.stdout.splitlines()
    # "de" (espeak-ng, mbrola) and "de-de" (pico, after `make voices`)
    assert lines[-1].endswith("voices speak de") and all(
        line.split()[0] in ("de", "de-de") for line in lines[:-1]
    )
    summary = runner.invoke(app, ["data", "synth", "--list-voices"])
    assert any(line.startswith("fr-be ") for line in summary.stdout.splitlines())
