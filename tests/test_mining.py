"""Hard-negative mining (speechlstm/detect/mining.py, `speechlstm data mine`) on a generated
stream: noise with one planted "command" the miner must find, at its offset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from speechlstm.cli.main import app
from speechlstm.testing.synth_audio import SR, tone_word


def test_the_miner_finds_the_planted_false_alarm_at_its_offset(onnx_model, tmp_path):
    rng = np.random.default_rng(0)
    wave = (rng.standard_normal(SR * 20) * 0.003).astype(np.float32)
    wave[12 * SR : 13 * SR] += tone_word("up", rng=rng)  # the word sits at 12.2-12.8 s
    sf.write(tmp_path / "negatives.wav", wave, SR)
    out = tmp_path / "mined"
    args = ["data", "mine", str(tmp_path / "negatives.wav"), "-m", str(onnx_model), "--out",
            str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    clips = sorted((out / "_unknown_").glob("*.wav"))
    assert len(clips) == 1 and "taken for: up 1" in result.stdout
    start_ms = int(clips[0].stem.rsplit("_", 2)[1].removesuffix("ms"))
    assert 11_800 <= start_ms <= 12_200, start_ms  # the window holds the whole word
    clip, rate = sf.read(clips[0])
    assert rate == SR and len(clip) == SR and np.abs(clip).max() > 0.1
    # Mining again finds the same window and adds nothing.
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and len(list((out / "_unknown_").glob("*.wav"))) == 1

    # scripts/mined_windows.py (make verifier's hard negatives, from a list of
    # names) cuts the same window out of the same audio, byte for byte, and
    # refuses a folder that holds windows the list does not name.
    from speechlstm.audio import load_audio

    cutter = _script("mined_windows")
    wave = load_audio(tmp_path / "negatives.wav")
    cutter.cut(wave, [clips[0].name], tmp_path / "cut")
    assert (tmp_path / "cut/_unknown_" / clips[0].name).read_bytes() == clips[0].read_bytes()
    with pytest.raises(SystemExit, match="not in the list"):
        cutter.cut(wave, ["mined_negatives_000001000ms.wav"], out)
    # The same from the command line, the stream read from its file
    # (`--stream`, as make pair-first-stage cuts its rounds from data streams').
    listing = tmp_path / "list.txt"
    listing.write_text(clips[0].name + "\n")
    cutter.main([str(tmp_path), str(listing), str(tmp_path / "by_name"), "--stream",
                 str(tmp_path / "negatives.wav")])  # fmt: skip
    assert (tmp_path / "by_name/_unknown_" / clips[0].name).read_bytes() == clips[0].read_bytes()
    sf.write(tmp_path / "stereo.wav", np.zeros((SR, 2), np.float32), SR)
    with pytest.raises(SystemExit, match="mono"):
        cutter.main([str(tmp_path), str(listing), str(tmp_path / "x"), "--stream",
                     str(tmp_path / "stereo.wav")])  # fmt: skip


def _script(name: str):
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quiet_audio_mines_nothing_and_a_bad_file_is_named(onnx_model, tmp_path):
    sf.write(tmp_path / "quiet.wav", np.zeros(SR * 5, np.float32), SR)
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    result = CliRunner().invoke(
        app,
        ["data", "mine", str(tmp_path / "quiet.wav"), str(tmp_path / "bad.wav"), "-m",
         str(onnx_model), "--out", str(tmp_path / "m")],
    )  # fmt: skip
    assert result.exit_code == 1 and "bad.wav" in result.output
    assert "mined 0 window(s)" in result.stdout


def test_windows_are_named_by_content_so_same_named_recordings_never_collide(onnx_model, tmp_path):
    """Two recordings called negatives.wav in two folders, a word at the same
    offset in each but not the same word: both windows are kept (the name holds
    a hash of the window), and mining again reports no new window."""
    rng = np.random.default_rng(3)
    for folder, word in (("kitchen", "up"), ("radio", "down")):
        wave = (rng.standard_normal(SR * 6) * 0.003).astype(np.float32)
        wave[3 * SR : 4 * SR] += tone_word(word, rng=rng)
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "negatives.wav", wave, SR)
    out = tmp_path / "mined"
    args = ["data", "mine", str(tmp_path / "kitchen"), str(tmp_path / "radio"), "-m",
            str(onnx_model), "--out", str(out)]  # fmt: skip
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    clips = sorted((out / "_unknown_").glob("*.wav"))
    assert len(clips) == 2 and ", 2 new" in first.stdout
    assert len({c.name.rsplit("_", 1)[0] for c in clips}) == 1  # same source name and offset
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and ", 0 new" in again.stdout
    assert sorted((out / "_unknown_").glob("*.wav")) == clips
