"""A many-class Gaussian-mixture task with super-classes, a non-linear Bayes boundary and a closed-form posterior.

CIFAR-100's shape (by default 100 classes in 20 super-classes of 5) on vectors whose generating process is known, so a
teacher's probabilities can be compared with the true ones p*(y|x) ("A Statistical Perspective on Distillation",
Menon et al., ICML 2021) and the true dark knowledge (which wrong classes resemble the right one) is known exactly.

Three levels of means, each drawn once from the mixture's seed (z ~ N(0, I_d), fresh for every node):

    super-class centre   s_g  = superclass_separation * z_g  / sqrt(d)
    class centre         c_k  = s_g(k) + class_separation * z_k / sqrt(d)
    component mean       m_kj = c_k + component_spread * z_kj / sqrt(d),     j = 1..K

and x | (y = k, component j) ~ N(m_kj, sigma^2 I_d), components equally likely within a class, classes equally likely.
Dividing by sqrt(d) keeps E||a z - a z'||^2 = 2 a^2 in every dimension, so the separations mean the same thing at any d.
Classes of one super-class sit closer to each other than to other super-classes (class_separation <
superclass_separation), which is the structure a good teacher's wrong-class probabilities reveal. With K >= 2
components per class spread as far as the classes are, each class is a union of blobs interleaved with its neighbours'
blobs: the Bayes boundary is piecewise quadratic, not linear, so a bigger model has more to learn.
"""

from __future__ import annotations

import math
import os

import torch

from ..errors import ConfigError
from .base import DATASETS, RawDataset
from .seeding import generator_for

__all__ = ["HierarchicalMixture", "load_hierarchical_mixture"]


