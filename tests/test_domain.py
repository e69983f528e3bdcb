"""Domain-adversarial training's parts: the gradient reversal, its schedule, the
balanced domain loss and the label-aware discriminator."""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.train


def test_reversal_is_identity_forward_and_flips_the_gradient():
    import torch

    from speechlstm.train.domain import reverse_gradient

    x = torch.randn(4, 3, requires_grad=True)
    y = reverse_gradient(x, 0.25)
    assert torch.equal(y, x)
    upstream = torch.randn(4, 3)
    y.backward(upstream)
    assert torch.allclose(x.grad, -0.25 * upstream)


def test_reversal_strength_rises_from_zero_to_one():
    from speechlstm.train.domain import reversal_strength

    values = [reversal_strength(p / 10) for p in range(11)]
    assert values[0] == 0.0 and values[-1] > 0.99
    assert all(a < b for a, b in zip(values, values[1:]))
    assert reversal_strength(-1.0) == 0.0 and reversal_strength(2.0) == values[-1]


def test_domain_loss_weighs_both_domains_alike_and_is_zero_for_one():
    import torch
    import torch.nn.functional as F

    from speechlstm.train.domain import domain_loss

    logits = torch.tensor([2.0, -1.0, 0.5, 0.0, 3.0], requires_grad=True)
    extra = torch.tensor([True, False, False, False, False])
    loss = domain_loss(logits, extra)
    bce = F.binary_cross_entropy_with_logits(logits, extra.float(), reduction="none")
    expected = 0.5 * bce[extra].mean() + 0.5 * bce[~extra].mean()
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-6)
    # One domain only: nothing to tell apart, and the graph still backpropagates.
    alone = domain_loss(logits, torch.zeros(5, dtype=torch.bool))
    alone.backward()
    assert alone.item() == 0.0 and torch.equal(logits.grad, torch.zeros(5))


def test_the_discriminator_sees_the_label():
    import torch

    from speechlstm.train.domain import DomainDiscriminator

    torch.manual_seed(0)
    disc = DomainDiscriminator(dim=6, n_classes=3)
    pooled = torch.zeros(2, 6)
    out = disc(pooled, torch.tensor([0, 2]))
    assert out.shape == (2,)
    assert out[0] != out[1]  # same features, different labels: different logits
