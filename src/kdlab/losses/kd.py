"""``kd``: Hinton's knowledge distillation with a temperature."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..space import Space
from .base import LOSSES, LossOutput, ResponseLoss, named_parts
from .checks import check_bool, check_positive, check_unit_interval
from .functional import blend, soft_kl


@LOSSES.register("kd")
class KDLoss(ResponseLoss):
    """Knowledge distillation: match the teacher's temperature-softened distribution.

    Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", NIPS 2014 Deep Learning Workshop
    (arXiv:1503.02531, 2015).

        p_t = softmax(z_t / T),   p_s = softmax(z_s / T)
        KL  = (1/N) sum_i sum_c p_t[i,c] * (log p_t[i,c] - log p_s[i,c])        (KL summed over classes, batch mean)
        L   = alpha * T^2 * KL + (1 - alpha) * CE(z_s, y)

    The T^2 factor keeps the gradient of the soft term at the same scale when T changes (Hinton et al., Sec. 2).
    The KL differs from the paper's soft-target cross-entropy only by the teacher's entropy, a constant for the
    student, so gradients are identical and a perfect student scores 0.

    With ``standardize=True`` both logit vectors are z-scored per sample before the temperature (Sun, Ren, Li,
    Wang, Cao, "Logit Standardization in Knowledge Distillation", CVPR 2024; see ``standardize_logits``); the CE
    term always uses the raw student logits, as in that paper.

    Hyperparameters and where the defaults come from: the paper fixes neither. ``temperature=4.0`` and
    ``alpha=0.9`` are the KD settings of the CIFAR-100 benchmark of Tian, Krishnan, Isola, "Contrastive
    Representation Distillation", ICLR 2020, the de-facto reference for small-image KD. ``standardize=False``.

    Search space (``search_space``): temperature {1, 2, 4, 8} x alpha {0.5, 0.7, 0.9}, 12 points holding the
    defaults (on MNIST Hinton et al. found 2.5-4 best for a small student and anything above 8 alike for a large
    one; 1 is the no-softening end). The same space serves ``standardize=True``, whose paper's base temperature
    2 is on the grid.

    Named parts: {"ce": CE, "kd": T^2 * KL}; the objective is (1 - alpha) * ce + alpha * kd.
    """

    name = "kd"
    search_space = Space({"temperature": (1.0, 2.0, 4.0, 8.0), "alpha": (0.5, 0.7, 0.9)})

    @classmethod
    def revision_for(cls, options: dict[str, Any]) -> int:
        """2 with ``standardize: true`` (since the z-score divides by the sample std, K - 1, as the released code of
        logit standardisation does; revision 1 divided by K), else 1."""
        return 2 if options.get("standardize") else 1

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9, standardize: bool = False) -> None:
        super().__init__(
            temperature=check_positive("kd", "temperature", temperature),
            alpha=check_unit_interval("kd", "alpha", alpha),
            standardize=check_bool("kd", "standardize", standardize),
        )
        self.temperature: float = self.hyperparams["temperature"]
        self.alpha: float = self.hyperparams["alpha"]

    def compute(self, student_logits: Tensor, teacher_logits: Tensor | None, targets: Tensor) -> LossOutput:
        student, teacher, y = self._inputs(student_logits, teacher_logits, targets)
        assert teacher is not None
        z_s, z_t = self._standardized(student, teacher)
        t = self.temperature
        kd = t * t * soft_kl(torch.log_softmax(z_t / t, dim=-1), torch.log_softmax(z_s / t, dim=-1))
        ce = F.cross_entropy(student, y)
        return LossOutput(blend(ce, kd, self.alpha), named_parts(ce=ce, kd=kd))