class HierarchicalMixture:
    """C = num_superclasses * classes_per_superclass classes, each a mixture of K isotropic Gaussians (see module).

    ``means`` ([C, K, dim]) and ``superclass_of`` ([C] ints) fix the structure by hand instead of drawing it; classes
    are then numbered as given and super-class g holds the classes with ``superclass_of == g``.
    """

    def __init__(self, num_superclasses: int = 20, classes_per_superclass: int = 5, components_per_class: int = 4,
                 dim: int = 12, superclass_separation: float = 5.0, class_separation: float = 1.0,
                 component_spread: float = 3.0, sigma: float = 1.0, seed: int = 0, *,
                 means: torch.Tensor | None = None, superclass_of: torch.Tensor | None = None) -> None:
        if not (isinstance(sigma, (int, float)) and sigma > 0 and math.isfinite(sigma)):
            raise ConfigError(f"sigma={sigma!r} is invalid; allowed: a finite float > 0")
        if means is not None:
            self._init_given(means, superclass_of)
        else:
            if superclass_of is not None:
                raise ConfigError("superclass_of is only allowed together with means (a hand-made structure)")
            self._init_drawn(num_superclasses, classes_per_superclass, components_per_class, dim,
                             superclass_separation, class_separation, component_spread, seed)
        self.sigma, self.seed = float(sigma), int(seed)
        self.log_prior = torch.full((self.num_classes,), -math.log(self.num_classes), dtype=torch.float64)

    def _init_given(self, means: torch.Tensor, superclass_of: torch.Tensor | None) -> None:
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim != 3 or means.shape[0] < 2 or means.shape[1] < 1 or means.shape[2] < 1:
            raise ConfigError(f"means has shape {tuple(means.shape)}; allowed: [num_classes >= 2, components >= 1, "
                              "dim >= 1]")
        num_classes = means.shape[0]
        groups = (torch.zeros(num_classes, dtype=torch.int64) if superclass_of is None
                  else torch.as_tensor(superclass_of, dtype=torch.int64))
        if groups.shape != (num_classes,) or int(groups.min()) < 0:
            raise ConfigError(f"superclass_of has shape {tuple(groups.shape)} and values {groups.tolist()}; allowed: "
                              f"[{num_classes}] non-negative super-class indices, one per class")
        self.means = means
        self.superclass_of = groups
        self.num_classes, self.components_per_class, self.dim = (int(s) for s in means.shape)
        self.num_superclasses = int(groups.max()) + 1
        self.classes_per_superclass = None  # hand-made groups may differ in size
        self.superclass_separation = self.class_separation = self.component_spread = None

    def _init_drawn(self, num_superclasses: int, classes_per_superclass: int, components_per_class: int, dim: int,
                    superclass_separation: float, class_separation: float, component_spread: float,
                    seed: int) -> None:
        for key, value, low in (("num_superclasses", num_superclasses, 1),
                                ("classes_per_superclass", classes_per_superclass, 1),
                                ("components_per_class", components_per_class, 1), ("dim", dim, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{key}={value!r} is invalid; allowed: an int >= {low}")
        if num_superclasses * classes_per_superclass < 2:
            raise ConfigError(f"num_superclasses * classes_per_superclass = "
                              f"{num_superclasses * classes_per_superclass}; allowed: >= 2 classes")
        for key, value in (("superclass_separation", superclass_separation), ("class_separation", class_separation),
                           ("component_spread", component_spread)):
            if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{key}={value!r} is invalid; allowed: a finite float >= 0")
        g, c, k, d = num_superclasses, classes_per_superclass, components_per_class, dim
        scale = 1.0 / math.sqrt(d)
        # One generator per level, so changing K leaves the super-class and class centres where they were.
        z_super = torch.randn(g, d, generator=generator_for(seed, "hmix-super"), dtype=torch.float64)
        z_class = torch.randn(g * c, d, generator=generator_for(seed, "hmix-class"), dtype=torch.float64)
        z_comp = torch.randn(g * c, k, d, generator=generator_for(seed, "hmix-component"), dtype=torch.float64)
        self.superclass_of = torch.arange(g).repeat_interleave(c)
        class_centres = superclass_separation * scale * z_super[self.superclass_of] + class_separation * scale * z_class
        self.means = class_centres.unsqueeze(1) + component_spread * scale * z_comp  # [C, K, d]
        self.num_superclasses, self.classes_per_superclass = g, c
        self.num_classes, self.components_per_class, self.dim = g * c, k, d
        self.superclass_separation = float(superclass_separation)
        self.class_separation = float(class_separation)
        self.component_spread = float(component_spread)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw n samples: y ~ Uniform{0..C-1}, j ~ Uniform{0..K-1}, x = m_yj + sigma * eps with eps ~ N(0, I).

        Returns x float32 [n, dim] and y int64 [n]. Without ``generator`` a fixed one derived from the seed is used.
        """
        if generator is None:
            generator = generator_for(self.seed, "hmix-sample")
        y = torch.randint(0, self.num_classes, (n,), generator=generator)
        j = torch.randint(0, self.components_per_class, (n,), generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = self.means[y, j] + self.sigma * eps
        return x.to(torch.float32), y

    def log_joint(self, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """log p(x, y=k) for each class k, [n, C] float64.

        log p(x, y=k) = log prior_k + logsumexp_j [ -||x - m_kj||^2 / (2 sigma^2) ] - log K - (d/2) log(2 pi sigma^2).
        Evaluated ``chunk`` rows at a time so n x C x K distances never fill memory.
        """
        x = torch.as_tensor(x, dtype=torch.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape [n, {self.dim}], got {tuple(x.shape)}")
        flat_means = self.means.reshape(-1, self.dim)
        norm = 0.5 * self.dim * math.log(2 * math.pi * self.sigma**2) + math.log(self.components_per_class)
        parts = []
        for start in range(0, x.shape[0], chunk):
            # the exact (non-matmul) distance: the matmul shortcut cancels catastrophically far from the means
            sq = torch.cdist(x[start:start + chunk], flat_means, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
            per_component = (-sq / (2 * self.sigma**2)).view(-1, self.num_classes, self.components_per_class)
            parts.append(torch.logsumexp(per_component, dim=2))
        return torch.cat(parts) + self.log_prior - norm if parts else x.new_zeros(0, self.num_classes)

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """log p*(x) = logsumexp_k log p(x, y=k), [n] float64."""
        return torch.logsumexp(self.log_joint(x), dim=1)

    def bayes_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """The exact class posterior p*(y=k|x) = softmax_k log p(x, y=k), [n, C] float64."""
        return torch.softmax(self.log_joint(x), dim=1)

    def bayes_logits(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x, y=k) shifted so each row's maximum is 0, [n, C] float64: logits whose softmax is p*(y|x)."""
        joint = self.log_joint(x)
        return joint - joint.max(dim=1, keepdim=True).values

    def superclass_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """p*(g|x) = sum over the classes k of super-class g of p*(k|x), [n, G] float64."""
        posterior = self.bayes_posterior(x)
        out = posterior.new_zeros(posterior.shape[0], self.num_superclasses)
        return out.index_add_(1, self.superclass_of, posterior)

    def bayes_error_estimate(self, n: int = 100_000, generator: torch.Generator | None = None) -> float:
        """Monte Carlo estimate of the Bayes error E_x[1 - max_k p*(k|x)] from n fresh samples.

        Averaging 1 - max posterior (instead of counting the Bayes classifier's mistakes) has the same expectation and
        a smaller variance.
        """
        if generator is None:
            generator = generator_for(self.seed, "hmix-bayes-error")
        x, _ = self.sample(n, generator)
        return float(1.0 - self.bayes_posterior(x).max(dim=1).values.mean())

    def spec(self) -> dict:
        """A JSON-able description (enough to rebuild a drawn mixture)."""
        return {"num_superclasses": self.num_superclasses, "classes_per_superclass": self.classes_per_superclass,
                "components_per_class": self.components_per_class, "dim": self.dim,
                "superclass_separation": self.superclass_separation, "class_separation": self.class_separation,
                "component_spread": self.component_spread, "sigma": self.sigma, "seed": self.seed}


@DATASETS.register("hierarchical_mixture")
def load_hierarchical_mixture(
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    num_superclasses: int = 20,
    classes_per_superclass: int = 5,
    components_per_class: int = 4,
    dim: int = 12,
    superclass_separation: float = 5.0,
    class_separation: float = 1.0,
    component_spread: float = 3.0,
    sigma: float = 1.0,
    n_train: int = 50_000,
    n_test: int = 10_000,
    mixture_seed: int = 0,
) -> RawDataset:
    """Samples of ``HierarchicalMixture`` as float vectors [N, dim] (not normalised, so p*(y|x) stays exact).

    ``mixture_seed`` fixes the means and the drawn samples; ``load_dataset``'s ``seed`` only moves the
    train/validation split. The defaults were chosen by measurement (docs/studies/capacity-map.md, "The synthetic
    task"): Bayes accuracy well below 100%, a linear model clearly below it, MLPs approaching it with width.
    """
    for key, value in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"hierarchical_mixture option {key}={value!r} is invalid; allowed: an int >= 1")
    mixture = HierarchicalMixture(num_superclasses, classes_per_superclass, components_per_class, dim,
                                  superclass_separation, class_separation, component_spread, sigma, mixture_seed)
    x_train, y_train = mixture.sample(n_train, generator_for(mixture_seed, "hmix-train"))
    x_test, y_test = mixture.sample(n_test, generator_for(mixture_seed, "hmix-test"))
    names = [f"class {k} (super-class {int(g)})" for k, g in enumerate(mixture.superclass_of.tolist())]
    return RawDataset(
        x_train, y_train, x_test, y_test, class_names=names, in_shape=(dim,),
        max_value=None, normalize=False, info={"mixture": mixture},
    )
