"""dkd: Decoupled KD (Zhao et al., CVPR 2022) against hand computations with python math."""

import math

import pytest
import torch

from kdlab.errors import ConfigError
from kdlab.losses import build, decoupled_kl


def softmax(row, t=1.0):
    top = max(v / t for v in row)
    exps = [math.exp(v / t - top) for v in row]
    return [e / sum(exps) for e in exps]


def kl(p, q):
    return sum(pc * math.log(pc / qc) for pc, qc in zip(p, q) if pc > 0)


def dkd_parts_by_hand(z_s, z_t, y, t):
    """(TCKD, NCKD, p_gt of the teacher) for one sample, straight from the paper's definitions."""
    p_s, p_t = softmax(z_s, t), softmax(z_t, t)
    b_s, b_t = [p_s[y], 1 - p_s[y]], [p_t[y], 1 - p_t[y]]
    hat_s = [p / (1 - p_s[y]) for c, p in enumerate(p_s) if c != y]  # fine here: p_gt is far from 1
    hat_t = [p / (1 - p_t[y]) for c, p in enumerate(p_t) if c != y]
    return kl(b_t, b_s), kl(hat_t, hat_s), p_t[y]


def ce(row, y):
    return -math.log(softmax(row)[y])


Z_S = [[1.0, 2.0, 0.5, -1.0], [0.0, 0.3, 1.0, 2.0]]
Z_T = [[3.0, 1.0, 0.0, -2.0], [1.0, 2.5, -1.0, 0.5]]
Y = [0, 1]


def tensors():
    return torch.tensor(Z_S, dtype=torch.float64), torch.tensor(Z_T, dtype=torch.float64), torch.tensor(Y)


def test_dkd_by_hand_with_defaults_except_temperature():
    t = 2.0
    parts = [dkd_parts_by_hand(zs, zt, y, t) for zs, zt, y in zip(Z_S, Z_T, Y)]
    tckd = t * t * sum(p[0] for p in parts) / 2
    nckd = t * t * sum(p[1] for p in parts) / 2
    ce_term = (ce(Z_S[0], 0) + ce(Z_S[1], 1)) / 2
    hand = 1.0 * ce_term + 1.0 * tckd + 8.0 * nckd  # ce_weight=1, alpha=1, beta=8 (defaults)

    loss_fn = build("dkd", temperature=t)
    loss, parts = loss_fn.compute(*tensors())
    assert loss.item() == pytest.approx(hand, rel=1e-12)
    assert {k: v.item() for k, v in parts.items()} == {
        "ce": pytest.approx(ce_term, rel=1e-12),
        "tckd": pytest.approx(tckd, rel=1e-12),
        "nckd": pytest.approx(nckd, rel=1e-12),
    }


def test_weights_are_applied_to_the_right_parts():
    s, t, y = tensors()
    loss_fn = build("dkd", alpha=0.3, beta=2.5, ce_weight=0.7, temperature=3.0)
    loss, parts = loss_fn.compute(s, t, y)
    p = {k: v.item() for k, v in parts.items()}
    assert loss.item() == pytest.approx(0.7 * p["ce"] + 0.3 * p["tckd"] + 2.5 * p["nckd"], rel=1e-12)


def test_classical_kd_equals_tckd_plus_weighted_nckd_per_sample():
    # the paper's Eq. (decomposition): KL(p^T || p^S) = TCKD + (1 - p_gt^T) * NCKD, at equal temperature
    g = torch.Generator().manual_seed(4)
    s = torch.randn(6, 7, generator=g, dtype=torch.float64) * 3
    t = torch.randn(6, 7, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 7, (6,), generator=g)
    temperature = 2.5
    tckd, nckd = decoupled_kl(s, t, y, temperature)
    for i in range(6):
        z_s, z_t, gt = s[i].tolist(), t[i].tolist(), int(y[i])
        classical = kl(softmax(z_t, temperature), softmax(z_s, temperature))
        p_gt = softmax(z_t, temperature)[gt]
        assert tckd[i].item() + (1 - p_gt) * nckd[i].item() == pytest.approx(classical, rel=1e-10)
        hand_tckd, hand_nckd, _ = dkd_parts_by_hand(z_s, z_t, gt, temperature)
        assert tckd[i].item() == pytest.approx(hand_tckd, rel=1e-10, abs=1e-15)
        assert nckd[i].item() == pytest.approx(hand_nckd, rel=1e-10, abs=1e-15)


