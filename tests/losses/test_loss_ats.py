"""ats: asymmetric temperature scaling (Li et al., NeurIPS 2022) against hand computations."""

import math

import pytest
import torch

from kdlab.losses import build


def log_softmax(row):
    top = max(row)
    log_norm = top + math.log(sum(math.exp(v - top) for v in row))
    return [v - log_norm for v in row]


def test_ats_by_hand_on_one_sample():
    # teacher z = (2, 1, 0), GT = 0, tau_gt = 2, tau_other = 1: scaled logits (2/2, 1/1, 0/1) = (1, 1, 0)
    e = math.e
    p = [e / (2 * e + 1), e / (2 * e + 1), 1 / (2 * e + 1)]  # = (0.4223, 0.4223, 0.1554)
    assert p[0] == pytest.approx(0.42232, abs=1e-5)
    # student z = (0.5, 0, -0.5), tau_student = 2: q = softmax(0.25, 0, -0.25)
    norm = math.exp(0.25) + 1 + math.exp(-0.25)
    q = [math.exp(0.25) / norm, 1 / norm, math.exp(-0.25) / norm]
    kl = sum(pc * math.log(pc / qc) for pc, qc in zip(p, q))
    ce = -math.log(math.exp(0.5) / (math.exp(0.5) + 1 + math.exp(-0.5)))
    hand = 0.5 * ce + 0.5 * 2.0**2 * kl

    loss_fn = build("ats", tau_gt=2.0, tau_other=1.0, tau_student=2.0, alpha=0.5)
    s = torch.tensor([[0.5, 0.0, -0.5]], dtype=torch.float64)
    t = torch.tensor([[2.0, 1.0, 0.0]], dtype=torch.float64)
    loss, parts = loss_fn.compute(s, t, torch.tensor([0]))
    assert loss.item() == pytest.approx(hand, rel=1e-12)
    assert {k: v.item() for k, v in parts.items()} == {"ce": pytest.approx(ce, rel=1e-12),
                                                      "kd": pytest.approx(4 * kl, rel=1e-12)}


def test_gt_temperature_only_touches_the_gt_column():
    # same teacher, GT = 2 instead: scaled logits (2/1, 1/1, 0/2) = (2, 1, 0) -> p = softmax(2, 1, 0)
    p = [math.exp(v) for v in log_softmax([2.0, 1.0, 0.0])]
    s = torch.tensor([[0.0, 0.0, 0.0]], dtype=torch.float64)
    t = torch.tensor([[2.0, 1.0, 0.0]], dtype=torch.float64)
    loss = build("ats", tau_gt=2.0, tau_other=1.0, tau_student=1.0, alpha=1.0)(s, t, torch.tensor([2]))
    hand = sum(pc * math.log(pc / (1 / 3)) for pc in p)
    assert loss.item() == pytest.approx(hand, rel=1e-12)


@pytest.mark.parametrize("standardize", [False, True])
def test_equal_temperatures_equal_kd(standardize):
    g = torch.Generator().manual_seed(1)
    s = torch.randn(8, 6, generator=g, dtype=torch.float64) * 3
    t = torch.randn(8, 6, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 6, (8,), generator=g)
    ats = build("ats", tau_gt=3.0, tau_other=3.0, tau_student=3.0, alpha=0.7, standardize=standardize)
    kd = build("kd", temperature=3.0, alpha=0.7, standardize=standardize)
    torch.testing.assert_close(ats(s, t, y), kd(s, t, y), rtol=1e-12, atol=1e-12)
    ats_parts, kd_parts = ats.compute(s, t, y).parts, kd.compute(s, t, y).parts
    assert {k: v.item() for k, v in ats_parts.items()} == pytest.approx({k: v.item() for k, v in kd_parts.items()},
                                                                         rel=1e-12)


@pytest.mark.parametrize("name", ["ats", "isats"])
@pytest.mark.parametrize("standardize", [False, True])
def test_huge_logits_stay_finite(name, standardize):
    s = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 0.0, 1e4]], requires_grad=True)
    t = torch.tensor([[-1e4, 1e4, 0.0], [0.0, 1e4, -1e4]])
    loss = build(name, standardize=standardize)(s, t, torch.tensor([0, 2]))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(s.grad).all()
