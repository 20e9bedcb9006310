"""Multi-view data: every class has two features ("views"); most samples show both, a few show only one.

The survey's section 9, after Allen-Zhu & Li, "Towards Understanding Ensemble, Knowledge Distillation and
Self-Distillation in Deep Learning", ICLR 2023. For the binary example with features v1, v2 (class 0) and v3, v4
(class 1), a sample of class 0 has feature coefficients

    v1 = v2 = 1,        v3 = v4 = 0.1    with probability 80%  ("both" views, multi-view)
    v1 = 1, v2 = 0,     v3 = v4 = 0.1    with probability 10%  ("first" view only)
    v2 = 1, v1 = 0,     v3 = v4 = 0.1    with probability 10%  ("second" view only)

and symmetrically for class 1. With k > 2 classes every other class's two features are at 0.1 (the survey states
the binary case only).

Embedding (as in the paper, sizes ours): a sample is P patches of dimension d. The 2k features are orthonormal
vectors of R^d, drawn once from the generator's seed. Each feature with a non-zero coefficient is written, times its
coefficient, into ``patches_per_feature`` patches chosen at random (disjoint across features); every patch gets
i.i.d. Gaussian noise N(0, noise_std^2) per coordinate. Each sample's noise is nearly orthogonal to every other's
(P d dimensions), which is what lets a network memorise a single-view sample whose feature it has not learned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from .seeding import generator_for

VIEWS = ("both", "first", "second")
VIEW_PROBABILITIES = (0.8, 0.1, 0.1)


@dataclass(eq=False)
class MultiViewSample:
    """Samples of ``MultiViewData``: ``x`` [n, P, d] float32, ``y`` [n] int64, ``view`` [n] int64 (index into
    VIEWS: 0 both, 1 first only, 2 second only) and ``coefficients`` [n, k, 2] float32, the coefficient of feature
    (class c, view l) in each sample."""

    x: torch.Tensor
    y: torch.Tensor
    view: torch.Tensor
    coefficients: torch.Tensor


class MultiViewData:
    """The multi-view generator of the survey's section 9 (Allen-Zhu & Li, ICLR 2023), in patches with noise."""

    def __init__(self, num_classes: int = 2, num_patches: int = 8, patch_dim: int = 64, patches_per_feature: int = 1,
                 noise_std: float = 0.1, other_strength: float = 0.1,
                 view_probabilities: tuple[float, float, float] = VIEW_PROBABILITIES, seed: int = 0) -> None:
        for name, value, minimum in (("num_classes", num_classes, 2), ("num_patches", num_patches, 1),
                                     ("patch_dim", patch_dim, 1), ("patches_per_feature", patches_per_feature, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"{name}={value!r} is not allowed; allowed: an int >= {minimum}")
        if patch_dim < 2 * num_classes:
            raise ConfigError(f"patch_dim={patch_dim} is not allowed: {2 * num_classes} orthonormal features need "
                              f"patch_dim >= 2 * num_classes = {2 * num_classes}")
        # a sample shows at most 2k features (own two + the other classes' two each), each in its own patches
        if 2 * num_classes * patches_per_feature > num_patches:
            raise ConfigError(f"num_patches={num_patches} is not allowed: {2 * num_classes} features x "
                              f"patches_per_feature={patches_per_feature} need num_patches >= "
                              f"{2 * num_classes * patches_per_feature}")
        if not (isinstance(noise_std, (int, float)) and math.isfinite(noise_std) and noise_std >= 0):
            raise ConfigError(f"noise_std={noise_std!r} is not allowed; allowed: a float >= 0")
        if not (isinstance(other_strength, (int, float)) and 0 <= other_strength < 1):
            raise ConfigError(f"other_strength={other_strength!r} is not allowed; allowed: a float in [0, 1)")
        probs = tuple(float(p) for p in view_probabilities)
        if len(probs) != 3 or any(p < 0 for p in probs) or abs(sum(probs) - 1) > 1e-9:
            raise ConfigError(f"view_probabilities={view_probabilities!r} is not allowed; allowed: three "
                              "probabilities (both, first only, second only) >= 0 summing to 1")
        self.num_classes, self.num_patches, self.patch_dim = num_classes, num_patches, patch_dim
        self.patches_per_feature, self.noise_std = patches_per_feature, float(noise_std)
        self.other_strength, self.view_probabilities, self.seed = float(other_strength), probs, seed
        # orthonormal features: Q of a QR decomposition of a Gaussian matrix, rows = features
        gauss = torch.randn(patch_dim, 2 * num_classes, generator=generator_for(seed, "multiview-features"))
        q, _ = torch.linalg.qr(gauss)
        self.features = q.T.reshape(num_classes, 2, patch_dim).contiguous()  # [k, 2, d], unit norm, orthogonal

    def coefficients_for(self, y: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """The feature coefficients [n, k, 2] of samples of class ``y`` with view type ``view`` (0, 1, 2)."""
        n, k = y.shape[0], self.num_classes
        coef = torch.full((n, k, 2), self.other_strength)
        rows = torch.arange(n)
        coef[rows, y, 0] = (view != 2).float()  # the first view is present unless "second only"
        coef[rows, y, 1] = (view != 1).float()  # the second view is present unless "first only"
        return coef

    def embed(self, coefficients: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Patches [n, P, d]: noise everywhere, plus coefficient x feature in ``patches_per_feature`` random
        patches per non-zero feature (disjoint across features)."""
        n, k = coefficients.shape[:2]
        p, d, r = self.num_patches, self.patch_dim, self.patches_per_feature
        x = self.noise_std * torch.randn(n, p, d, generator=generator)
        # one random permutation of the patches per sample; feature f takes slots f*r .. f*r + r - 1
        slots = torch.argsort(torch.rand(n, p, generator=generator), dim=1)[:, : 2 * k * r].view(n, 2 * k, r)
        content = coefficients.reshape(n, 2 * k, 1) * self.features.reshape(1, 2 * k, d)  # [n, 2k, d]
        index = slots.reshape(n, 2 * k * r, 1).expand(-1, -1, d)
        x.scatter_add_(1, index, content.repeat_interleave(r, dim=1))
        return x

    def sample(self, n: int, generator: torch.Generator | None = None) -> MultiViewSample:
        """n samples: y uniform over the classes, view type with ``view_probabilities`` (80/10/10 by default)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"n={n!r} is not allowed; allowed: an int >= 1")
        if generator is None:
            generator = generator_for(self.seed, "multiview-sample")
        y = torch.randint(0, self.num_classes, (n,), generator=generator)
        view = torch.multinomial(torch.tensor(self.view_probabilities), n, replacement=True, generator=generator)
        coef = self.coefficients_for(y, view)
        return MultiViewSample(self.embed(coef, generator).float(), y, view, coef)

    def probe(self, n_per_class: int, view: str, generator: torch.Generator | None = None) -> MultiViewSample:
        """Probe inputs: ``n_per_class`` samples of every class, all of one view type ("both", "first", "second").

        "first" inputs carry only the first feature of their class (plus the other classes' features at 0.1):
        a model that classifies them has learned that feature.
        """
        if view not in VIEWS:
            raise ConfigError(f"view={view!r} is not allowed; allowed: {', '.join(VIEWS)}")
        if isinstance(n_per_class, bool) or not isinstance(n_per_class, int) or n_per_class < 1:
            raise ConfigError(f"n_per_class={n_per_class!r} is not allowed; allowed: an int >= 1")
        if generator is None:
            generator = generator_for(self.seed, "multiview-probe", view)
        y = torch.arange(self.num_classes).repeat_interleave(n_per_class)
        v = torch.full_like(y, VIEWS.index(view))
        coef = self.coefficients_for(y, v)
        return MultiViewSample(self.embed(coef, generator).float(), y, v, coef)

    def spec(self) -> dict:
        """A JSON-able description (rebuilds the same generator)."""
        return {"num_classes": self.num_classes, "num_patches": self.num_patches, "patch_dim": self.patch_dim,
                "patches_per_feature": self.patches_per_feature, "noise_std": self.noise_std,
                "other_strength": self.other_strength, "view_probabilities": list(self.view_probabilities),
                "seed": self.seed}
