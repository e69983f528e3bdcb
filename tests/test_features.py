"""The MFCC front-end agrees with librosa given matched settings (to about 1e-4)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytestmark = pytest.mark.train
LIBROSA_TOLERANCE = 2e-4  # measured agreement is 4e-5 (htk) to 1.1e-4 (slaney)


def _librosa_mfcc(wave, cfg):
    import librosa

    mel = librosa.feature.melspectrogram(
        y=wave,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_samples,
        win_length=cfg.window_samples,
        window="hann",
        center=True,
        pad_mode="constant",
        power=2.0,
        n_mels=cfg.n_mels,
        fmin=cfg.f_min_hz,
        fmax=cfg.f_max_hz,
        htk=cfg.mel_scale == "htk",
        norm="slaney" if cfg.mel_scale == "slaney" else None,
    )
    db = librosa.power_to_db(mel, ref=1.0, amin=cfg.log_floor, top_db=None)
    return librosa.feature.mfcc(S=db, n_mfcc=cfg.n_mfcc, dct_type=2, norm="ortho").T  # (T, n_mfcc)


@pytest.mark.parametrize("mel_scale", ["htk", "slaney"])
@pytest.mark.slow
def test_mfcc_matches_librosa(mel_scale):
    import torch

    from speechlstm.config import FeatureConfig
    from speechlstm.train.features import MFCC

    cfg = FeatureConfig(mel_scale=mel_scale, normalize="none")
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(16000)).astype(
        np.float32
    )
    ours = MFCC(cfg)(torch.from_numpy(wave)[None])[0].numpy()
    ref = _librosa_mfcc(wave, cfg)
    assert ours.shape == ref.shape == (cfg.n_frames, cfg.n_mfcc)
    assert np.abs(ours - ref).max() < LIBROSA_TOLERANCE


def test_cepstral_mean_normalisation_removes_a_constant_channel_gain():
    import torch

    from speechlstm.config import FeatureConfig
    from speechlstm.train.features import MFCC

    rng = np.random.default_rng(1)
    wave = torch.from_numpy((0.1 * rng.standard_normal(16000)).astype(np.float32))[None]
    cmn = MFCC(FeatureConfig())
    raw = MFCC(dataclasses.replace(FeatureConfig(), normalize="none"))
    np.testing.assert_allclose(
        cmn(wave), raw(wave) - raw(wave).mean(dim=1, keepdim=True), atol=1e-4
    )
    # A 6 dB quieter copy has the same normalised MFCC (the gain is a constant in log-mel).
    np.testing.assert_allclose(cmn(wave * 0.5), cmn(wave), atol=1e-2)
    assert cmn(wave).shape == (1, 101, 40)


@pytest.mark.parametrize(
    "window_ms,hop_ms,n_fft",
    [(30.0, 10.0, 512), (25.0, 10.0, 400), (32.0, 10.0, 512), (30.0, 10.0625, 512)],
)
def test_conv_mel_spectrogram_matches_torchaudio(window_ms, hop_ms, n_fft):
    """The exported front-end (a two-stage DFT of grouped convolutions) gives
    torchaudio's numbers at any length, for loud, quiet and silent clips, and
    for any split of n_fft the hop allows (hop 161 samples: none, a plain DFT)."""
    import torch

    from speechlstm.config import FeatureConfig
    from speechlstm.train.features import MFCC, ConvMelSpectrogram

    mfcc = MFCC(FeatureConfig(window_ms=window_ms, hop_ms=hop_ms, n_fft=n_fft))
    conv = ConvMelSpectrogram(mfcc)
    gen = torch.Generator().manual_seed(0)
    for samples in (1, 161, n_fft, 12345, 16000):
        t = torch.arange(samples) / 16000
        wave = torch.stack(
            [
                0.5 * torch.sin(2 * torch.pi * 440 * t),
                torch.randn(samples, generator=gen) * 1e-3,
                torch.zeros(samples),
            ]
        )
        expected = mfcc.to_db(mfcc.melspec(wave))
        got = mfcc.to_db(conv(wave))
        assert got.shape == expected.shape == (3, samples // mfcc.cfg.hop_samples + 1, 40)
        # float32 rounding: a band 30 dB below a loud sine's band moves by up to ~0.01 dB
        assert (got - expected).abs().max() < 0.05  # dB
        assert (got - expected).abs().mean() < 1e-3
