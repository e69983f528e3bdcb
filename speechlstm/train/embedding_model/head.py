"""The embedding model's head: (B, 16, 96) embedding frames -> (B, C) logits;
one BiLSTM, or several whose probabilities are averaged."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...config import EmbeddingConfig
from ..embedding import EMBED_DIM


class EmbeddingHead(nn.Module):
    """(B, 16, 96) embedding frames -> (B, n_classes) logits."""

    def __init__(self, n_classes: int, hidden_size: int = 64, dropout: float = 0.2):
        super().__init__()
        self.n_classes = n_classes
        self.input_norm = nn.LayerNorm(EMBED_DIM)
        self.rnn = nn.LSTM(EMBED_DIM, hidden_size, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden_size, n_classes)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.input_norm(frames))  # (B, T, 2H)
        return self.head(self.dropout(h.mean(dim=1)))  # (B, C)


class HeadEnsemble(nn.Module):
    """Heads whose probabilities are averaged; returns log-probabilities, so a
    softmax of the output is that average (what every caller of a head does)."""

    def __init__(self, heads: list[EmbeddingHead]):
        super().__init__()
        self.members = nn.ModuleList(heads)
        self.n_classes = heads[0].n_classes

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([F.softmax(m(frames), -1) for m in self.members]).mean(0)
        return torch.log(probs.clamp_min(1e-12))


def build_head(n_classes: int, ecfg: EmbeddingConfig) -> nn.Module:
    """The head a model file of `ecfg` holds: one EmbeddingHead, or an ensemble."""
    heads = [EmbeddingHead(n_classes, ecfg.hidden_size, ecfg.dropout) for _ in range(ecfg.heads)]
    return heads[0] if ecfg.heads == 1 else HeadEnsemble(heads)


@torch.no_grad()
def head_logits(head: nn.Module, frames: np.ndarray, batch_size: int = 512) -> np.ndarray:
    head.eval()
    out = [
        head(torch.from_numpy(frames[s : s + batch_size])).numpy()
        for s in range(0, len(frames), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, head.n_classes), np.float32)
