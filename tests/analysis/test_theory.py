"""Distillation error, the distillation bound term by term, and risk variance, against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kdlab.analysis.theory import (augmented_layer_norms, distillation_error, distilled_risk_per_sample,
                                   generalization_bound, margin_rademacher_bound, mlp_linears, norm_grid_class,
                                   onehot_risk_per_sample, risk_variance, softened_target_probability,
                                   variance_interval, variance_ratio_interval)
from kdlab.data import GaussianMixture
from kdlab.models import create_model

LN3 = math.log(3.0)


def test_distillation_error_is_zero_for_identical_predictors():
    logits = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]])
    y = torch.tensor([2, 1])
    assert distillation_error(logits, logits.clone(), y, gamma=2.0) == {"phi": 0.0, "l1": 0.0, "n": 2}


def test_distillation_error_of_a_constructed_pair():
    # softmax([0, 0]) = (1/2, 1/2), softmax([ln 3, 0]) = (3/4, 1/4), softmax([0, ln 3]) = (1/4, 3/4). In float64:
    # abs=1e-7 is 1-2 float32 ulps at 0.25-0.5, below what float32 softmax kernels guarantee on every processor
    f = torch.tensor([[0.0, 0.0], [0.0, LN3]], dtype=torch.float64)
    g = torch.tensor([[LN3, 0.0], [0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    out = distillation_error(f, g, y, gamma=1.0)
    # |1/2 - 3/4| and |3/4 - 1/2| -> Phi = 1/4; L1 per sample = 1/4 + 1/4 = 1/2
    assert out["phi"] == pytest.approx(0.25, abs=1e-7)
    assert out["l1"] == pytest.approx(0.5, abs=1e-7)
    # the temperature divides the logits: 2 ln 3 at gamma = 2 is ln 3 at gamma = 1
    assert distillation_error(2 * f, 2 * g, y, gamma=2.0)["phi"] == pytest.approx(0.25, abs=1e-7)
    assert softened_target_probability(f, y, 1.0).tolist() == pytest.approx([0.5, 0.75])


def test_phi_is_at_most_half_the_l1_distance():
    gen = torch.Generator().manual_seed(0)
    f, g = torch.randn(200, 5, generator=gen) * 3, torch.randn(200, 5, generator=gen) * 3
    y = torch.randint(0, 5, (200,), generator=gen)
    out = distillation_error(f, g, y, gamma=1.5)
    assert 0 < out["phi"] <= out["l1"] / 2 + 1e-12


def test_distillation_error_rejects_bad_input():
    f = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="gamma=0"):
        distillation_error(f, f, torch.zeros(3, dtype=torch.long), gamma=0)
    with pytest.raises(ValueError, match="same shape"):
        distillation_error(f, torch.zeros(3, 3), torch.zeros(3, dtype=torch.long), gamma=1.0)
    with pytest.raises(ValueError, match="targets"):
        distillation_error(f, f, torch.tensor([0, 1, 2]), gamma=1.0)


def test_generalization_bound_every_term_by_hand():
    # gamma = 2: logits 2 ln 3 soften to ln 3 -> softmax (3/4, 1/4)
    g = torch.tensor([[2 * LN3, 0.0], [0.0, 2 * LN3], [0.0, 0.0], [2 * LN3, 0.0]])
    f = torch.zeros(4, 2)
    y = torch.tensor([0, 1, 0, 1])
    out = generalization_bound(f, g, y, gamma=2.0, delta=0.1, prior_weight=0.25, rademacher=0.5, n=4)
    # phi_g = (3/4, 3/4, 1/2, 1/4): (2/4) * (1/4 + 1/4 + 1/2 + 3/4) = 0.875
    assert out["train_surrogate"] == pytest.approx(0.875)
    # phi_f = 1/2 everywhere: Phi = (1/4 + 1/4 + 0 + 1/4) / 4 = 0.1875, times 8
    assert out["phi"] == pytest.approx(0.1875)
    assert out["distillation"] == pytest.approx(1.5)
    assert out["constant"] == pytest.approx(4.0)
    # 6 sqrt((ln(2/0.1) + ln lg 4) / 4) = 3 sqrt(ln 20 + ln 2) = 3 sqrt(ln 40)
    assert out["confidence"] == pytest.approx(3 * math.sqrt(math.log(40.0)))
    assert out["complexity"] == pytest.approx(0.25)
    assert out["prior"] == pytest.approx(3 * math.sqrt(math.log(4.0)))
    assert out["train_surrogate_teacher"] == pytest.approx(1.0)
    assert out["total"] == pytest.approx(0.875 + 1.5 + 4.0 + 3 * math.sqrt(math.log(40.0)) + 0.25
                                         + 3 * math.sqrt(math.log(4.0)))
    assert out["distillation_complexity"] == pytest.approx(out["total"] - 0.875 - 1.5)


def test_generalization_bound_rejects_bad_arguments():
    f = torch.zeros(4, 2)
    y = torch.tensor([0, 1, 0, 1])
    kw = dict(gamma=1.0, delta=0.1, prior_weight=0.5, rademacher=0.1)
    with pytest.raises(ValueError, match="delta=1.5"):
        generalization_bound(f, f, y, **{**kw, "delta": 1.5})
    with pytest.raises(ValueError, match="prior_weight=0"):
        generalization_bound(f, f, y, **{**kw, "prior_weight": 0})
    with pytest.raises(ValueError, match="n=10"):
        generalization_bound(f, f, y, n=10, **kw)
    with pytest.raises(ValueError, match="rademacher=-1"):
        generalization_bound(f, f, y, **{**kw, "rademacher": -1})


def test_augmented_layer_norms_fold_the_biases_in():
    hidden, head = nn.Linear(2, 2), nn.Linear(2, 1)
    with torch.no_grad():
        hidden.weight.copy_(torch.tensor([[1.0, 2.0], [2.0, 0.0]]))
        hidden.bias.copy_(torch.tensor([0.0, 1.0]))
        head.weight.copy_(torch.tensor([[1.0, 1.0]]))
        head.bias.copy_(torch.tensor([1.0]))
    # hidden: 1 + 4 + 4 + 0 (W) + 0 + 1 (b) + 1 (the unit carrying the constant) = 11; head: 1 + 1 + 1 = 3
    assert augmented_layer_norms([hidden, head]) == pytest.approx([math.sqrt(11.0), math.sqrt(3.0)])


def test_margin_rademacher_bound_by_hand():
    x = torch.tensor([[3.0, 4.0]])
    # (2k/n) prod M (sqrt(2 ln2 d) + 1) sqrt(sum ||x||^2 + 1) with k=2, n=1, M=(2, 3), d=2, ||x||^2 + 1 = 26
    expected = 4 * 6 * (math.sqrt(4 * math.log(2)) + 1) * math.sqrt(26.0)
    assert margin_rademacher_bound([2.0, 3.0], x, num_classes=2) == pytest.approx(expected)
    assert margin_rademacher_bound([2.0, 3.0], x, 2, augment_input=False) == pytest.approx(expected / math.sqrt(26) * 5)
    # n samples of equal norm: the bound falls as 1 / sqrt(n)
    x4 = x.repeat(4, 1)
    assert margin_rademacher_bound([2.0, 3.0], x4, 2) == pytest.approx(expected / 2)
    with pytest.raises(ValueError, match="num_classes=1"):
        margin_rademacher_bound([1.0], x, 1)


def test_mlp_linears_reads_kdlab_mlps_and_refuses_others():
    model = create_model("mlp", 3, [4], width=5, depth=2)
    linears = mlp_linears(model)
    assert [tuple(l.weight.shape) for l in linears] == [(5, 4), (5, 5), (3, 5)]
    with pytest.raises(ValueError, match="activation='tanh'"):
        mlp_linears(create_model("mlp", 3, [4], width=5, depth=1, activation="tanh"))
    with pytest.raises(ValueError, match="'cnn'"):
        mlp_linears(create_model("cnn", 3, [1, 8, 8], width=0.25, depth=1))


def test_norm_grid_class_rounds_up_to_powers_of_two_and_weights_the_prior():
    cls = norm_grid_class([3.0, 0.7], architecture=1, num_architectures=2)
    assert cls["exponents"] == [2, 0] and cls["levels"] == [4.0, 1.0]
    # p = (1/2) q(2) q(0), q(e) = 2 / (3 (|e|+1)(|e|+2)): (1/2)(1/18)(1/3) = 1/108
    assert cls["prior_weight"] == pytest.approx(1 / 108)
    # the prior over the exponents sums to 1
    total = sum(math.exp(math.log(2 / (3 * (abs(e) + 1) * (abs(e) + 2)))) for e in range(-20000, 20001))
    assert total == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="architecture=2"):
        norm_grid_class([1.0], architecture=2, num_architectures=2)


def test_risks_per_sample_by_hand():
    logits = torch.tensor([[0.0, LN3]])  # softmax (1/4, 3/4)
    assert onehot_risk_per_sample(logits, torch.tensor([1])).item() == pytest.approx(-math.log(0.75))
    probs = torch.tensor([[0.5, 0.5]])
    expected = -0.5 * math.log(0.25) - 0.5 * math.log(0.75)
    assert distilled_risk_per_sample(logits, probs).item() == pytest.approx(expected)


def test_variance_interval_matches_the_chi_square_table():
    out = variance_interval([1.0, 2.0, 3.0, 4.0])
    assert out["variance"] == pytest.approx(5 / 3)
    # chi2 quantiles with 3 degrees of freedom: 0.2158 (2.5%) and 9.3484 (97.5%)
    assert out["low"] == pytest.approx(3 * (5 / 3) / 9.3484, rel=1e-4)
    assert out["high"] == pytest.approx(3 * (5 / 3) / 0.21580, rel=1e-4)


def test_variance_ratio_of_a_scaled_copy_is_exact():
    a = torch.tensor([0.3, 1.2, -0.4, 2.2, 0.9])
    out = variance_ratio_interval(2 * a, a, num_bootstrap=200)
    assert out["ratio"] == pytest.approx(4.0) and out["low"] == pytest.approx(4.0) and out["high"] == pytest.approx(4.0)


def test_bayes_distilled_risk_has_lower_variance_than_the_one_hot_risk():
    mixture = GaussianMixture(num_classes=3, dim=4, separation=2.0, seed=0)
    torch.manual_seed(0)
    predictor = nn.Linear(4, 3)  # a fixed, deliberately imperfect predictor
    teacher = nn.Linear(4, 3)
    rows = risk_variance(predictor, mixture, sizes=[20, 80], replicates=400, teacher=teacher, seed=1,
                         num_bootstrap=300)
    for row in rows:
        ratio = row["bayes_over_onehot"]
        assert ratio["high"] < 1.0  # V[R*_hat] <= V[R_hat], with the interval reported
        assert ratio["low"] <= ratio["ratio"] <= ratio["high"]
        for key in ("onehot", "bayes"):
            assert row[key]["low"] < row[key]["variance"] < row[key]["high"]
        # both risks are unbiased for R(f): their means agree within Monte-Carlo error
        se = math.sqrt((row["onehot"]["variance"] + row["bayes"]["variance"]) / row["replicates"])
        assert abs(row["onehot"]["mean"] - row["bayes"]["mean"]) < 4 * se
        assert "teacher_over_onehot" in row
    # the variance of a mean of n i.i.d. losses falls as 1/n: 4x the data, about 1/4 the variance
    assert rows[0]["onehot"]["variance"] / rows[1]["onehot"]["variance"] == pytest.approx(4.0, rel=0.35)
    with pytest.raises(ValueError, match="replicates=1"):
        risk_variance(predictor, mixture, sizes=[10], replicates=1)
