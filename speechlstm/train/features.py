"""The MFCC front-end: two implementations of one mel spectrogram, checked against each other.

`MFCC` (torchaudio's transforms) computes features on the training device,
per batch. It is split in two stages so SpecAugment can mask the log-mel
spectrogram between them. The exported ONNX graph computes the same mel
spectrogram with `ConvMelSpectrogram` (a DFT written as convolutions, which
onnxruntime runs several times faster than its STFT) and shares the rest
(log, DCT, normalization) with `MFCC`. The two are held together by tests and
by export itself: `speechlstm export` compares the ONNX model with PyTorch
and fails above 1e-4, so inference takes raw waveform and sees the features
training saw.

Numerics match librosa with the same settings:
`librosa.feature.mfcc(S=librosa.power_to_db(mel, amin=log_floor, top_db=None))`
where `mel` is `librosa.feature.melspectrogram(..., center=True,
pad_mode="constant", htk=(mel_scale == "htk"), norm=None or "slaney")`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from ..config import FeatureConfig


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
    """`MFCC.melspec` (centred zero-padded STFT, power 2, mel filterbank) as two
    grouped convolutions, a square and a matmul: a two-stage (Cooley-Tukey)
    DFT written with operators onnxruntime runs fast.

    The exported graph uses this instead of torchaudio's STFT, which
    onnxruntime runs about 3x slower than even a plain strided Conv1d holding
    the whole DFT (0.74 vs 0.28 ms for a 1 s clip on one core); splitting the
    DFT in two stages halves that again (0.14 ms) with a fifth of the
    multiplications. Same numbers as torchaudio to float32 rounding (tested).

    With N = n_fft = N1 * N2, where N2 divides the hop, n = N2 n1 + n2 and
    k = k1 + N1 k2:

        X[k] = sum_n2 e^(-2 pi i n2 k / N) * A[n2, k1]
        A[n2, k1] = sum_n1 w[N2 n1 + n2] x[N2 n1 + n2] e^(-2 pi i k1 n1 / N1)

    Stage 1 sees the signal as N2 interleaved channels (x[N2 m + c]); a frame
    then starts every hop / N2 steps, so A is a Conv1d with N2 groups (window
    folded into the kernels). Stage 2 is, for each k1, one small matrix over
    n2 (the twiddle factor folded in): a 1x1 Conv1d with N1 groups after the
    channels are regrouped by k1. Only the bins below the mel filterbank's top
    are computed; the filterbank's rows are reordered to (k1, part, k2), so
    the real and imaginary squares sum inside the mel matmul.
    """

    def __init__(self, features: MFCC):
        super().__init__()
        spec = features.melspec.spectrogram
        n_fft, hop, window = spec.n_fft, spec.hop_length, spec.window.double()
        offset = (n_fft - window.numel()) // 2  # torch.stft centres a shorter window
        w = torch.zeros(n_fft, dtype=torch.float64)
        w[offset : offset + window.numel()] = window
        fb = features.melspec.mel_scale.fb.double()  # (n_fft // 2 + 1, n_mels)
        top = int(torch.nonzero(fb.abs().sum(dim=1) > 0).max()) + 1  # bins used: [0, top)
        n2 = _cheapest_split(n_fft, hop, top)
        n1 = n_fft // n2
        k2n = -(-top // n1)  # k2 values needed to reach `top`
        self.n1, self.n2, self.stride, self.hop, self.half = n1, n2, hop // n2, hop, n_fft // 2

        two_pi = 2 * torch.pi
        idx1 = torch.arange(n1, dtype=torch.float64)
        angle1 = two_pi * idx1[:, None] * idx1[None, :] / n1  # (k1, n1)
        w_sub = w.view(n1, n2).T[:, None, :]  # (n2, 1, n1): w[N2 n1 + n2]
        stage1 = torch.stack([torch.cos(angle1) * w_sub, -torch.sin(angle1) * w_sub], 1)
        self.register_buffer("stage1", stage1.reshape(-1, 1, n1).float(), persistent=False)
        # stage-1 channels come out as (n2, part, k1); stage 2 wants (k1, part, n2)
        order = torch.arange(n2 * 2 * n1).view(n2, 2, n1).permute(2, 1, 0).flatten()
        self.register_buffer("regroup", order, persistent=False)
        k = idx1[:, None, None] + n1 * torch.arange(k2n, dtype=torch.float64)  # (k1, 1, k2)
        theta = two_pi * torch.arange(n2, dtype=torch.float64)[None, :, None] * k / n_fft
        re, im = torch.cos(theta), -torch.sin(theta)  # (k1, n2, k2)
        # (Ar + i Ai)(re + i im): real = Ar re - Ai im, imaginary = Ar im + Ai re
        stage2 = torch.cat([torch.cat([re, -im], 1), torch.cat([im, re], 1)], 2)
        self.register_buffer(
            "stage2", stage2.transpose(1, 2).reshape(-1, 2 * n2, 1).float(), persistent=False
        )
        bins = k.squeeze(1).long()  # (k1, k2)
        fb2 = torch.zeros(n1, 2, k2n, fb.shape[1], dtype=torch.float64)
        inside = bins < fb.shape[0]
        for part in range(2):
            fb2[:, part][inside] = fb[bins[inside]]
        self.register_buffer("fb", fb2.reshape(-1, fb.shape[1]).T.float(), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> mel power (B, n_mels, samples // hop + 1)."""
        batch, samples = waveform.shape
        # Centring pad, less the tail no frame reaches: the length is then
        # (frames - 1) * hop + n_fft, a multiple of N2.
        x = F.pad(waveform.float(), (self.half, self.half - samples % self.hop))
        x = x.reshape(batch, -1, self.n2).transpose(1, 2)  # (B, N2, samples / N2)
        a = F.conv1d(x, self.stage1, stride=self.stride, groups=self.n2)
        z = F.conv1d(torch.index_select(a, 1, self.regroup), self.stage2, groups=self.n1)
        return torch.matmul(self.fb, z * z)


def _cheapest_split(n_fft: int, hop: int, top: int) -> int:
    """N2 (a divisor of both n_fft and hop) with the fewest multiplications a frame."""

    def cost(n2: int) -> int:
        n1 = n_fft // n2
        return n2 * 2 * n1 * n1 + n1 * 2 * n2 * 2 * -(-top // n1)

    common = math.gcd(n_fft, hop)
    return min((d for d in range(1, common + 1) if common % d == 0), key=cost)
