"""Batched augmentation on the training device.

Waveform stage (before the MFCC front-end): speed perturbation, time shift,
gain, reverberation, background-noise mixing. Spectrogram stage (between
log-mel and DCT): SpecAugment time and frequency masks. Every draw comes
from an explicit `torch.Generator`, so a run is reproducible and a resumed
run sees the same augmentation as an uninterrupted one.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import AugmentConfig, FeatureConfig

REVERB_MS = 500.0  # length of the synthetic room responses


def speed_rows(wave: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Each row of (B, S) played `factor` (B, 1) times as fast about the
    clip's centre, linearly interpolated and zero-filled where the source runs
    out: a factor of 1.1 makes the word 10% shorter and 10% higher. No
    low-pass before speeding up: at factors within 1.2 only content above
    6.7 kHz folds, where speech carries little energy."""
    s = wave.shape[1]
    centre = (s - 1) / 2
    pos = centre + (torch.arange(s, device=wave.device).unsqueeze(0) - centre) * factor
    left = pos.floor().long()
    frac = (pos - left).to(wave.dtype)
    valid = (left >= 0) & (left + 1 < s)
    lo = wave.gather(1, left.clamp(0, s - 1))
    hi = wave.gather(1, (left + 1).clamp(0, s - 1))
    return torch.where(valid, lo + (hi - lo) * frac, torch.zeros_like(wave))


def shift_rows(wave: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Each row of (B, S) moved right by its (B, 1) shift in samples, zero-filled
    (not wrapped: a word cut at the end must not reappear at the start)."""
    s = wave.shape[1]
    src = torch.arange(s, device=wave.device).unsqueeze(0) - shift  # (B, S)
    valid = (src >= 0) & (src < s)
    return torch.where(valid, wave.gather(1, src.clamp(0, s - 1)), torch.zeros_like(wave))


class WaveAugment(nn.Module):
    """(B, S) float waveform -> augmented (B, S). `noise` is (N, S_noise) float, S_noise >= S."""

    def __init__(self, cfg: AugmentConfig, feature_cfg: FeatureConfig, noise: torch.Tensor | None):
        super().__init__()
        self.cfg = cfg
        self.sample_rate = feature_cfg.sample_rate
        self.max_shift_samples = round(feature_cfg.sample_rate * cfg.time_shift_ms / 1000)
        self.register_buffer("noise", noise if noise is not None else torch.zeros(0, 0))

    def forward(self, wave: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, s = wave.shape
        dev = wave.device
        if self.cfg.speed > 0:
            factor = 1 + (torch.rand(b, 1, generator=gen, device=dev) * 2 - 1) * self.cfg.speed
            wave = speed_rows(wave, factor)
        if self.max_shift_samples > 0:
            wave = self._shift(wave, gen)
        if self.cfg.gain_db > 0:
            db = (torch.rand(b, 1, generator=gen, device=dev) * 2 - 1) * self.cfg.gain_db
            wave = wave * torch.pow(10.0, db / 20.0)
        if self.cfg.reverb_prob > 0:
            wave = self._reverb(wave, gen)
        if self.cfg.noise_prob > 0 and self.noise.numel() > 0:
            wave = wave + self._noise(b, s, gen)
        return wave.clamp(-1.0, 1.0)

    def _shift(self, wave: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b = wave.shape[0]
        m = self.max_shift_samples
        shift = torch.randint(-m, m + 1, (b, 1), generator=gen, device=wave.device)
        return shift_rows(wave, shift)

    def _reverb(self, wave: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Convolve a share of the clips with a synthetic room response: decaying
        noise with RT60 drawn from [0.15, 0.7] s, plus the direct path."""
        b, s = wave.shape
        dev = wave.device
        n = round(self.sample_rate * REVERB_MS / 1000)
        rt60_s = 0.15 + 0.55 * torch.rand(b, 1, generator=gen, device=dev)
        t_s = torch.arange(n, device=dev).unsqueeze(0) / self.sample_rate
        decay = torch.pow(10.0, -3.0 * t_s / rt60_s)  # -60 dB at rt60
        rir = torch.randn(b, n, generator=gen, device=dev) * decay * 0.3
        rir[:, 0] = 1.0
        rir = rir / rir.norm(dim=1, keepdim=True)
        size = s + n
        wet = torch.fft.irfft(torch.fft.rfft(wave, size) * torch.fft.rfft(rir, size), size)[:, :s]
        # Keep the loudness: a room spreads energy, it does not add it.
        wet = wet * (wave.norm(dim=1, keepdim=True) / wet.norm(dim=1, keepdim=True).clamp_min(1e-8))
        use = torch.rand(b, 1, generator=gen, device=dev) < self.cfg.reverb_prob
        return torch.where(use, wet, wave)

    def _noise(self, b: int, s: int, gen: torch.Generator) -> torch.Tensor:
        n, length = self.noise.shape
        dev = self.noise.device
        which = torch.randint(0, n, (b,), generator=gen, device=dev)
        start = (torch.rand(b, generator=gen, device=dev) * (length - s + 1)).long()
        idx = start.unsqueeze(1) + torch.arange(s, device=dev).unsqueeze(0)  # (B, S)
        segments = self.noise[which.unsqueeze(1), idx]
        volume = torch.rand(b, 1, generator=gen, device=dev) * self.cfg.noise_volume_max
        keep = (torch.rand(b, 1, generator=gen, device=dev) < self.cfg.noise_prob).float()
        return segments * volume * keep


def spec_augment(log_mel: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """SpecAugment masks on (B, T, M) log-mel; masked cells take each clip's mean value.

    The clip mean (not zero) keeps masked cells neutral in dB, where 0 dB is loud.
    """
    if not cfg.spec_augment:
        return log_mel
    b, t, m = log_mel.shape
    fill = log_mel.mean(dim=(1, 2), keepdim=True).expand_as(log_mel)
    mask = torch.zeros_like(log_mel, dtype=torch.bool)
    for axis, count, widest, size in (
        (1, cfg.time_masks, cfg.time_mask_frames, t),
        (2, cfg.freq_masks, cfg.freq_mask_bins, m),
    ):
        pos = torch.arange(size, device=log_mel.device).unsqueeze(0)  # (1, size)
        for _ in range(count):
            width = torch.randint(0, widest + 1, (b, 1), generator=gen, device=log_mel.device)
            start = (torch.rand(b, 1, generator=gen, device=log_mel.device) * (size - width)).long()
            hit = (pos >= start) & (pos < start + width)  # (B, size)
            mask |= hit.unsqueeze(2) if axis == 1 else hit.unsqueeze(1)
    return torch.where(mask, fill, log_mel)


def pitch_warp(log_mel: torch.Tensor, max_warp: float, gen: torch.Generator) -> torch.Tensor:
    """Warp each clip's mel axis of (B, T, M) log-mel by a factor in [1 - x, 1 + x].

    A factor above 1 moves energy up (a higher, shorter vocal tract): bin m
    reads the source at m / factor, interpolated; above the top bin the top
    bin repeats.
    """
    if max_warp <= 0:
        return log_mel
    b, _, m = log_mel.shape
    dev = log_mel.device
    factor = 1 + (torch.rand(b, 1, 1, generator=gen, device=dev) * 2 - 1) * max_warp
    src = (torch.arange(m, device=dev).view(1, 1, m) / factor).clamp(max=m - 1)  # (B, 1, M)
    low = src.floor().long().clamp(max=m - 2)
    frac = src - low
    low = low.expand(-1, log_mel.shape[1], -1)
    return log_mel.gather(2, low) * (1 - frac) + log_mel.gather(2, low + 1) * frac
