"""``ce``: plain cross-entropy, the no-teacher baseline."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import LOSSES, LossOutput, ResponseLoss, named_parts
from .checks import check_unit_interval


@LOSSES.register("ce")
class CrossEntropyLoss(ResponseLoss):
    """Cross-entropy with the labels; the teacher is not used (``teacher_logits`` may be None).

    CE(z_s, y) = -(1/N) sum_i log softmax(z_s[i])_{y_i}

    With label smoothing e (Szegedy, Vanhoucke, Ioffe, Shlens, Wojna, "Rethinking the Inception Architecture for
    Computer Vision", CVPR 2016) the one-hot target becomes (1 - e) * onehot(y) + e / K, as in
    ``torch.nn.functional.cross_entropy``.

    Hyperparameters: ``label_smoothing`` in [0, 1), default 0.0 (plain cross-entropy, the usual baseline).
    Named parts: {"ce"}.
    """

    name = "ce"
    requires_teacher = False

    def __init__(self, label_smoothing: float = 0.0) -> None:
        smoothing = check_unit_interval("ce", "label_smoothing", label_smoothing, include_one=False)
        super().__init__(label_smoothing=smoothing)
        self.label_smoothing: float = self.hyperparams["label_smoothing"]

    def compute(self, student_logits: Tensor, teacher_logits: Tensor | None, targets: Tensor) -> LossOutput:
        student, _, y = self._inputs(student_logits, None, targets)
        loss = F.cross_entropy(student, y, label_smoothing=self.label_smoothing)
        return LossOutput(loss, named_parts(ce=loss))