def test_identity_through_the_losses_on_one_sample():
    z_s, z_t, gt, temperature = [0.5, -1.0, 2.0], [2.0, 0.0, 1.0], 2, 4.0
    s, t, y = torch.tensor([z_s], dtype=torch.float64), torch.tensor([z_t], dtype=torch.float64), torch.tensor([gt])
    dkd = build("dkd", temperature=temperature)
    kd = build("kd", temperature=temperature, alpha=1.0)
    dkd_parts = {k: v.item() for k, v in dkd.compute(s, t, y).parts.items()}
    kd_parts = {k: v.item() for k, v in kd.compute(s, t, y).parts.items()}
    p_gt = softmax(z_t, temperature)[gt]
    # both sides carry T^2: kd's "kd" part is T^2 KL, dkd's parts are T^2 TCKD and T^2 NCKD
    assert kd_parts["kd"] == pytest.approx(dkd_parts["tckd"] + (1 - p_gt) * dkd_parts["nckd"], rel=1e-12)


def test_tckd_sees_only_the_gt_share_and_nckd_only_the_wrong_class_shape():
    y = torch.tensor([0])
    teacher = torch.tensor([[2.0, 1.0, 0.0]], dtype=torch.float64)
    # wrong classes swapped: same p_gt (same set of wrong logits) but a different non-target distribution
    swapped = torch.tensor([[2.0, 0.0, 1.0]], dtype=torch.float64)
    tckd, nckd = decoupled_kl(swapped, teacher, y, 1.0)
    assert tckd.item() == pytest.approx(0.0, abs=1e-15)
    hat_t, hat_s = softmax([1.0, 0.0]), softmax([0.0, 1.0])
    assert nckd.item() == pytest.approx(kl(hat_t, hat_s), rel=1e-12)
    # GT raised only: the wrong classes keep their relative shape, p_gt changes
    sharper = torch.tensor([[3.5, 1.0, 0.0]], dtype=torch.float64)
    tckd, nckd = decoupled_kl(sharper, teacher, y, 1.0)
    assert nckd.item() == pytest.approx(0.0, abs=1e-15)
    p_t, p_s = softmax([2.0, 1.0, 0.0])[0], softmax([3.5, 1.0, 0.0])[0]
    assert tckd.item() == pytest.approx(kl([p_t, 1 - p_t], [p_s, 1 - p_s]), rel=1e-12)


def test_warmup_schedule():
    s, t, y = tensors()
    loss_fn = build("dkd", warmup_epochs=20)
    loss, parts = loss_fn.compute(s, t, y)
    full = loss.item()  # freshly built: after the warm-up
    p = {k: v.item() for k, v in parts.items()}
    distill = 1.0 * p["tckd"] + 8.0 * p["nckd"]
    assert full == pytest.approx(p["ce"] + distill, rel=1e-12)
    expected = {0: 0.0, 5: 0.25, 10: 0.5, 19: 0.95, 20: 1.0, 100: 1.0}
    for epoch, warm in expected.items():
        loss_fn.set_epoch(epoch)
        assert loss_fn.warmup_factor == warm
        assert loss_fn(s, t, y).item() == pytest.approx(p["ce"] + warm * distill, rel=1e-12)
    loss_fn.set_epoch(0)
    assert loss_fn(s, t, y).item() == build("ce")(s, None, y).item()  # epoch 0: CE alone
    no_warmup = build("dkd", warmup_epochs=0)
    no_warmup.set_epoch(0)
    assert no_warmup.warmup_factor == 1.0


@pytest.mark.parametrize(("epochs", "expected"), [
    # the paper's 20 of 240 epochs: W = 20
    (240, {0: 0.0, 5: 0.25, 10: 0.5, 19: 0.95, 20: 1.0, 239: 1.0}),
    # the same fraction of a 30-epoch run: W = 2.5, full strength from epoch 3 on (20 epochs would be 2/3 of it)
    (30, {0: 0.0, 1: 0.4, 2: 0.8, 3: 1.0, 29: 1.0}),
])
def test_default_warmup_is_the_papers_fraction_of_the_run(epochs, expected):
    s, t, y = tensors()
    loss_fn = build("dkd")
    assert loss_fn.hyperparams["warmup_fraction"] == 20 / 240 and loss_fn.hyperparams["warmup_epochs"] is None
    loss, parts = loss_fn.compute(s, t, y)
    full = loss.item()  # freshly built: full strength, no schedule needed
    p = {k: v.item() for k, v in parts.items()}
    distill = p["tckd"] + 8.0 * p["nckd"]
    assert full == pytest.approx(p["ce"] + distill, rel=1e-12)
    loss_fn.set_schedule(epochs)
    assert loss_fn.warmup_length == pytest.approx(20 * epochs / 240, rel=1e-15)
    for epoch, warm in expected.items():
        loss_fn.set_epoch(epoch)
        assert loss_fn.warmup_factor == pytest.approx(warm, rel=1e-15)
        assert loss_fn(s, t, y).item() == pytest.approx(p["ce"] + warm * distill, rel=1e-12)


