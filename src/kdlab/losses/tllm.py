"""``tllm``: Teach Less, Learn More -- KD with the teacher dropped for the samples of undistillable classes."""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .base import LOSSES, LossOutput, ResponseLoss, named_parts
from .checks import check_positive, check_unit_interval
from .functional import blend, soft_kl_per_sample
from .kd import KDLoss


def check_class_list(loss: str, key: str, value: Any) -> list[int]:
    """A list of distinct class indices >= 0, returned sorted (so [3, 1] and [1, 3] are the same loss).

    Message: ``loss 'tllm': undistillable_classes=[1, 1] is not allowed; must be a list of distinct class indices
    >= 0`` (the same format as ``kdlab.losses.checks``).
    """
    error = ConfigError(f"loss '{loss}': {key}={value!r} is not allowed; must be a list of distinct class indices >= 0")
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise error
    for item in value:
        # bool is an int subclass and 1.0 is a float: both are typos for a class index
        if isinstance(item, bool) or not isinstance(item, numbers.Integral) or item < 0:
            raise error
    if len(set(value)) != len(value):
        raise error
    return sorted(int(item) for item in value)


@LOSSES.register("tllm")
class TLLMLoss(ResponseLoss):
    """KD on the samples of distillable classes, plain cross-entropy on the samples of undistillable ones.

    Zhu, Liu, Xu, Liu, Meng, Wang, Ou, Tang, "Teach Less, Learn More: On the Undistillable Classes in Knowledge
    Distillation", NeurIPS 2022. Undistillable classes are those whose accuracy a KD student loses against a
    student trained on labels alone; TLLM "identifies and discards" them: their samples are taught by the labels
    only. (Finding the set is a separate, earlier step: ``kdlab.analysis.undistillable``.)

    With U the undistillable set, m_i = 1 if y_i is not in U else 0, and per-sample terms
        ce_i = -log softmax(z_s[i])_{y_i},
        kl_i = T^2 * sum_c p_t[i,c] * (log p_t[i,c] - log p_s[i,c]),   p = softmax(z / T),
        l_i  = m_i * ((1 - alpha) * ce_i + alpha * kl_i) + (1 - m_i) * ce_i
        L    = (1/N) * sum_i l_i
    i.e. every sample has weight 1/N: a distillable sample contributes exactly its KD objective and an
    undistillable one exactly its cross-entropy. For a batch with N_d distillable and N_u undistillable samples,
    L = (N_d / N) * KD(distillable part) + (N_u / N) * CE(undistillable part); with U empty, L is ``kd``'s loss.

    Why per-sample weights rather than "KD term averaged over distillable samples only": the latter would scale
    the teacher's pull on every distillable sample up by N / N_d, changing KD's effective alpha with the batch
    composition. The paper does not give the batch normalisation; this choice keeps the objective of every
    distillable sample identical to KD's, which is what a "KD minus the undistillable classes" ablation needs.
    Also not specified by the paper and left out here: masking the undistillable classes' *columns* inside the
    teacher's distribution for distillable samples (the teacher's soft labels are used unchanged).

    Hyperparameters: ``temperature`` (> 0, default 4.0) and ``alpha`` (in [0, 1], default 0.9) as in ``kd``
    (Tian, Krishnan, Isola, ICLR 2020 CIFAR-100 settings); ``undistillable_classes`` (distinct class indices,
    default empty). Indices >= the number of classes are refused at the first batch (the loss does not know K
    before it sees logits). Search space: ``kd``'s (temperature x alpha); the class set comes from an analysis,
    not from tuning.

    Named parts: {"ce": CE over all samples, "kd": T^2 * KL averaged over the distillable samples (0 when
    there are none), "distillable_fraction": N_d / N}.
    """

    name = "tllm"
    search_space = KDLoss.search_space

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9,
                 undistillable_classes: Sequence[int] = ()) -> None:
        super().__init__(
            temperature=check_positive("tllm", "temperature", temperature),
            alpha=check_unit_interval("tllm", "alpha", alpha),
            undistillable_classes=check_class_list("tllm", "undistillable_classes", undistillable_classes),
        )
        self.temperature: float = self.hyperparams["temperature"]
        self.alpha: float = self.hyperparams["alpha"]
        self.undistillable_classes: list[int] = self.hyperparams["undistillable_classes"]

    def distillable_mask(self, targets: Tensor, num_classes: int) -> Tensor:
        """Boolean [N]: True where the sample's label is not an undistillable class."""
        if self.undistillable_classes and self.undistillable_classes[-1] >= num_classes:
            raise ValueError(f"loss 'tllm': undistillable_classes={self.undistillable_classes} holds a class index "
                             f">= the number of classes {num_classes}")
        excluded = torch.zeros(num_classes, dtype=torch.bool, device=targets.device)
        excluded[self.undistillable_classes] = True
        return ~excluded[targets]

    def compute(self, student_logits: Tensor, teacher_logits: Tensor | None, targets: Tensor) -> LossOutput:
        student, teacher, y = self._inputs(student_logits, teacher_logits, targets)
        assert teacher is not None
        t, alpha = self.temperature, self.alpha
        ce = F.cross_entropy(student, y)
        kl = soft_kl_per_sample(torch.log_softmax(teacher / t, dim=-1), torch.log_softmax(student / t, dim=-1))
        kd_all = t * t * kl.mean()  # kd's term over the whole batch, computed as kd computes it
        if not self.undistillable_classes:
            return LossOutput(blend(ce, kd_all, alpha),
                              named_parts(ce=ce, kd=kd_all, distillable_fraction=ce.new_ones(())))
        # The per-sample form of the docstring, with the batch's mask as weights: nothing here depends on how many
        # samples are distillable, so no step waits for the device to count them. A batch that is all distillable
        # (all undistillable) selects kd's (ce's) own value, bit for bit.
        keep = self.distillable_mask(y, student.shape[1]).to(student.dtype)
        n = max(y.shape[0], 1)
        n_keep = keep.sum()
        per_sample = F.cross_entropy(student, y, reduction="none")
        per_sample = per_sample + keep * alpha * (t * t * kl - per_sample)
        everyone, no_one = n_keep == n, n_keep == 0
        total = torch.where(everyone, blend(ce, kd_all, alpha), torch.where(no_one, ce, per_sample.sum() / n))
        kd_part = torch.where(everyone, kd_all, t * t * (keep * kl).sum() / n_keep.clamp(min=1))
        return LossOutput(total, named_parts(ce=ce, kd=kd_part, distillable_fraction=n_keep / n))
