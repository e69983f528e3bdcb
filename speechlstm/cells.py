"""Recurrent stacks: (B, T, input) -> (B, T, 2 * hidden), bidirectional."""

from __future__ import annotations

import torch
from torch import nn


class BiLSTM(nn.Module):
    """The fused nn.LSTM (cuDNN on GPU); exports to the ONNX LSTM operator."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        self.lstm = nn.LSTM(
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return out


def make_recurrent(cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float):
    if cell == "lstm":
        return BiLSTM(input_size, hidden_size, num_layers, dropout)
    raise ValueError(f"model.cell={cell!r} is not available")
