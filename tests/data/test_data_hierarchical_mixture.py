"""The hierarchical Gaussian-mixture task: its posterior against hand computation, its structure and its loader."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.data import GaussianMixture, load_dataset
from kdlab.data.hierarchical_mixture import HierarchicalMixture
from kdlab.data.seeding import generator_for
from kdlab.errors import ConfigError

F64 = torch.float64


def gauss(x: float, mu: float, sigma: float = 1.0) -> float:
    return math.exp(-((x - mu) ** 2) / (2 * sigma**2)) / math.sqrt(2 * math.pi * sigma**2)


def test_posterior_of_two_classes_of_two_components_by_hand() -> None:
    # class 0 = 1/2 N(-2, 1) + 1/2 N(1, 1); class 1 = 1/2 N(0, 1) + 1/2 N(3, 1); equal priors
    mixture = HierarchicalMixture(means=torch.tensor([[[-2.0], [1.0]], [[0.0], [3.0]]]))
    xs = [-3.0, 0.0, 1.2, 3.0, 6.0]
    posterior = mixture.bayes_posterior(torch.tensor([[x] for x in xs], dtype=F64))
    for i, x in enumerate(xs):
        c0 = 0.5 * gauss(x, -2.0) + 0.5 * gauss(x, 1.0)
        c1 = 0.5 * gauss(x, 0.0) + 0.5 * gauss(x, 3.0)
        assert posterior[i, 0].item() == pytest.approx(c0 / (c0 + c1), rel=1e-12)
        assert posterior[i, 1].item() == pytest.approx(c1 / (c0 + c1), rel=1e-12)
        density = 0.5 * c0 + 0.5 * c1
        assert mixture.log_density(torch.tensor([[x]], dtype=F64)).item() == pytest.approx(math.log(density), rel=1e-12)
    # the Bayes rule switches class three times along the line (0 at -3, 1 at 0, 0 at 1.2, 1 at 3): no linear rule,
    # one threshold in 1-D, can switch more than once
    assert posterior.argmax(1).tolist() == [0, 1, 0, 1, 1]


def test_bayes_logits_and_superclass_posterior() -> None:
    means = torch.tensor([[[0.0]], [[1.0]], [[4.0]]])  # one component each
    mixture = HierarchicalMixture(means=means, superclass_of=torch.tensor([0, 0, 1]), sigma=2.0)
    x = torch.tensor([[0.7]], dtype=F64)
    w = [gauss(0.7, m, 2.0) for m in (0.0, 1.0, 4.0)]
    assert mixture.superclass_posterior(x)[0].tolist() == pytest.approx([(w[0] + w[1]) / sum(w), w[2] / sum(w)],
                                                                        rel=1e-12)
    logits = mixture.bayes_logits(x)
    assert logits.max().item() == 0.0
    torch.testing.assert_close(torch.softmax(logits, 1), mixture.bayes_posterior(x), rtol=1e-12, atol=0)


def test_one_component_per_class_is_the_plain_gaussian_mixture() -> None:
    means = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=F64) * 2
    plain = GaussianMixture(means=means, sigma=0.8)
    nested = HierarchicalMixture(means=means.unsqueeze(1), sigma=0.8)
    x, _ = plain.sample(200, torch.Generator().manual_seed(1))
    torch.testing.assert_close(nested.bayes_posterior(x), plain.bayes_posterior(x), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(nested.log_density(x), plain.log_density(x), rtol=1e-12, atol=0)


def test_drawn_structure_follows_the_separations() -> None:
    # E||a z / sqrt(d) - a z' / sqrt(d)||^2 = 2 a^2: component means of one class lie 2 D^2 apart on average, class
    # centres of one super-class 2 B^2 (+ the components' noise), super-class centres 2 A^2
    m = HierarchicalMixture(num_superclasses=20, classes_per_superclass=5, components_per_class=4, dim=12,
                            superclass_separation=5.0, class_separation=1.0, component_spread=3.0, seed=0)
    assert m.means.shape == (100, 4, 12) and m.num_classes == 100
    assert m.superclass_of.tolist() == [g for g in range(20) for _ in range(5)]
    within_class = torch.pdist(m.means[0]).pow(2)
    for k in range(1, 100):
        within_class = torch.cat([within_class, torch.pdist(m.means[k]).pow(2)])
    assert within_class.mean().item() == pytest.approx(2 * 3.0**2, rel=0.1)
    centres = m.means.mean(1)  # class centre + mean of 4 component offsets (variance D^2 / 4 per direction)
    same = m.superclass_of[:, None] == m.superclass_of[None, :]
    off = ~torch.eye(100, dtype=torch.bool)
    sq = torch.cdist(centres, centres).pow(2)
    assert sq[same & off].mean().item() == pytest.approx(2 * (1.0**2 + 3.0**2 / 4), rel=0.15)
    assert sq[~same].mean().item() == pytest.approx(2 * (5.0**2 + 1.0**2 + 3.0**2 / 4), rel=0.15)


def test_changing_the_number_of_components_keeps_the_centres() -> None:
    k2 = HierarchicalMixture(4, 3, 2, 5, 4.0, 1.0, component_spread=0.0, seed=3)
    k5 = HierarchicalMixture(4, 3, 5, 5, 4.0, 1.0, component_spread=0.0, seed=3)
    torch.testing.assert_close(k2.means[:, 0], k5.means[:, 0], rtol=0, atol=0)
    assert not torch.equal(k2.means, HierarchicalMixture(4, 3, 2, 5, 4.0, 1.0, component_spread=0.0, seed=4).means)


def test_sampling_draws_classes_and_components_uniformly() -> None:
    means = torch.tensor([[[-10.0], [10.0]], [[0.0], [30.0]]])
    mixture = HierarchicalMixture(means=means, sigma=0.5)
    x, y = mixture.sample(40_000, torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (40_000, 1)
    counts = torch.bincount(y, minlength=2)
    assert torch.all((counts - 20_000).abs() < 400)  # 4 sd of a binomial count
    near_first = (x[y == 0, 0] < 0).double().mean().item()
    assert near_first == pytest.approx(0.5, abs=0.015)  # components equally likely (4 sd of 20,000 draws)
    assert x[(y == 1) & (x[:, 0] > 15), 0].double().std().item() == pytest.approx(0.5, rel=0.03)
    x2, y2 = mixture.sample(100, torch.Generator().manual_seed(7))
    x3, y3 = mixture.sample(100, torch.Generator().manual_seed(7))
    assert torch.equal(x2, x3) and torch.equal(y2, y3)


def test_defaults_keep_bayes_accuracy_well_below_one() -> None:
    # measured in docs/studies/capacity-map.md: 0.78 on the 10,000 test samples; a change of defaults shows here
    mixture = HierarchicalMixture()
    assert mixture.bayes_error_estimate(20_000) == pytest.approx(1 - 0.78, abs=0.02)


def test_registered_loader_gives_unnormalised_splits_with_the_mixture() -> None:
    splits = load_dataset("hierarchical_mixture", val_size=100, n_train=600, n_test=200, dim=6, num_superclasses=4,
                          classes_per_superclass=3, mixture_seed=2)
    mixture = splits.source_info["mixture"]
    assert isinstance(mixture, HierarchicalMixture) and mixture.dim == 6
    assert splits.num_classes == 12 and splits.in_shape == (6,)
    assert len(splits.train) == 500 and len(splits.val) == 100 and len(splits.test) == 200
    assert splits.mean == (0.0,) * 6 and splits.std == (1.0,) * 6
    assert splits.class_names[4] == "class 4 (super-class 1)"
    # not normalised: the test samples are the mixture's own draws, so its posterior applies to them exactly
    x_test, y_test = mixture.sample(200, generator_for(2, "hmix-test"))
    assert torch.equal(splits.test.x, x_test) and torch.equal(splits.test.y, y_test)


@pytest.mark.parametrize("kwargs, key", [
    ({"num_superclasses": 0}, "num_superclasses"), ({"classes_per_superclass": 1.5}, "classes_per_superclass"),
    ({"components_per_class": 0}, "components_per_class"), ({"dim": 0}, "dim"), ({"sigma": 0.0}, "sigma"),
    ({"class_separation": -1.0}, "class_separation"), ({"component_spread": float("inf")}, "component_spread"),
    ({"num_superclasses": 1, "classes_per_superclass": 1}, "classes"),
    ({"superclass_of": torch.tensor([0, 1])}, "superclass_of"),
    ({"means": torch.zeros(3, 2)}, "means"),
    ({"means": torch.zeros(3, 1, 2), "superclass_of": torch.tensor([0, 1])}, "superclass_of"),
])
def test_bad_parameters_name_the_key(kwargs, key) -> None:
    with pytest.raises(ConfigError, match=key):
        HierarchicalMixture(**kwargs)


def test_loader_rejects_a_bad_sample_count() -> None:
    with pytest.raises(ConfigError, match="n_train=0"):
        load_dataset("hierarchical_mixture", n_train=0)