def test_warmup_in_epochs_ignores_the_run_length_and_fraction_needs_one():
    fixed = build("dkd", warmup_epochs=20)
    fixed.set_schedule(30)
    fixed.set_epoch(10)
    assert fixed.warmup_factor == 0.5  # the paper's literal 20 epochs, two thirds of this run
    scaled = build("dkd", warmup_fraction=0.5)
    scaled.set_schedule(30)
    scaled.set_epoch(10)
    assert scaled.warmup_factor == pytest.approx(10 / 15, rel=1e-15)
    with pytest.raises(RuntimeError, match=r"warmup_fraction=0\.5 is a fraction of the student's epochs"):
        build("dkd", warmup_fraction=0.5).set_epoch(0)  # never told the run's length
    with pytest.raises(ConfigError) as err:
        build("dkd", warmup_fraction=0.1, warmup_epochs=5)
    assert str(err.value) == ("loss 'dkd': give warmup_fraction (of the student's epochs) or warmup_epochs, not "
                              "both (got warmup_fraction=0.1, warmup_epochs=5)")
    with pytest.raises(ConfigError, match=r"warmup_fraction=1\.5 is not allowed; must be in \[0, 1\]"):
        build("dkd", warmup_fraction=1.5)


def test_two_classes_have_no_non_target_term():
    s = torch.tensor([[0.3, -0.4]], dtype=torch.float64)
    t = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    tckd, nckd = decoupled_kl(s, t, torch.tensor([1]), 2.0)
    assert nckd.item() == 0.0
    p_t, p_s = softmax([1.0, 2.0], 2.0)[1], softmax([0.3, -0.4], 2.0)[1]
    assert tckd.item() == pytest.approx(kl([p_t, 1 - p_t], [p_s, 1 - p_s]), rel=1e-12)
    with pytest.raises(ValueError, match="at least 2 classes"):
        build("dkd")(torch.zeros(2, 1), torch.zeros(2, 1), torch.tensor([0, 0]))


@pytest.mark.parametrize("standardize", [False, True])
def test_huge_logits_stay_finite(standardize):
    # the official masking (z / T - 1000 at the GT) would leave the GT logit on top at this scale
    s = torch.tensor([[1e4, -1e4, 0.0, 5e3], [-1e4, 0.0, 1e4, 2.0]], requires_grad=True)
    t = torch.tensor([[-1e4, 1e4, 0.0, 3.0], [0.0, 1e4, -1e4, 1e4]])
    loss_fn = build("dkd", standardize=standardize)
    loss, parts = loss_fn.compute(s, t, torch.tensor([0, 2]))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(s.grad).all()
    assert all(math.isfinite(v.item()) for v in parts.values())


def test_huge_teacher_confidence_gives_the_exact_non_target_distribution():
    # teacher GT logit 1e4 above the rest: 1 - p_gt underflows, yet p^ over the wrong classes is softmax(1, 0)
    t = torch.tensor([[1e4, 1.0, 0.0]], dtype=torch.float64)
    s = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    _, nckd = decoupled_kl(s, t, torch.tensor([0]), 1.0)
    assert nckd.item() == pytest.approx(kl(softmax([1.0, 0.0]), softmax([0.0, 1.0])), rel=1e-12)


def test_bad_hyperparameters():
    with pytest.raises(ConfigError) as err:
        build("dkd", beta=-1)
    assert str(err.value) == "loss 'dkd': beta=-1 is not allowed; must be >= 0"
    with pytest.raises(ConfigError, match="alpha=nan is not allowed; must be a finite number >= 0"):
        build("dkd", alpha=float("nan"))
    with pytest.raises(ConfigError, match="warmup_epochs=-1 is not allowed; must be >= 0"):
        build("dkd", warmup_epochs=-1)
    with pytest.raises(ConfigError, match="temperature=0 is not allowed; must be > 0"):
        build("dkd", temperature=0)
    with pytest.raises(ConfigError, match="standardize='yes'"):
        build("dkd", standardize="yes")
