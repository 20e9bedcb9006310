"""``ats``: Asymmetric Temperature Scaling, one temperature for the ground-truth class and one for the rest."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..space import Space
from .base import LOSSES, LossOutput, ResponseLoss, named_parts
from .checks import check_bool, check_positive, check_unit_interval
from .functional import asymmetric_log_probs, blend, soft_kl


#: The temperatures and KD weights ATS (and its symmetric control) is tuned over.
TAUS = (1.0, 2.0, 4.0, 8.0)
ALPHAS = (0.5, 0.7, 0.9)


@LOSSES.register("ats")
class ATSLoss(ResponseLoss):
    """KD whose teacher target softens the ground-truth class and the wrong classes with different temperatures.

    Li, Fan, Song, Li, Li, Shao, Zhan, "Asymmetric Temperature Scaling Makes Larger Networks Teach Well Again",
    NeurIPS 2022; extended in Fan, Li, Zhan, "Exploring Dark Knowledge under Various Teacher Capacities and
    Addressing Capacity Mismatch", arXiv:2405.13078 (Frontiers of Computer Science, 2026).

        tau_c = tau_gt if c == y else tau_other
        p_c   = exp(z_t[c] / tau_c) / sum_j exp(z_t[j] / tau_j)          (teacher target, per sample)
        q     = softmax(z_s / tau_student)
        L     = (1 - alpha) * CE(z_s, y) + alpha * tau_student^2 * KL(p || q)      (KL summed over classes, batch mean)

    A large, over-confident teacher puts almost all mass on the GT class, so its wrong-class probabilities are
    nearly equal ("class discriminability" is lost); a higher temperature on the GT class (tau_gt > tau_other)
    lowers that peak while the lower wrong-class temperature keeps the wrong classes distinct.

    The paper writes the soft term as the cross-entropy -sum_c p_c log q_c; kdlab uses KL(p || q), which differs
    only by the entropy of p, a constant for the student (same gradients), so values compare with ``kd``. With
    tau_gt = tau_other = tau_student = T this loss equals ``kd`` at temperature T.

    ``standardize=True`` z-scores both logit vectors per sample first (Sun et al., CVPR 2024; see
    ``standardize_logits``); CE always uses the raw student logits.

    Defaults: ``tau_gt=4.0, tau_other=2.0, tau_student=1.0, alpha=0.5`` are the ATS settings of the authors'
    reference demo (gitee.com/mindspore/models, research/cv/ats, README "KD Hyper-Parameters": tp_tau=4.0 for the
    correct class, t_tau=2.0 for the wrong classes, s_tau=1.0, lamb=0.5), which the paper's abstract links to; the
    paper's rule is tau_gt > tau_other ("a higher/lower temperature to the correct/wrong class", its abstract).
    ``standardize=False``.

    Search space (``search_space``): tau_gt, tau_other in {1, 2, 4, 8} with tau_gt > tau_other (the paper's
    rule, which makes the method; the authors' own sweep, tp_tau 1-6 x t_tau 1-5 in github.com/lxcnju/ATS-LargeKD,
    covers the reverse pairs too) x alpha {0.5, 0.7, 0.9}: 18 points holding the defaults. tau_student stays 1.
    The symmetric control (``control_spaces["symmetric"]``) takes the same values with tau_gt = tau_other
    (12 points), so ATS and its control differ in the asymmetry alone, and each gets the same tuning budget.

    Named parts: {"ce": CE, "kd": tau_student^2 * KL}; the objective is (1 - alpha) * ce + alpha * kd.
    """

    name = "ats"
    search_space = Space({"tau_gt": TAUS, "tau_other": TAUS, "alpha": ALPHAS}, ("tau_gt > tau_other",))
    control_spaces = {"symmetric": Space({"tau_gt": TAUS, "tau_other": TAUS, "alpha": ALPHAS},
                                         ("tau_gt == tau_other",))}

    @classmethod
    def revision_for(cls, options: dict[str, Any]) -> int:
        """2 with ``standardize: true`` (since the z-score divides by the sample std, K - 1, as the released code of
        logit standardisation does; revision 1 divided by K), else 1."""
        return 2 if options.get("standardize") else 1

    def __init__(
        self,
        tau_gt: float = 4.0,
        tau_other: float = 2.0,
        tau_student: float = 1.0,
        alpha: float = 0.5,
        standardize: bool = False,
    ) -> None:
        super().__init__(
            tau_gt=check_positive("ats", "tau_gt", tau_gt),
            tau_other=check_positive("ats", "tau_other", tau_other),
            tau_student=check_positive("ats", "tau_student", tau_student),
            alpha=check_unit_interval("ats", "alpha", alpha),
            standardize=check_bool("ats", "standardize", standardize),
        )
        self.tau_gt: float = self.hyperparams["tau_gt"]
        self.tau_other: float = self.hyperparams["tau_other"]
        self.tau_student: float = self.hyperparams["tau_student"]
        self.alpha: float = self.hyperparams["alpha"]

    def compute(self, student_logits: Tensor, teacher_logits: Tensor | None, targets: Tensor) -> LossOutput:
        student, teacher, y = self._inputs(student_logits, teacher_logits, targets)
        assert teacher is not None
        z_s, z_t = self._standardized(student, teacher)
        loss, ce, kd = ats_objective(student, z_s, z_t, y, self.tau_gt, self.tau_other, self.tau_student, self.alpha)
        return LossOutput(loss, named_parts(ce=ce, kd=kd))


def ats_objective(
    student_raw: Tensor,
    z_s: Tensor,
    z_t: Tensor,
    targets: Tensor,
    tau_gt: float,
    tau_other: float | Tensor,
    tau_student: float,
    alpha: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """(objective, CE, tau_student^2 * KL) of ATS; ``tau_other`` is a number or one temperature per sample [N].

    ``student_raw`` feeds the CE term; ``z_s`` and ``z_t`` (raw or standardised) feed the soft term.
    """
    log_p = asymmetric_log_probs(z_t, targets, tau_gt, tau_other)
    kd = tau_student * tau_student * soft_kl(log_p, torch.log_softmax(z_s / tau_student, dim=-1))
    ce = F.cross_entropy(student_raw, targets)
    return blend(ce, kd, alpha), ce, kd
