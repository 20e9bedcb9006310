"""kd: Hinton et al. 2015, checked against values computed by hand with python math."""

import math

import pytest
import torch

from kdlab.losses import build


def log_softmax(row, t=1.0):
    scaled = [v / t for v in row]
    top = max(scaled)
    log_norm = top + math.log(sum(math.exp(v - top) for v in scaled))
    return [v - log_norm for v in scaled]


def kl(teacher_row, student_row, t=1.0):
    lp, lq = log_softmax(teacher_row, t), log_softmax(student_row, t)
    return sum(math.exp(a) * (a - b) for a, b in zip(lp, lq))


def ce(student_row, y):
    return -log_softmax(student_row)[y]


Z_S = [[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]]
Z_T = [[3.0, 1.0, 0.0], [1.0, 2.0, -1.0]]
Y = [2, 1]


def tensors():
    return (torch.tensor(Z_S, dtype=torch.float64), torch.tensor(Z_T, dtype=torch.float64), torch.tensor(Y))


def test_alpha_zero_is_cross_entropy_exactly():
    s, t, y = tensors()
    loss = build("kd", alpha=0.0, temperature=3.0)(s, t, y)
    assert loss.item() == build("ce")(s, None, y).item()
    hand = (ce(Z_S[0], 2) + ce(Z_S[1], 1)) / 2
    assert loss.item() == pytest.approx(hand, abs=1e-12)


def test_alpha_one_temperature_one_is_kl_by_hand():
    s, t, y = tensors()
    # row 0: p_t = softmax(3,1,0) = (0.8438, 0.1142, 0.0420), p_s = softmax(1,2,3) = (0.0900, 0.2447, 0.6652)
    # KL_0 = 0.8438 ln(0.8438/0.0900) + 0.1142 ln(0.1142/0.2447) + 0.0420 ln(0.0420/0.6652) = 1.6851
    row0 = sum(p * math.log(p / q) for p, q in [(0.8437947, 0.0900306), (0.1141952, 0.2447285), (0.0420101, 0.6652410)])
    assert row0 == pytest.approx(1.685124, abs=1e-5)
    hand = (kl(Z_T[0], Z_S[0]) + kl(Z_T[1], Z_S[1])) / 2
    assert kl(Z_T[0], Z_S[0]) == pytest.approx(row0, abs=1e-5)
    loss = build("kd", alpha=1.0, temperature=1.0)(s, t, y)
    assert loss.item() == pytest.approx(hand, rel=1e-12)


def test_general_case_temperature_two_alpha_half_by_hand():
    s, t, y = tensors()
    kd_term = 2.0**2 * (kl(Z_T[0], Z_S[0], 2.0) + kl(Z_T[1], Z_S[1], 2.0)) / 2
    ce_term = (ce(Z_S[0], 2) + ce(Z_S[1], 1)) / 2
    loss_fn = build("kd", temperature=2.0, alpha=0.5)
    loss, parts = loss_fn.compute(s, t, y)
    assert loss.item() == pytest.approx(0.5 * kd_term + 0.5 * ce_term, rel=1e-12)
    assert set(parts) == {"ce", "kd"}
    assert parts["kd"].item() == pytest.approx(kd_term, rel=1e-12)
    assert parts["ce"].item() == pytest.approx(ce_term, rel=1e-12)


def test_identical_logits_give_zero_distillation():
    z = torch.tensor([[0.3, -1.2, 2.0, 0.0], [5.0, 5.0, -5.0, 1.0]])
    loss = build("kd", alpha=1.0, temperature=4.0)(z, z.clone(), torch.tensor([0, 3]))
    assert loss.item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("standardize", [False, True])
def test_huge_logits_stay_finite(standardize):
    s = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 0.0, 1e4]], requires_grad=True)
    t = torch.tensor([[-1e4, 1e4, 0.0], [0.0, 1e4, -1e4]])
    loss = build("kd", alpha=0.9, temperature=1.0, standardize=standardize)(s, t, torch.tensor([0, 2]))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(s.grad).all()


def test_standardize_ignores_shift_and_positive_scale_of_the_teacher():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(6, 10, generator=g, dtype=torch.float64)
    t = torch.randn(6, 10, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (6,), generator=g)
    loss_fn = build("kd", standardize=True)
    base = loss_fn(s, t, y)
    moved = loss_fn(s, 7.5 * t - 40.0, y)
    torch.testing.assert_close(moved, base, rtol=1e-6, atol=1e-9)
    plain = build("kd")
    assert abs(plain(s, 7.5 * t - 40.0, y).item() - plain(s, t, y).item()) > 1e-2  # without it the loss moves


def test_teacher_gets_no_gradient_and_half_precision_is_promoted():
    s = torch.randn(4, 5, dtype=torch.float16, requires_grad=True)
    t = torch.randn(4, 5, dtype=torch.float16, requires_grad=True)
    loss = build("kd")(s, t, torch.tensor([0, 1, 2, 3]))
    assert loss.dtype == torch.float32
    loss.backward()
    assert t.grad is None
    assert torch.isfinite(s.grad).all()


def test_missing_teacher_and_bad_shapes_are_clear_errors():
    loss_fn = build("kd")
    s, y = torch.zeros(2, 3), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="needs teacher_logits"):
        loss_fn(s, None, y)
    with pytest.raises(ValueError, match="same shape"):
        loss_fn(s, torch.zeros(2, 4), y)
    with pytest.raises(ValueError, match="targets"):
        loss_fn(s, torch.zeros(2, 3), torch.tensor([0, 1, 2]))


@pytest.mark.parametrize("standardize", [False, True])
def test_kd_gradient_passes_gradcheck(standardize):
    g = torch.Generator().manual_seed(0)
    z_s = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    z_t = torch.randn(6, 5, generator=g, dtype=torch.float64) * 3
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    loss = build("kd", temperature=2.5, alpha=0.7, standardize=standardize)
    assert torch.autograd.gradcheck(lambda z: loss(z, z_t, y), (z_s,))


def test_kd_with_a_masked_teacher_class_stays_finite():
    """A teacher logit of -inf (class masking) has p_t = 0: its KL term is 0 (limit of p log p), never NaN."""
    z_s = torch.tensor([[0.5, -1.0, 2.0], [1.0, 0.0, -1.0]], requires_grad=True)
    z_t = torch.tensor([[float("-inf"), 1.0, 2.0], [3.0, float("-inf"), 0.0]])
    y = torch.tensor([2, 0])
    loss = build("kd", temperature=2.0, alpha=1.0)(z_s, z_t, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z_s.grad).all()
    # by hand: KL over the two unmasked classes only; d/dz = T * (p_s - p_t) / N with p_t = 0 on the masked class
    p_t = torch.softmax(z_t / 2.0, dim=-1)
    log_p_s = torch.log_softmax(z_s.detach() / 2.0, dim=-1)
    kl = sum((p_t[i, c] * (torch.log(p_t[i, c]) - log_p_s[i, c])).item()
             for i in range(2) for c in range(3) if p_t[i, c] > 0) / 2
    assert loss.item() == pytest.approx(4.0 * kl, rel=1e-5)
    torch.testing.assert_close(z_s.grad, 2.0 * (log_p_s.exp() - p_t) / 2)
