"""The classifier: a bidirectional recurrent stack over MFCC frames, pooled over time.

    waveform (B, S) -> MFCC (B, T, F) -> input norm -> [frame stack] (B, T/k, F*k)
      -> bidirectional recurrent stack of model.cell (B, T/k, 2H)
      -> attention or mean pooling (B, 2H) -> Linear (B, C)

`Recognizer` wraps features + classifier + softmax: what export turns into the ONNX
graph (with the mel spectrogram computed by features.ConvMelSpectrogram).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import FeatureConfig, ModelConfig
from .cells import make_recurrent
from .features import MFCC


class AttentionPooling(nn.Module):
    """Weighted average over time; the weights come from a small scoring MLP.

    Lets the model attend to the frames holding the word and ignore padding and
    noise, which mean pooling cannot.
    """

    def __init__(self, dim: int, attn_dim: int = 64):
        super().__init__()
        self.proj = nn.Linear(dim, attn_dim)
        self.score = nn.Linear(attn_dim, 1, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.score(torch.tanh(self.proj(h))), dim=1)  # (B, T, 1)
        return (weights * h).sum(dim=1)  # (B, D)


class MeanPooling(nn.Module):
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.mean(dim=1)


class SpeechClassifier(nn.Module):
    """MFCC frames (B, T, n_inputs) -> logits (B, n_classes)."""

    def __init__(self, n_inputs: int, n_classes: int, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        # Per-coefficient scale learned from data: MFCC c0 is ~10x the others.
        self.input_norm = nn.BatchNorm1d(n_inputs)
        self.rnn = make_recurrent(
            cfg.cell, n_inputs * cfg.frame_stack, cfg.hidden_size, cfg.num_layers, cfg.dropout
        )
        dim = 2 * cfg.hidden_size
        self.pool = AttentionPooling(dim) if cfg.pooling == "attention" else MeanPooling()
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(dim, n_classes)

    def recurrent_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """MFCC (B, T, F) -> normalised recurrent inputs (B, T', F * frame_stack)."""
        x = self.input_norm(x.transpose(1, 2)).transpose(1, 2)  # (B, T, F)
        if self.cfg.frame_stack > 1:
            x = stack_frames(x, self.cfg.frame_stack)  # (B, T/k, F*k)
        return x

    def recur(self, x: torch.Tensor) -> torch.Tensor:
        """Recurrent inputs (B, T', F') -> logits (B, C)."""
        return self.readout(self.rnn(x))

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """Recurrent outputs (B, T', 2H) -> logits (B, C)."""
        return self.head(self.dropout(self.pool(h)))

    def forward(self, x: torch.Tensor, with_sequence: bool = False):
        """Logits (B, C); with `with_sequence` also the recurrent outputs (B, T', 2H)
        (feature distillation reads them)."""
        if with_sequence:
            h = self.rnn(self.recurrent_inputs(x))
            return self.readout(h), h
        return self.recur(self.recurrent_inputs(x))


def stack_frames(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, T, F) -> (B, ceil(T/k), F*k), zero-padding the last group."""
    b, t, f = x.shape
    pad = (-t) % k
    x = F.pad(x, (0, 0, 0, pad))
    return x.reshape(b, (t + pad) // k, f * k)


class Recognizer(nn.Module):
    """The exported graph: waveform (B, S) float32 -> (probabilities, logits), each (B, C)."""

    def __init__(self, feature_cfg: FeatureConfig, model_cfg: ModelConfig, n_classes: int):
        super().__init__()
        self.features = MFCC(feature_cfg)
        self.classifier = SpeechClassifier(feature_cfg.n_mfcc, n_classes, model_cfg)

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.classifier(self.features(waveform))
        return torch.softmax(logits, dim=-1), logits


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
