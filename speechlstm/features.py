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
        mel = self.melspec(waveform.float())  # (B, n_mels, frames)
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
