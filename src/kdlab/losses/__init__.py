"""Response-based distillation losses: ``build(name, **hyperparams)`` returns a ``ResponseLoss`` module.

>>> from kdlab.losses import build, loss_names
>>> loss = build("kd", temperature=4.0, alpha=0.9)
>>> objective = loss(student_logits, teacher_logits, targets)    # doctest: +SKIP
>>> objective, parts = loss.compute(student_logits, teacher_logits, targets)  # doctest: +SKIP
>>> sorted(parts)                                                  # detached tensors  # doctest: +SKIP
['ce', 'kd']
"""

from __future__ import annotations

from typing import Any

# importing a loss module registers its losses (response losses into LOSSES, feature and relation losses into
# FEATURE_LOSSES)
from . import ats, ce, ctkd, dist, dkd, feature, isats, kd, logit_std, nasty, relation, tllm  # noqa: F401
from .base import LOSSES, LossOutput, ResponseLoss, search_space
from .feature_base import FEATURE_LOSSES, FeatureLoss, build_feature_loss
from .ctkd import curriculum_strength
from .dist import pearson_rows
from .dkd import decoupled_kl
from .isats import select_tau_other
from .standardize import standardize_logits

__all__ = [
    "FEATURE_LOSSES",
    "FeatureLoss",
    "build_feature_loss",
    "LOSSES",
    "LossOutput",
    "ResponseLoss",
    "build",
    "curriculum_strength",
    "decoupled_kl",
    "loss_names",
    "pearson_rows",
    "search_space",
    "select_tau_other",
    "standardize_logits",
]


def build(name: str, **hyperparams: Any) -> ResponseLoss:
    """The loss registered as ``name`` with ``hyperparams`` (the others at their defaults).

    Raises ConfigError for an unknown name (with a did-you-mean), an option the loss does not have, or a value
    it does not allow; each message names the key, the value and what is allowed.
    """
    factory = LOSSES.get(name)
    LOSSES.check_kwargs(name, hyperparams)
    return factory(**hyperparams)


def loss_names() -> list[str]:
    """The registered loss names, sorted."""
    return LOSSES.names()
