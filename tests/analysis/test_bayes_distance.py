"""Distance to the Bayes posterior against values derived by hand from the mixtures' densities."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.analysis.bayes_distance import BayesDistanceAccumulator, bayes_distance, compare_with_bayes
from kdlab.data import GaussianMixture
from kdlab.data.hierarchical_mixture import HierarchicalMixture

F64 = torch.float64


def two_class_posterior(x: float, mu0: float = -1.0, mu1: float = 2.0, sigma: float = 1.5) -> float:
    """p*(y=1|x) for equal priors and N(mu_k, sigma^2): the log-odds are
    [(x - mu0)^2 - (x - mu1)^2] / (2 sigma^2) = (2x (mu1 - mu0) + mu0^2 - mu1^2) / (2 sigma^2)."""
    log_odds = (2 * x * (mu1 - mu0) + mu0**2 - mu1**2) / (2 * sigma**2)
    return 1 / (1 + math.exp(-log_odds))


def softmax(z: list[float]) -> list[float]:
    w = [math.exp(v) for v in z]
    return [v / sum(w) for v in w]


XS = [0.3, -1.0, 1.7]
MODEL = [[-0.4, 0.2], [1.0, 1.0], [-2.0, 0.5]]
TARGETS = [0, 0, 1]


def test_two_class_mixture_by_hand() -> None:
    # log-odds (6x - 3) / 4.5 with means -1, 2 and sigma 1.5: p*(1|0.3) = 0.3392, p*(1|-1) = 0.1192, p*(1|1.7) = 0.8676
    expected_kl, expected_tv, expected_agree = 0.0, 0.0, 0.0
    for x, z in zip(XS, MODEL):
        p1 = two_class_posterior(x)
        p, q = [1 - p1, p1], softmax(z)
        expected_kl += sum(pk * math.log(pk / qk) for pk, qk in zip(p, q)) / 3
        expected_tv += abs(p1 - q[1]) / 3
        expected_agree += float((p1 > 0.5) == (q[1] > 0.5)) / 3
    assert two_class_posterior(0.5) == pytest.approx(0.5)  # the midpoint of the means
    # x = 0.3: the model says 1, Bayes 0; x = -1.0: a tie, argmax 0 = Bayes; x = 1.7: both 1
    assert expected_agree == pytest.approx(2 / 3)

    bayes = torch.tensor([[0.0, (6 * x - 3) / 4.5] for x in XS], dtype=F64)
    result = bayes_distance(torch.tensor(MODEL, dtype=F64), bayes, torch.tensor(TARGETS))
    assert result["kl"] == pytest.approx(expected_kl, rel=1e-12)
    assert result["tv"] == pytest.approx(expected_tv, rel=1e-12)
    assert result["bayes_agreement"] == pytest.approx(expected_agree)
    # with two classes the non-GT part is one class holding all of it, for the model and for Bayes alike
    assert result["nongt_kl"] == 0.0 and result["nongt_tv"] == 0.0
    assert result["num_samples"] == 3

    # the mixture's own log-joint gives the same numbers (its normaliser cancels in the softmax)
    mixture = GaussianMixture(means=torch.tensor([[-1.0], [2.0]]), sigma=1.5)
    log_joint = mixture.log_joint(torch.tensor([[x] for x in XS], dtype=F64))
    from_mixture = bayes_distance(torch.tensor(MODEL, dtype=F64), log_joint, torch.tensor(TARGETS))
    assert from_mixture["kl"] == pytest.approx(expected_kl, rel=1e-10)
    assert from_mixture["tv"] == pytest.approx(expected_tv, rel=1e-10)


def test_three_class_nongt_part_by_hand() -> None:
    # y = 0: model non-GT logits (1, 0), Bayes non-GT logits (0, 0.5); renormalised non-GT distributions are their
    # softmaxes.
    model = torch.tensor([[2.0, 1.0, 0.0]], dtype=F64)
    bayes = torch.tensor([[1.0, 0.0, 0.5]], dtype=F64)
    q, p = softmax([1.0, 0.0]), softmax([0.0, 0.5])
    result = bayes_distance(model, bayes, torch.tensor([0]))
    assert result["nongt_kl"] == pytest.approx(sum(pk * math.log(pk / qk) for pk, qk in zip(p, q)), rel=1e-12)
    assert result["nongt_tv"] == pytest.approx(abs(p[0] - q[0]), rel=1e-12)
    full_q, full_p = softmax([2.0, 1.0, 0.0]), softmax([1.0, 0.0, 0.5])
    assert result["kl"] == pytest.approx(sum(a * math.log(a / b) for a, b in zip(full_p, full_q)), rel=1e-12)
    assert result["tv"] == pytest.approx(0.5 * sum(abs(a - b) for a, b in zip(full_p, full_q)), rel=1e-12)
    assert result["bayes_agreement"] == 1.0


def hierarchical_sample(n: int = 600) -> tuple[HierarchicalMixture, torch.Tensor, torch.Tensor, torch.Tensor]:
    mixture = HierarchicalMixture(num_superclasses=3, classes_per_superclass=3, components_per_class=2, dim=4,
                                  superclass_separation=4.0, class_separation=1.5, component_spread=1.5, seed=1)
    x, y = mixture.sample(n, torch.Generator().manual_seed(0))
    return mixture, x, y, mixture.log_joint(x)


def test_the_bayes_posterior_is_at_distance_zero_from_itself() -> None:
    mixture, x, y, bayes = hierarchical_sample()
    shifted = bayes + 123.0  # logits, not probabilities: a constant per row changes nothing
    result = bayes_distance(shifted, bayes, y)
    assert result["kl"] == pytest.approx(0.0, abs=1e-12)
    assert result["tv"] == pytest.approx(0.0, abs=1e-12)
    assert result["nongt_kl"] == pytest.approx(0.0, abs=1e-12)
    assert result["bayes_agreement"] == 1.0
    compared = compare_with_bayes(bayes, bayes, y, temperatures=(1.0, 4.0), superclass_of=mixture.superclass_of)
    for tau in ("1.0", "4.0"):
        assert compared["derived_std"][tau]["ratio"] == pytest.approx(1.0, rel=1e-12)
    assert compared["affinity"]["spearman"] == pytest.approx(1.0)
    assert compared["affinity"]["topk_overlap"] == 1.0
    assert compared["in_superclass_share"]["model"] == pytest.approx(compared["in_superclass_share"]["bayes"])


def test_a_model_far_from_bayes_is_far() -> None:
    _, _, y, bayes = hierarchical_sample()
    uniform = torch.zeros_like(bayes)
    result = bayes_distance(uniform, bayes, y)
    # KL(p* || uniform) = log C - H(p*) > 0
    p = torch.softmax(bayes, dim=1)
    entropy = -(p * torch.log_softmax(bayes, dim=1)).sum(1).mean()
    assert result["kl"] == pytest.approx(math.log(9) - float(entropy), rel=1e-10)
    assert result["kl"] > 0.5 and result["tv"] > 0.3
    compared = compare_with_bayes(uniform, bayes, y, temperatures=(1.0,))
    assert compared["derived_std"]["1.0"]["model"] == 0.0  # all wrong classes alike: no dark knowledge
    assert compared["derived_std"]["1.0"]["ratio"] == 0.0


def test_invariant_to_row_shifts_sample_order_class_labels_and_batching() -> None:
    _, _, y, bayes = hierarchical_sample()
    model = bayes / 2.0 + 0.3 * torch.randn(bayes.shape, generator=torch.Generator().manual_seed(2), dtype=F64)
    base = bayes_distance(model, bayes, y)
    assert base["kl"] > 0.01
    shifted = bayes_distance(model - 7.0 * torch.arange(len(y), dtype=F64)[:, None], bayes + 3.0, y)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(3))
    reordered = bayes_distance(model[order], bayes[order], y[order])
    relabel = torch.randperm(9, generator=torch.Generator().manual_seed(4))  # new label of old class c: relabel[c]
    inverse = torch.argsort(relabel)
    relabelled = bayes_distance(model[:, inverse], bayes[:, inverse], relabel[y])
    streamed = bayes_distance(model, bayes, y, batch_size=7)
    for other in (shifted, reordered, relabelled, streamed):
        for key in ("kl", "tv", "nongt_kl", "nongt_tv", "bayes_agreement"):
            assert other[key] == pytest.approx(base[key], rel=1e-10, abs=1e-14)


def test_accumulator_matches_the_one_shot_function_and_float32_input() -> None:
    _, _, y, bayes = hierarchical_sample()
    model = (bayes * 0.7).to(torch.float32)
    accumulator = BayesDistanceAccumulator()
    for part in (slice(0, 100), slice(100, 100), slice(100, 600)):
        accumulator.update(model[part], bayes[part], y[part])
    one_shot = bayes_distance(model.double(), bayes, y)
    for key, value in accumulator.compute().items():
        assert value == pytest.approx(one_shot[key], rel=1e-12)


def test_in_superclass_share_by_hand() -> None:
    # classes 0,1 form super-class 0; 2,3 super-class 1. y = 0 and probabilities proportional to (1, 3, 1, 1):
    # the wrong-class mass is 5 of which 3 falls on class 1, inside the super-class: share 0.6.
    groups = torch.tensor([0, 0, 1, 1])
    model = torch.tensor([[0.0, math.log(3.0), 0.0, 0.0]], dtype=F64)
    bayes = torch.tensor([[2.0, 0.0, 0.0, 0.0]], dtype=F64)  # wrong classes alike: share 1/3
    result = compare_with_bayes(model, bayes, torch.tensor([0]), temperatures=(1.0,), superclass_of=groups)
    assert result["in_superclass_share"]["model"] == pytest.approx(0.6, rel=1e-12)
    assert result["in_superclass_share"]["bayes"] == pytest.approx(1 / 3, rel=1e-12)
    assert result["derived_std"]["1.0"]["bayes"] == 0.0 and result["derived_std"]["1.0"]["ratio"] is None


@pytest.mark.parametrize("model, bayes, targets, match", [
    (torch.zeros(3, 4), torch.zeros(3, 5), torch.zeros(3, dtype=torch.long), "num_classes=4"),
    (torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(2, dtype=torch.long), "targets must have shape"),
    (torch.zeros(3, 4), torch.full((3, 4), math.nan), torch.zeros(3, dtype=torch.long), "bayes_logits must be finite"),
    (torch.zeros(3, 4), torch.zeros(3, 4), torch.full((3,), 4), "targets must lie in"),
])
def test_bad_input_fails_with_a_clear_message(model, bayes, targets, match) -> None:
    with pytest.raises(ValueError, match=match):
        bayes_distance(model, bayes, targets)


def test_superclass_of_must_name_one_group_per_class() -> None:
    with pytest.raises(ValueError, match="superclass_of must have shape"):
        compare_with_bayes(torch.zeros(2, 4), torch.zeros(2, 4), torch.tensor([0, 1]), superclass_of=torch.tensor([0]))
