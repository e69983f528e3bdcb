"""On-device augmentation: each part does what it says and can be switched off."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.train


def _augmenter(**changes):
    import torch

    from speechlstm.config import AugmentConfig, FeatureConfig
    from speechlstm.train.augment import WaveAugment

    off = dict(time_shift_ms=0.0, noise_prob=0.0, gain_db=0.0, reverb_prob=0.0)
    noise = torch.ones(2, 32000) * 0.5
    return WaveAugment(AugmentConfig(**{**off, **changes}), FeatureConfig(), noise)


def _burst():
    import torch

    wave = torch.zeros(8, 16000)
    wave[:, 8000:8160] = 0.5
    return wave


@pytest.mark.slow
def test_everything_off_is_identity_and_same_seed_same_result():
    import torch

    wave = _burst()
    assert torch.equal(_augmenter()(wave, torch.Generator().manual_seed(0)), wave)
    aug = _augmenter(time_shift_ms=100.0, noise_prob=0.5, gain_db=6.0, reverb_prob=0.5)
    a = aug(wave, torch.Generator().manual_seed(1))
    b = aug(wave, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, wave)


def test_time_shift_moves_the_burst_within_100_ms_without_wrapping():
    import torch

    out = _augmenter(time_shift_ms=100.0)(_burst(), torch.Generator().manual_seed(0))
    starts = (out > 0.25).float().argmax(dim=1)
    assert ((starts - 8000).abs() <= 1600).all()
    assert len(set(starts.tolist())) > 1  # clips get their own shifts
    assert torch.allclose(out.sum(dim=1), torch.full((8,), 0.5 * 160))  # nothing lost or wrapped


def test_speed_changes_a_tones_pitch_and_length_by_the_drawn_factor_about_the_centre():
    import numpy as np
    import torch

    t = torch.arange(16000) / 16000
    tone = torch.zeros(64, 16000)
    tone[:, 4000:12000] = torch.sin(2 * np.pi * 500 * t[4000:12000])  # 0.5 s of 500 Hz, centred
    out = _augmenter(speed=0.2)(tone, torch.Generator().manual_seed(0))
    spectrum = torch.fft.rfft(out, dim=1).abs()
    peak_hz = spectrum.argmax(dim=1).float()  # bins are 1 Hz apart over 1 s
    length = (out.abs() > 1e-3).sum(dim=1).float()  # samples the tone still spans
    factor = peak_hz / 500
    assert ((factor >= 0.79) & (factor <= 1.21)).all() and factor.std() > 0.05
    assert torch.allclose(length * factor, torch.full((64,), 8000.0), rtol=0.03)  # faster: shorter
    on = (out.abs() > 1e-3).float()
    middle = (on * torch.arange(16000)).sum(dim=1) / on.sum(dim=1)
    assert ((middle - 8000).abs() < 80).all()  # the word stays where it was
    assert torch.equal(_augmenter(speed=0.0)(tone, torch.Generator().manual_seed(0)), tone)


def test_noise_is_mixed_into_the_chosen_share_at_bounded_volume():
    import torch

    aug = _augmenter(noise_prob=0.5, noise_volume_max=0.1)
    out = aug(torch.zeros(400, 16000), torch.Generator().manual_seed(0))
    level = out.abs().amax(dim=1)
    noisy = (level > 0).float().mean()
    assert 0.35 < noisy < 0.65
    assert level.max() <= 0.5 * 0.1 + 1e-6


def test_reverb_adds_a_decaying_tail_and_keeps_loudness():
    import torch

    wave = _burst()
    out = _augmenter(reverb_prob=1.0)(wave, torch.Generator().manual_seed(0))
    assert (out[:, 9000:12000].abs().mean(dim=1) > 1e-3).all()  # energy after the burst
    assert torch.allclose(out.norm(dim=1), wave.norm(dim=1), rtol=0.05)


@pytest.mark.parametrize("enabled", [True, False])
def test_spec_augment_masks_time_and_frequency(enabled):
    import torch

    from speechlstm.config import AugmentConfig
    from speechlstm.train.augment import spec_augment

    log_mel = torch.randn(16, 101, 40)
    cfg = AugmentConfig(
        spec_augment=enabled, time_masks=1, time_mask_frames=10, freq_masks=1, freq_mask_bins=5
    )
    out = spec_augment(log_mel, cfg, torch.Generator().manual_seed(0))
    changed = out != log_mel
    if not enabled:
        assert not changed.any()
        return
    assert changed.any()
    fraction = changed.float().mean()
    assert fraction < (10 / 101 + 5 / 40)  # never more than the widest masks
