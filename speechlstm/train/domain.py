"""Domain-adversarial training (Ganin & Lempitsky, ICML 2015, "Unsupervised domain
adaptation by backpropagation"): make the encoder's features of synthesized and
real speech alike.

A custom-word model learns its words from synthesized clips; `train --add`
brings real recordings (other people's non-command words, a few own takes).
A small discriminator learns to tell the two apart from the pooled encoder
output; between the two, a gradient-reversal layer passes the discriminator's
gradient back to the encoder with its sign flipped, so the encoder learns to
remove what tells a synthetic voice from a real one while the head learns
the words. The discriminator also sees the clip's label: real clips are often
all of one class (`_unknown_`), and without the label it would tell domains
apart by class, which the reversal would then blur. Training-only: export
keeps the recognizer alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.strength * grad, None


def reverse_gradient(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Identity forward; the gradient times -strength backward."""
    return _Reverse.apply(x, strength)


def reversal_strength(progress: float) -> float:
    """DANN's schedule, 0 at the start to ~1 at the end (progress in [0, 1]): the
    discriminator learns before its reversed gradient is allowed to move the encoder."""
    return 2.0 / (1.0 + math.exp(-10.0 * min(max(progress, 0.0), 1.0))) - 1.0


class DomainDiscriminator(nn.Module):
    """(pooled features (B, D), labels (B,)) -> logit that the clip is from the extra
    (real) sources, (B,)."""

    def __init__(self, dim: int, n_classes: int, hidden: int = 64):
        super().__init__()
        self.n_classes = n_classes
        self.net = nn.Sequential(
            nn.Linear(dim + n_classes, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def forward(self, pooled: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(labels, self.n_classes).to(pooled.dtype)
        return self.net(torch.cat([pooled, onehot], dim=-1)).squeeze(-1)


def domain_loss(logits: torch.Tensor, is_extra: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with both domains weighted alike (the real clips are
    usually the few)."""
    target = is_extra.to(logits.dtype)
    n_extra = target.sum()
    n_main = target.numel() - n_extra
    if n_extra == 0 or n_main == 0:
        return logits.sum() * 0.0  # one domain in the batch: nothing to tell apart
    weight = torch.where(is_extra, 0.5 / n_extra, 0.5 / n_main)
    return (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight).sum()
