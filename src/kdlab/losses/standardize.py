"""Logit standardisation (z-score per sample), shared by every loss with a ``standardize`` option.

Sun, Ren, Li, Wang, Cao, "Logit Standardization in Knowledge Distillation", CVPR 2024: before the temperature,
each sample's logit vector is replaced by its z-score, so the student only has to match the *shape* of the
teacher's logits, not their mean or scale.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Added to the variance (inside the square root) so that a constant logit vector, e.g. from a zero-initialised
#: classifier head, standardises to zeros with finite gradients instead of 0/0.
STANDARDIZE_EPS = 1e-7


def standardize_logits(z: Tensor, eps: float = STANDARDIZE_EPS) -> Tensor:
    """Z-score each row of ``z`` over its last dimension.

    Z(z)_c = (z_c - mean(z)) / sqrt(var(z) + eps),   mean(z) = (1/K) sum_j z_j,   var(z) = (1/K) sum_j (z_j - mean(z))^2

    The variance is the population one (divide by K), as in the paper's definition of the standard deviation.
    The paper divides by the standard deviation itself; kdlab puts ``eps`` under the square root, because
    d sqrt(v)/dv is infinite at v = 0 and would turn the gradient of a constant logit vector into NaN.
    For any a > 0 and c, Z(a z + c) = Z(z) up to the eps term (eps / a^2 instead of eps).
    """
    mean = z.mean(dim=-1, keepdim=True)
    centred = z - mean
    var = centred.pow(2).mean(dim=-1, keepdim=True)
    return centred / torch.sqrt(var + eps)
