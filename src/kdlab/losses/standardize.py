"""Logit standardisation (z-score per sample), shared by every loss with a ``standardize`` option.

Sun, Ren, Li, Wang, Cao, "Logit Standardization in Knowledge Distillation", CVPR 2024: before the temperature,
each sample's logit vector is replaced by its z-score, so the student only has to match the *shape* of the
teacher's logits, not their mean or scale.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

#: Added to the variance (inside the square root) so that a constant logit vector, e.g. from a zero-initialised
#: classifier head, standardises to zeros with finite gradients instead of 0/0.
STANDARDIZE_EPS = 1e-7

#: The two standard deviations in use: ``sample`` divides the squared deviations by K - 1 (``torch.std``'s
#: default, what the authors' released code and torchdistill's ``LogitStdKDLoss`` compute), ``population`` by K
#: (the paper's definition).
STD_FORMS = ("sample", "population")
StdForm = Literal["sample", "population"]


def standardize_logits(z: Tensor, eps: float = STANDARDIZE_EPS, std: StdForm = "sample") -> Tensor:
    """Z-score each row of ``z`` over its last dimension (K entries).

        Z(z)_c = (z_c - mean(z)) / sqrt(var(z) + eps),   mean(z) = (1/K) sum_j z_j,
        var(z) = (1/(K - 1)) sum_j (z_j - mean(z))^2     (std="sample", the default; 1/K for K = 1)
        var(z) = (1/K) sum_j (z_j - mean(z))^2           (std="population")

    The default follows the authors' released code (``torch.std``, divide by K - 1), so published numbers
    reproduce; the paper's own formula is the population form, whose z-scores are larger by sqrt(K / (K - 1))
    (0.5% for K = 100, 15% for K = 4), the same as a base temperature smaller by that factor. The released code
    adds its 1e-7 to the standard deviation; kdlab puts ``eps`` under the square root, because d sqrt(v)/dv is
    infinite at v = 0 and would turn the gradient of a constant logit vector into NaN (the two differ by less
    than 1e-7 relative once std > 1e-3). For any a > 0 and c, Z(a z + c) = Z(z) up to the eps term.
    """
    if std not in STD_FORMS:
        raise ValueError(f"standardize_logits: std={std!r} is not allowed; must be one of {', '.join(STD_FORMS)}")
    k = z.shape[-1]
    mean = z.mean(dim=-1, keepdim=True)
    centred = z - mean
    divisor = max(k - 1, 1) if std == "sample" else k
    var = centred.pow(2).sum(dim=-1, keepdim=True) / divisor
    return centred / (var + eps).sqrt()
