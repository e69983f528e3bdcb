"""Unlabelled audio for feature distillation (train/transfer.py,
train.feature_distill_audio), on the stand-in embedding (stand_in_embedding.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile as sf
from conftest import tiny_config

from speechlstm.testing.synth_audio import SR, tone_word

pytestmark = pytest.mark.train


def _audio(seconds: float, seed: int = 0) -> np.ndarray:
    """Tone words one after another in noise, cut to `seconds`."""
    rng = np.random.default_rng(seed)
    words = ["yes", "no", "up", "down"] * (int(seconds) // 4 + 1)
    wave = np.concatenate([tone_word(w, 1.0, rng=rng) for w in words])[: int(SR * seconds)]
    return (wave + rng.standard_normal(len(wave)) * 0.003).astype(np.float32)


def _write(path, wave):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, SR, subtype="PCM_16")
    return path


def test_files_are_cut_into_half_overlapping_windows_that_never_cross_a_file(tmp_path, capsys):
    from speechlstm.train.transfer import load_transfer

    long = _audio(2.6)
    short = _audio(0.4, seed=1)
    _write(tmp_path / "audio/a_long.wav", long)
    _write(tmp_path / "audio/sub/b_short.wav", short)
    (tmp_path / "audio/c_broken.wav").write_bytes(b"RIFF not really a wave file")
    transfer = load_transfer((str(tmp_path / "audio"),), SR, SR)

    # 2.6 s: windows at 0, 0.5, 1.0 and 1.5 s; 0.4 s: one window, padded with silence.
    assert len(transfer) == 5
    assert transfer.starts.tolist() == [0, 8000, 16000, 24000, int(2.6 * SR)]
    windows = transfer.windows(np.arange(5))
    assert windows.shape == (5, SR) and windows.dtype == np.int16
    pcm, _ = sf.read(tmp_path / "audio/a_long.wav", dtype="int16")
    assert np.array_equal(windows[3], pcm[24000 : 24000 + SR])
    tail = windows[4]
    short_pcm, _ = sf.read(tmp_path / "audio/sub/b_short.wav", dtype="int16")
    assert np.array_equal(tail[: len(short)], short_pcm)
    assert not tail[len(short) :].any()
    # The broken file is skipped with its name and the reason; the rest still teach.
    assert "c_broken.wav" in capsys.readouterr().err


def test_missing_or_empty_sources_are_refused_by_name(tmp_path):
    from speechlstm.config import TrainConfig
    from speechlstm.train.transfer import load_transfer

    with pytest.raises(ValueError, match="nowhere.wav: no such file"):
        load_transfer((str(tmp_path / "nowhere.wav"),), SR, SR)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: a folder with no audio"):
        load_transfer((str(tmp_path / "empty"),), SR, SR)
    (tmp_path / "bad.wav").write_bytes(b"junk")
    with pytest.raises(ValueError, match="none of the files could be decoded"):
        load_transfer((str(tmp_path / "bad.wav"),), SR, SR)
    with pytest.raises(ValueError, match="needs train.feature_distill > 0"):
        TrainConfig(feature_distill_audio=("x.wav",)).validate()
    with pytest.raises(ValueError, match="feature_distill_audio_batch=0"):
        TrainConfig(feature_distill=1.0, feature_distill_audio_batch=0).validate()


@pytest.mark.slow
def test_unlabelled_windows_are_embedded_once_and_join_the_feature_loss(
    stand_in, tmp_path, tone_dataset
):
    from speechlstm.train import checkpoint
    from speechlstm.train.run import run_training

    stream = _write(tmp_path / "stream.wav", _audio(6.0, seed=3))
    cfg = tiny_config(epochs=2)
    fd = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, feature_distill=1.0))
    with_audio = dataclasses.replace(
        fd,
        train=dataclasses.replace(
            fd.train, feature_distill_audio=(str(stream),), feature_distill_audio_batch=8
        ),
    )
    cache = tmp_path / "cache"
    plain = run_training(tone_dataset, tmp_path / "fd", fd, cache_dir=cache, show_progress=False)
    cached = set((cache / "embedding").rglob("*.npy"))
    report = run_training(
        tone_dataset, tmp_path / "fda", with_audio, cache_dir=cache, show_progress=False
    )
    # The 11 windows of 6 s (every 0.5 s) were embedded and cached, the clips reused.
    assert len(set((cache / "embedding").rglob("*.npy")) - cached) == 11
    # The windows add their regression term: the runs differ from the first epoch.
    assert report["history"][0]["train_loss"] != plain["history"][0]["train_loss"]
    a = checkpoint.load(tmp_path / "fda/last.pt", resumable=True)
    b = checkpoint.load(tmp_path / "fd/last.pt", resumable=True)
    assert not all(np.allclose(a.model[k], b.model[k]) for k in a.model)
    assert a.config.train.feature_distill_audio == (str(stream),)
    # Seeded: the same command gives the same weights; and the run resumes.
    again = run_training(
        tone_dataset, tmp_path / "fda2", with_audio, cache_dir=cache, show_progress=False
    )
    assert again["history"][-1]["train_loss"] == report["history"][-1]["train_loss"]
    run_training(
        tone_dataset, tmp_path / "fda", with_audio, resume=True, cache_dir=cache,
        show_progress=False,
    )  # fmt: skip
