"""The truth of `speechlstm data streams` (speechlstm/data/streams.py): where a
command's word lies in its clip decides which detections match it and how late
they are; and the streams themselves."""

from __future__ import annotations

import numpy as np
import pytest

from speechlstm.data.streams import word_span

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


def _espeak() -> bool:
    import shutil

    return shutil.which("espeak-ng") is not None


@pytest.mark.slow
@pytest.mark.skipif(not _espeak(), reason="espeak-ng is not installed (make install adds it)")
def test_data_streams_writes_commands_truth_and_negatives_of_every_kind(tmp_path):
    """A Speech Commands-layout tree of tone words (yes/no commands, cat/dog other
    words) -> the command stream with its truth, and negatives of the asked
    length holding each kind, listed stretch by stretch; the same seed, the same
    files."""
    import csv

    import soundfile as sf
    from typer.testing import CliRunner

    from speechlstm.cli.main import app
    from speechlstm.testing.synth_audio import make_dataset

    tree = make_dataset(tmp_path / "tree", words=("yes", "no", "up", "down"), speakers=10)
    for old, new in (("up", "cat"), ("down", "dog")):  # two words that are not commands
        (tree / old).rename(tree / new)
        for listing in ("validation_list.txt", "testing_list.txt"):
            path = tree / listing
            path.write_text(path.read_text().replace(f"{old}/", f"{new}/"))
    args = ["data", "streams", str(tree), "--split", "validation", "--minutes", "0.5",
            "--negative-hours", "0.05"]  # fmt: skip
    first = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    out = tmp_path / "a"
    commands, rate = sf.read(out / "validation_commands.wav")
    assert rate == 16000 and abs(len(commands) / rate - 30) < 0.1
    with open(out / "validation_truth.csv", newline="") as fh:
        truth = list(csv.DictReader(fh))
    assert truth and {t["label"] for t in truth} <= {"yes", "no"}
    assert all(0 <= float(t["start_s"]) < float(t["end_s"]) <= 30 for t in truth)
    negatives = sf.info(out / "validation_negatives.wav")
    assert abs(negatives.duration - 180) < 0.1
    with open(out / "validation_negatives.csv", newline="") as fh:
        stretches = list(csv.DictReader(fh))
    assert float(stretches[-1]["end_s"]) == pytest.approx(negatives.duration, abs=0.01)
    assert {s["kind"] for s in stretches} <= {"words", "speech", "tv", "music", "noise"}
    # Seeded: a second run writes the same audio.
    again = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "b")])
    assert again.exit_code == 0
    for name in ("validation_commands.wav", "validation_negatives.wav", "validation_truth.csv"):
        assert (out / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    bad = CliRunner().invoke(app, ["data", "streams", str(tree), "--split", "dev"])
    assert bad.exit_code == 2 and "--split dev" in bad.output


def test_the_negative_sentences_hold_no_command_word():
    from speechlstm.data.streams import sentence
    from speechlstm.labels import SC12_WORDS

    rng = np.random.default_rng(0)
    words = {w for _ in range(2000) for w in sentence(rng).split()}
    assert not words & set(SC12_WORDS)
    assert len(words) > 100  # enough vocabulary for hours of varied text


def test_music_and_television_are_bounded_and_not_silent():
    from speechlstm.data.streams import music

    rng = np.random.default_rng(0)
    wave = music(5.0, rng)
    assert wave.shape == (80_000,) and wave.dtype == np.float32
    assert np.isfinite(wave).all() and float(np.sqrt(np.mean(wave**2))) > 0.01


def _tree(tmp_path):
    from speechlstm.testing.synth_audio import make_dataset

    tree = make_dataset(tmp_path / "tree", words=("yes", "no", "up", "down"), speakers=10)
    for old, new in (("up", "cat"), ("down", "dog")):
        (tree / old).rename(tree / new)
        for listing in ("validation_list.txt", "testing_list.txt"):
            path = tree / listing
            path.write_text(path.read_text().replace(f"{old}/", f"{new}/"))
    return tree


@pytest.mark.slow
def test_data_streams_replaces_only_its_own_files(tmp_path):
    """A file `data streams` did not write where it would write one is refused
    (exit 2, left as it was) unless --force; its own files are replaced."""
    from typer.testing import CliRunner

    from speechlstm.cli.main import app

    tree = _tree(tmp_path)
    out = tmp_path / "streams"
    out.mkdir()
    (out / "validation_commands.wav").write_bytes(b"my recording")
    args = ["data", "streams", str(tree), "-o", str(out), "--split", "validation",
            "--minutes", "0.2", "--negative-hours", "0"]  # fmt: skip
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "--force" in refused.output, refused.output
    assert (out / "validation_commands.wav").read_bytes() == b"my recording"
    assert CliRunner().invoke(app, [*args, "--force"]).exit_code == 0
    again = CliRunner().invoke(app, args)  # now ours: replaced without --force
    assert again.exit_code == 0, again.output
    assert (out / "validation_commands.wav").read_bytes()[:4] == b"RIFF"
