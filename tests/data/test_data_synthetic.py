import math

import pytest
import torch

from kdlab.data import GaussianMixture
from kdlab.errors import ConfigError


def test_posterior_matches_hand_computation_two_classes_one_dim():
    mixture = GaussianMixture(means=torch.tensor([[-1.0], [2.0]]), sigma=1.5)
    x = torch.tensor([[0.3], [-4.0], [0.5]], dtype=torch.float64)
    posterior = mixture.bayes_posterior(x)
    for i, xi in enumerate([0.3, -4.0, 0.5]):
        a = math.exp(-((xi + 1.0) ** 2) / (2 * 1.5**2))
        b = math.exp(-((xi - 2.0) ** 2) / (2 * 1.5**2))
        assert posterior[i, 0].item() == pytest.approx(a / (a + b), rel=1e-12)
        assert posterior[i, 1].item() == pytest.approx(b / (a + b), rel=1e-12)
    assert posterior[2, 0].item() == pytest.approx(0.5)  # the midpoint between the means


def test_log_density_matches_hand_computation():
    mixture = GaussianMixture(means=torch.tensor([[0.0], [3.0]]), sigma=0.5)
    xi = 1.2
    pdf = sum(0.5 * math.exp(-((xi - m) ** 2) / (2 * 0.25)) / math.sqrt(2 * math.pi * 0.25) for m in (0.0, 3.0))
    assert mixture.log_density(torch.tensor([[xi]], dtype=torch.float64)).item() == pytest.approx(math.log(pdf), rel=1e-12)


def test_posterior_sums_to_one_in_many_dimensions():
    mixture = GaussianMixture(num_classes=7, dim=12, separation=4.0, sigma=0.7, seed=3)
    x, _ = mixture.sample(500, torch.Generator().manual_seed(0))
    posterior = mixture.bayes_posterior(x)
    assert posterior.shape == (500, 7)
    torch.testing.assert_close(posterior.sum(1), torch.ones(500, dtype=torch.float64))
    assert float(posterior.min()) >= 0


def test_sampling_follows_the_mixture():
    mixture = GaussianMixture(num_classes=3, dim=4, separation=5.0, sigma=0.5, seed=1)
    x, y = mixture.sample(30_000, torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (30_000, 4)
    counts = torch.bincount(y, minlength=3)
    assert torch.all((counts - 10_000).abs() < 400)  # equal priors (4 sd of a binomial count)
    for k in range(3):
        xk = x[y == k].double()
        assert torch.allclose(xk.mean(0), mixture.means[k], atol=0.02)
        assert torch.allclose(xk.std(0), torch.full((4,), 0.5, dtype=torch.float64), atol=0.02)


def test_means_come_from_the_seed_and_the_separation():
    a, b = GaussianMixture(4, 8, 3.0, 1.0, seed=0), GaussianMixture(4, 8, 3.0, 1.0, seed=0)
    assert torch.equal(a.means, b.means)
    assert not torch.equal(a.means, GaussianMixture(4, 8, 3.0, 1.0, seed=1).means)
    torch.testing.assert_close(GaussianMixture(4, 8, 6.0, 1.0, seed=0).means, 2 * a.means)


def test_sampling_is_reproducible():
    mixture = GaussianMixture(3, 2, seed=0)
    x1, y1 = mixture.sample(50, torch.Generator().manual_seed(5))
    x2, y2 = mixture.sample(50, torch.Generator().manual_seed(5))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert torch.equal(mixture.sample(50)[0], mixture.sample(50)[0])


def test_bayes_error_of_two_symmetric_classes():
    # Means -a and +a in 1-D: the Bayes rule thresholds at 0 and errs with probability Phi(-a / sigma).
    a, sigma = 1.0, 1.0
    mixture = GaussianMixture(means=torch.tensor([[-a], [a]]), sigma=sigma)
    exact = 0.5 * math.erfc(a / sigma / math.sqrt(2))
    assert mixture.bayes_error_estimate(200_000) == pytest.approx(exact, abs=0.003)


@pytest.mark.parametrize("kwargs, key", [({"num_classes": 1}, "num_classes"), ({"dim": 0}, "dim"),
                                         ({"sigma": 0.0}, "sigma"), ({"separation": -1.0}, "separation")])
def test_bad_parameters(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        GaussianMixture(**kwargs)
