"""standardize_logits: per-sample z-score (Sun et al., CVPR 2024)."""

import math

import pytest
import torch

from kdlab.losses import standardize_logits


def test_zscore_by_hand():
    row = [1.0, 2.0, 6.0]
    mean = sum(row) / 3
    squares = sum((v - mean) ** 2 for v in row)  # 42/3 = 14
    z = torch.tensor([row], dtype=torch.float64)
    # default: the sample std of torch.std and the authors' code, sqrt(14 / 2)
    sample = standardize_logits(z, eps=0.0)
    assert sample[0].tolist() == pytest.approx([(v - mean) / math.sqrt(squares / 2) for v in row], rel=1e-12)
    # the paper's population std, sqrt(14 / 3): larger z-scores by sqrt(3 / 2)
    population = standardize_logits(z, eps=0.0, std="population")
    assert population[0].tolist() == pytest.approx([(v - mean) / math.sqrt(squares / 3) for v in row], rel=1e-12)
    torch.testing.assert_close(population, sample * math.sqrt(3 / 2), rtol=1e-12, atol=0.0)


def test_sample_std_equals_torch_std():
    z = torch.randn(6, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = (z - z.mean(dim=-1, keepdim=True)) / z.std(dim=-1, keepdim=True)
    torch.testing.assert_close(standardize_logits(z, eps=0.0), expected, rtol=1e-12, atol=1e-12)


def test_unknown_std_form_is_refused():
    with pytest.raises(ValueError, match="std='biased' is not allowed; must be one of sample, population"):
        standardize_logits(torch.zeros(1, 3), std="biased")


def test_shift_and_scale_invariance():
    z = torch.randn(5, 7, dtype=torch.float64)
    torch.testing.assert_close(standardize_logits(3.0 * z + 11.0), standardize_logits(z), rtol=1e-6, atol=1e-7)


def test_constant_logits_give_zeros_with_finite_gradient():
    z = torch.full((2, 4), 3.0, requires_grad=True)
    out = standardize_logits(z)
    assert torch.equal(out, torch.zeros(2, 4))
    (out * torch.arange(4.0)).sum().backward()
    assert torch.isfinite(z.grad).all()
