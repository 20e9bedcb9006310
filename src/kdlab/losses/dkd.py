"""``dkd``: Decoupled Knowledge Distillation, KD split into a target-class and a non-target-class term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import LOSSES, ResponseLoss
from .checks import check_bool, check_int, check_non_negative, check_positive


def _kl_rows(log_p: Tensor, log_q: Tensor) -> Tensor:
    """Per-row KL(p || q) = sum_c p_c (log p_c - log q_c) from log-probabilities, [N, K] -> [N].

    Where p_c is exactly 0 (a class masked with -inf in both p and q) the term is 0, its limit, instead of
    0 * (-inf - -inf) = NaN; ``torch.where`` also routes a zero gradient to that entry.
    """
    p = log_p.exp()
    terms = p * (log_p - log_q)
    return torch.where(p > 0, terms, torch.zeros_like(terms)).sum(dim=-1)


def _binary_log_probs(scaled: Tensor, gt: Tensor) -> Tensor:
    """log b = [log p_gt, log (1 - p_gt)] of softmax(scaled), [N, K] -> [N, 2], without forming 1 - p_gt.

    log p_gt = s_gt - logsumexp_j s_j and log (1 - p_gt) = logsumexp_{j != gt} s_j - logsumexp_j s_j: both are
    differences of log-sum-exps, finite for logits of any magnitude (1 - p_gt would round to 0 and its log to
    -inf once the GT logit leads by ~17 in float32, as it does at magnitude 1e4).
    """
    lse_all = torch.logsumexp(scaled, dim=-1)
    log_gt = scaled.masked_fill(~gt, 0.0).sum(dim=-1) - lse_all  # the one unmasked entry is s_gt
    log_rest = scaled.masked_fill(gt, -torch.inf).logsumexp(dim=-1) - lse_all
    return torch.stack([log_gt, log_rest], dim=-1)


def decoupled_kl(
    student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, temperature: float
) -> tuple[Tensor, Tensor]:
    """Per-sample (TCKD, NCKD) of DKD at ``temperature``, each of shape [N], *without* the T^2 factor.

        p = softmax(z / T)                                   (teacher p^T, student p^S)
        b = [p_gt, 1 - p_gt]                                 binary target / non-target probabilities
        p^_c = exp(z_c / T) / sum_{j != gt} exp(z_j / T)     non-target classes renormalised (c != gt)
        TCKD = KL(b^T || b^S),   NCKD = KL(p^T^ || p^S^)

    p^ is computed as log_softmax of z / T with the GT logit set to -inf (masking in log-space), not as
    p_c / (1 - p_gt), which is 0 / 0 when the teacher is certain; the -inf column contributes exactly 0.
    Needs K >= 2 classes (with K = 2 the non-target distribution is a single class and NCKD = 0).
    """
    k = student_logits.shape[-1]
    if k < 2:
        raise ValueError(f"loss 'dkd' needs at least 2 classes, got logits of shape {tuple(student_logits.shape)}")
    gt = F.one_hot(targets.long(), k).bool()
    s, t = student_logits / temperature, teacher_logits / temperature
    tckd = _kl_rows(_binary_log_probs(t, gt), _binary_log_probs(s, gt))
    nckd = _kl_rows(
        torch.log_softmax(t.masked_fill(gt, -torch.inf), dim=-1),
        torch.log_softmax(s.masked_fill(gt, -torch.inf), dim=-1),
    )
    return tckd, nckd


@LOSSES.register("dkd")
class DKDLoss(ResponseLoss):
    """Decoupled KD: weight the target-class and the non-target-class parts of the KD term separately.

    Zhao, Cui, Song, Qiu, Liang, "Decoupled Knowledge Distillation", CVPR 2022.

        p = softmax(z / T),  b = [p_gt, 1 - p_gt],  p^ = softmax over the non-target classes of z / T
        TCKD = KL(b^T || b^S)                      (target-class KD: how confident, binary)
        NCKD = KL(p^T^ || p^S^)                    (non-target-class KD: the "dark knowledge" among wrong classes)
        KL(p^T || p^S) = TCKD + (1 - p_gt^T) * NCKD                 (the paper's decomposition of classical KD)
        warm = min(epoch / warmup_epochs, 1)
        L = ce_weight * CE(z_s, y) + warm * T^2 * (alpha * TCKD + beta * NCKD)      (KLs averaged over the batch)

    Classical KD weights NCKD by 1 - p_gt^T, which is small exactly when the teacher is confident, i.e. for a
    large, well-trained teacher; DKD replaces that coupling by the constant beta, which is why it is listed
    among the capacity-mismatch remedies.

    Warm-up: a freshly built loss is at full strength (warm = 1) so its values can be tested directly; once the
    training loop calls ``set_epoch(epoch)`` (kdlab epochs count from 0) the factor is min(epoch /
    warmup_epochs, 1), so epoch 0 trains on CE alone and epoch ``warmup_epochs`` is the first at full strength.
    The authors' code (mdistiller) counts epochs from 1, so there the first epoch already gets 1/warmup_epochs:
    kdlab's ramp is one epoch later. ``warmup_epochs=0`` disables the warm-up.

    ``standardize=True`` z-scores both logit vectors per sample before the temperature (Sun, Ren, Li, Wang, Cao,
    "Logit Standardization in Knowledge Distillation", CVPR 2024; see ``standardize_logits``); CE always uses
    the raw student logits. That paper's DKD setting on CIFAR-100 is T=2 with alpha and beta multiplied by 9
    (alpha=9, beta=72), which kdlab leaves to the user.

    Defaults, from the paper's CIFAR-100 setting as released in the authors' code (mdistiller, DKD config:
    CE_WEIGHT 1.0, ALPHA 1.0, BETA 8.0, T 4.0, WARMUP 20): ``alpha=1.0, beta=8.0, temperature=4.0,
    ce_weight=1.0, warmup_epochs=20``; ``standardize=False``. beta is data-set dependent (the paper uses 0.5 on
    ImageNet).

    ``last_parts``: {"ce": CE, "tckd": T^2 * TCKD, "nckd": T^2 * NCKD} (unweighted, without warm);
    the objective is ce_weight * ce + warm * (alpha * tckd + beta * nckd).
    """

    name = "dkd"

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        ce_weight: float = 1.0,
        warmup_epochs: int = 20,
        standardize: bool = False,
    ) -> None:
        super().__init__(
            alpha=check_non_negative("dkd", "alpha", alpha),
            beta=check_non_negative("dkd", "beta", beta),
            temperature=check_positive("dkd", "temperature", temperature),
            ce_weight=check_non_negative("dkd", "ce_weight", ce_weight),
            warmup_epochs=check_int("dkd", "warmup_epochs", warmup_epochs, minimum=0),
            standardize=check_bool("dkd", "standardize", standardize),
        )
        self.alpha: float = self.hyperparams["alpha"]
        self.beta: float = self.hyperparams["beta"]
        self.temperature: float = self.hyperparams["temperature"]
        self.ce_weight: float = self.hyperparams["ce_weight"]
        self.warmup_epochs: int = self.hyperparams["warmup_epochs"]
        self._epoch: int | None = None  # None: never told, i.e. after the warm-up

    def set_epoch(self, epoch: int) -> None:
        self._epoch = int(epoch)

    @property
    def warmup_factor(self) -> float:
        """min(epoch / warmup_epochs, 1); 1 before any ``set_epoch`` call and when warmup_epochs is 0."""
        if self._epoch is None or self.warmup_epochs == 0:
            return 1.0
        return min(max(self._epoch, 0) / self.warmup_epochs, 1.0)

    def forward(self, student_logits: Tensor, teacher_logits: Tensor | None, targets: Tensor) -> Tensor:
        student, teacher, y = self._inputs(student_logits, teacher_logits, targets)
        assert teacher is not None
        z_s, z_t = self._standardized(student, teacher)
        t2 = self.temperature * self.temperature
        tckd_rows, nckd_rows = decoupled_kl(z_s, z_t, y, self.temperature)
        tckd, nckd = t2 * tckd_rows.mean(), t2 * nckd_rows.mean()
        ce = F.cross_entropy(student, y)
        self._record(ce=ce, tckd=tckd, nckd=nckd)
        return self.ce_weight * ce + self.warmup_factor * (self.alpha * tckd + self.beta * nckd)
