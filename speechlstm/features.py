"""The MFCC front-end as one nn.Module.

The same module computes features on the training device, per batch, and is
exported inside the ONNX graph, so inference takes raw waveform and there is
nothing to keep in sync by hand. It is split in two stages so SpecAugment can
mask the log-mel spectrogram between them during training.

Numerics match librosa with the same settings:
`librosa.feature.mfcc(S=librosa.power_to_db(mel, amin=log_floor, top_db=None))`
where `mel` is `librosa.feature.melspectrogram(..., center=True,
pad_mode="constant", htk=(mel_scale == "htk"), norm=None or "slaney")`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from .config import FeatureConfig


class MFCC(nn.Module):
    """Waveform (B, samples) float32 in [-1, 1] -> MFCC (B, frames, n_mfcc).

    frames = samples // hop_samples + 1 (centred frames, zero padded at both ends).
    """

    def __init__(self, cfg: FeatureConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        slaney = cfg.mel_scale == "slaney"
        self.melspec = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate,
            n_fft=cfg.n_fft,
            win_length=cfg.window_samples,
            hop_length=cfg.hop_samples,
            f_min=cfg.f_min_hz,
            f_max=cfg.f_max_hz,
            n_mels=cfg.n_mels,
            power=2.0,
            center=True,
            pad_mode="constant",
            norm="slaney" if slaney else None,
            mel_scale=cfg.mel_scale,
        )
        # (n_mels, n_mfcc): orthonormal DCT-II, as scipy/librosa use
        dct = torchaudio.functional.create_dct(cfg.n_mfcc, cfg.n_mels, norm="ortho")
        self.register_buffer("dct", dct, persistent=False)

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> log-mel power in dB, (B, frames, n_mels)."""
        return self.to_db(self.melspec(waveform.float()))

    def to_db(self, mel: torch.Tensor) -> torch.Tensor:
        """Mel power (B, n_mels, frames) -> dB (B, frames, n_mels)."""
        # 10*log10 with a floor, as librosa.power_to_db(amin=floor, top_db=None).
        # No top_db clamp: torchaudio's would take the max across the whole batch.
        log_mel = 10.0 * torch.log10(torch.clamp(mel, min=self.cfg.log_floor))
        return log_mel.transpose(1, 2)

    def cepstrum(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(B, frames, n_mels) dB -> (B, frames, n_mfcc), mean-normalised if configured."""
        mfcc = torch.matmul(log_mel, self.dct)
        if self.cfg.normalize == "cmn":
            mfcc = mfcc - mfcc.mean(dim=1, keepdim=True)
        return mfcc

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.cepstrum(self.log_mel(waveform))


class ConvMelSpectrogram(nn.Module):
    """`MFCC.melspec` (centred zero-padded STFT, power 2, mel filterbank) as one
    strided Conv1d over the waveform, a square and a matmul.

    The exported graph uses this instead of torchaudio's STFT: onnxruntime runs
    the STFT operator about 3x slower than a Conv of the same transform (0.74
    vs 0.27 ms for a 1 s clip on one core), and the STFT was half of the model's
    single-clip time. The conv kernels are the window times the DFT basis, cut
    to the window's nonzero samples and to the frequency bins the mel
    filterbank uses. Same numbers as torchaudio to float32 rounding (tested).
    """

    def __init__(self, features: MFCC):
        super().__init__()
        spec = features.melspec.spectrogram
        n_fft, hop, window = spec.n_fft, spec.hop_length, spec.window.double()
        win_length = window.numel()
        fb = features.melspec.mel_scale.fb.double()  # (n_fft // 2 + 1, n_mels)
        used = torch.nonzero(fb.abs().sum(dim=1) > 0).flatten()
        lo, hi = int(used.min()), int(used.max()) + 1
        # torch.stft centres a shorter window inside the n_fft frame
        offset = (n_fft - win_length) // 2
        n = torch.arange(win_length, dtype=torch.float64) + offset
        k = torch.arange(lo, hi, dtype=torch.float64)
        angle = 2 * torch.pi * k[:, None] * n[None, :] / n_fft
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window  # (2K, win)
        self.register_buffer("basis", basis.float().unsqueeze(1), persistent=False)
        self.register_buffer("fb", fb[lo:hi].T.float().contiguous(), persistent=False)
        self.hop, self.bins = hop, hi - lo
        # frame t starts at t * hop - n_fft // 2 + offset in the unpadded signal
        self.pad_left = n_fft // 2 - offset
        self.pad_right = offset + win_length - n_fft // 2

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> mel power (B, n_mels, samples // hop + 1)."""
        x = F.pad(waveform.float().unsqueeze(1), (self.pad_left, self.pad_right))
        spec = F.conv1d(x, self.basis, stride=self.hop)  # (B, 2K, frames): real, imaginary
        power = spec[:, : self.bins].square() + spec[:, self.bins :].square()
        return torch.matmul(self.fb, power)
