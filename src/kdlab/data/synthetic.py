"""A Gaussian-mixture classification problem whose Bayes posterior p*(y|x) is known in closed form.

Used to measure how far a teacher's probabilities are from the true ones (the "Bayes teacher" view of
distillation: Menon et al. 2021, "A Statistical Perspective on Distillation", ICML).
"""

from __future__ import annotations

import math
import os

import torch

from ..errors import ConfigError
from .base import DATASETS, RawDataset
from .seeding import generator_for


class GaussianMixture:
    """C classes with equal priors 1/C; class k generates x ~ N(mu_k, sigma^2 I) in ``dim`` dimensions.

    The means are drawn once from ``seed``: mu_k = separation * z_k / sqrt(dim) with z_k ~ N(0, I), so
    E||mu_j - mu_k||^2 = 2 separation^2 whatever the dimension. Pass ``means`` ([C, dim]) to fix them.
    """

    def __init__(self, num_classes: int = 4, dim: int = 16, separation: float = 3.0, sigma: float = 1.0,
                 seed: int = 0, *, means: torch.Tensor | None = None) -> None:
        if means is not None:
            means = torch.as_tensor(means, dtype=torch.float64)
            if means.ndim != 2:
                raise ConfigError(f"means has shape {tuple(means.shape)}; allowed: [num_classes, dim]")
            num_classes, dim = means.shape
        if num_classes < 2:
            raise ConfigError(f"num_classes={num_classes!r} is invalid; allowed: an int >= 2")
        if dim < 1:
            raise ConfigError(f"dim={dim!r} is invalid; allowed: an int >= 1")
        if not sigma > 0:
            raise ConfigError(f"sigma={sigma!r} is invalid; allowed: a float > 0")
        if means is None and not separation >= 0:
            raise ConfigError(f"separation={separation!r} is invalid; allowed: a float >= 0")
        self.num_classes, self.dim = int(num_classes), int(dim)
        self.separation, self.sigma, self.seed = float(separation), float(sigma), int(seed)
        if means is None:
            z = torch.randn(self.num_classes, self.dim, generator=generator_for(seed, "gmm-means"), dtype=torch.float64)
            means = self.separation * z / math.sqrt(self.dim)
        self.means: torch.Tensor = means  # float64 [C, dim]
        self.log_prior = torch.full((self.num_classes,), -math.log(self.num_classes), dtype=torch.float64)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw n samples: y ~ Uniform{0..C-1}, x = mu_y + sigma * eps with eps ~ N(0, I).

        Returns x float32 [n, dim] and y int64 [n]. Without ``generator`` a fixed one derived from the
        mixture's seed is used, so the call is reproducible.
        """
        if generator is None:
            generator = generator_for(self.seed, "gmm-sample")
        y = torch.randint(0, self.num_classes, (n,), generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = self.means[y] + self.sigma * eps
        return x.to(torch.float32), y

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x, y=k) for each k, [n, C]: log prior_k - ||x - mu_k||^2 / (2 sigma^2) - (d/2) log(2 pi sigma^2)."""
        x = torch.as_tensor(x, dtype=torch.float64)
        sq = torch.cdist(x, self.means, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
        norm = 0.5 * self.dim * math.log(2 * math.pi * self.sigma**2)
        return self.log_prior - sq / (2 * self.sigma**2) - norm

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """log p*(x) = logsumexp_k log p(x, y=k), [n] float64."""
        return torch.logsumexp(self.log_joint(x), dim=1)

    def bayes_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """The exact class posterior p*(y=k|x) = softmax_k(-||x - mu_k||^2 / (2 sigma^2) + log prior_k), [n, C].

        Computed in float64 and returned in float64 (the common normaliser cancels in the softmax).
        """
        return torch.softmax(self.log_joint(x), dim=1)

    def bayes_error_estimate(self, n: int = 100_000, generator: torch.Generator | None = None) -> float:
        """Monte Carlo estimate of the Bayes error E_x[1 - max_k p*(k|x)] from n fresh samples.

        Averaging 1 - max posterior (instead of counting the Bayes classifier's mistakes) has the same
        expectation and a smaller variance.
        """
        if generator is None:
            generator = generator_for(self.seed, "gmm-bayes-error")
        x, _ = self.sample(n, generator)
        return float(1.0 - self.bayes_posterior(x).max(dim=1).values.mean())

    def spec(self) -> dict:
        """A JSON-able description (enough to rebuild the mixture when ``means`` were drawn from the seed)."""
        return {"num_classes": self.num_classes, "dim": self.dim, "separation": self.separation,
                "sigma": self.sigma, "seed": self.seed}


@DATASETS.register("gaussian_mixture")
def load_gaussian_mixture(
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    num_classes: int = 4,
    dim: int = 16,
    n_train: int = 5000,
    n_test: int = 2000,
    separation: float = 3.0,
    sigma: float = 1.0,
    mixture_seed: int = 0,
) -> RawDataset:
    """Samples of ``GaussianMixture`` as float vectors [N, dim] (not normalised, so p*(x) stays exact).

    ``mixture_seed`` fixes the means and the drawn samples; ``load_dataset``'s ``seed`` only moves the
    train/validation split (the name ``seed`` is taken by ``load_dataset`` itself).
    """
    for key, value in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"gaussian_mixture option {key}={value!r} is invalid; allowed: an int >= 1")
    mixture = GaussianMixture(num_classes, dim, separation, sigma, mixture_seed)
    x_train, y_train = mixture.sample(n_train, generator_for(mixture_seed, "gmm-train"))
    x_test, y_test = mixture.sample(n_test, generator_for(mixture_seed, "gmm-test"))
    return RawDataset(
        x_train, y_train, x_test, y_test,
        class_names=[f"component {k}" for k in range(num_classes)], in_shape=(dim,),
        max_value=None, normalize=False, info={"mixture": mixture},
    )
