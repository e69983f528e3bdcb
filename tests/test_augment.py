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


def test_detector_windows_move_command_clips_and_targets_follow_the_word_inside():
    import torch

    from speechlstm.config import AugmentConfig
    from speechlstm.train.augment import FRAGMENT, WHOLE, detector_windows

    n, classes, unknown = 400, 4, 2  # classes: two commands, _unknown_, _silence_
    wave = torch.zeros(n, 16000)
    wave[:, 7000:9000] = 0.5  # a 125 ms "word" in the middle of each clip
    target = torch.tensor([0, 1, 2, 3] * (n // 4))
    eligible = target < 2
    cfg = AugmentConfig(detector_windows=0.5, detector_shift_ms=600.0, detector_neighbour=0.0)
    out, soft, moved = detector_windows(
        wave, target, eligible, unknown, classes, cfg, 16000, torch.Generator().manual_seed(0)
    )
    # Only command clips are redrawn, about the share asked for.
    assert not moved[~eligible].any()
    assert 0.35 < moved[eligible].float().mean() < 0.65
    assert torch.equal(out[~moved], wave[~moved])
    assert torch.equal(soft[~moved], torch.nn.functional.one_hot(target[~moved], classes).float())
    # Targets are distributions; each moved clip's mass is on its word or _unknown_.
    assert torch.allclose(soft.sum(1), torch.ones(n))
    kept = out[moved].pow(2).sum(1) / wave[moved].pow(2).sum(1)
    word = soft[moved].gather(1, target[moved].unsqueeze(1)).squeeze(1)
    assert torch.allclose(word + soft[moved, unknown], torch.ones(int(moved.sum())))
    # All of the word inside: its label; little of it: _unknown_; between: a mix.
    assert (word[kept >= WHOLE] == 1).all() and (word[kept <= FRAGMENT] == 0).all()
    between = (kept > FRAGMENT + 0.05) & (kept < WHOLE - 0.05)
    assert between.any() and ((word[between] > 0) & (word[between] < 1)).all()
    assert (kept < 0.5).any()  # shifts of 600 ms do cut words


def test_detector_windows_bring_a_neighbours_edge_into_the_window():
    import torch

    from speechlstm.config import AugmentConfig
    from speechlstm.train.augment import detector_windows

    wave = torch.zeros(64, 16000)
    wave[:, :4000] = 0.3  # sound at each clip's start and end: edges a neighbour shows
    wave[:, 12000:] = 0.3
    target = torch.zeros(64, dtype=torch.long)
    cfg = AugmentConfig(detector_windows=1.0, detector_shift_ms=0.0, detector_neighbour=1.0)
    out, soft, moved = detector_windows(
        wave, target, target == 0, 1, 3, cfg, 16000, torch.Generator().manual_seed(0)
    )
    assert moved.all()
    # No shift: the clip is whole (its label), plus the neighbour's edge on top.
    assert (soft[:, 0] == 1).all()
    assert (out.abs().sum(1) > wave.abs().sum(1)).all()


def test_judged_detector_windows_take_a_judged_shift_and_the_teachers_posteriors():
    import torch

    from speechlstm.config import AugmentConfig
    from speechlstm.train.augment import detector_windows, shift_rows

    n, classes = 200, 4
    wave = torch.zeros(n, 16000)
    wave[:, 7000:9000] = 0.5
    target = torch.tensor([0, 1, 2, 3] * (n // 4))
    eligible = target < 2
    shifts = torch.tensor([[-3000, 5000]] * n)
    posteriors = torch.rand(n, 2, classes)
    posteriors = posteriors / posteriors.sum(-1, keepdim=True)
    cfg = AugmentConfig(detector_windows=1.0, detector_neighbour=1.0)
    out, soft, moved = detector_windows(
        wave, target, eligible, 2, classes, cfg, 16000, torch.Generator().manual_seed(0),
        judged=(shifts, posteriors),
    )  # fmt: skip
    assert torch.equal(moved, eligible)
    rows = torch.nonzero(moved).flatten().tolist()
    for i in rows:
        # One of the clip's two judged windows, its posteriors the target, no neighbour.
        j = 0 if torch.equal(out[i], shift_rows(wave[i : i + 1], shifts[i : i + 1, :1])[0]) else 1
        assert torch.equal(out[i], shift_rows(wave[i : i + 1], shifts[i : i + 1, j : j + 1])[0])
        assert torch.equal(soft[i], posteriors[i, j])
    picked = [0 if out[i, 4000:6000].abs().sum() > 0 else 1 for i in rows]
    assert 0 < sum(picked) < len(picked)  # both windows drawn
    assert torch.equal(out[~moved], wave[~moved])
