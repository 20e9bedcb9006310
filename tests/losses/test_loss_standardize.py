"""standardize_logits: per-sample z-score (Sun et al., CVPR 2024)."""

import math

import pytest
import torch

from kdlab.losses import standardize_logits


def test_zscore_by_hand():
    row = [1.0, 2.0, 6.0]
    mean = sum(row) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in row) / 3)  # population std, = sqrt(42/9)
    out = standardize_logits(torch.tensor([row], dtype=torch.float64), eps=0.0)
    assert out[0].tolist() == pytest.approx([(v - mean) / std for v in row], rel=1e-12)


def test_shift_and_scale_invariance():
    z = torch.randn(5, 7, dtype=torch.float64)
    torch.testing.assert_close(standardize_logits(3.0 * z + 11.0), standardize_logits(z), rtol=1e-6, atol=1e-7)


def test_constant_logits_give_zeros_with_finite_gradient():
    z = torch.full((2, 4), 3.0, requires_grad=True)
    out = standardize_logits(z)
    assert torch.equal(out, torch.zeros(2, 4))
    (out * torch.arange(4.0)).sum().backward()
    assert torch.isfinite(z.grad).all()
