"""``dkd``: Decoupled Knowledge Distillation, KD split into a target-class and a non-target-class term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..space import Space
from .base import LOSSES, LossOutput, ResponseLoss, named_parts
from .checks import check_bool, check_non_negative, check_positive
from .schedule import check_span, span_in_epochs

#: The paper's warm-up as a fraction of training: 20 of the 240 CIFAR-100 epochs (mdistiller's DKD config).
PAPER_WARMUP_FRACTION = 20 / 240


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
        W = warmup_fraction * E   (or warmup_epochs)    the warm-up length in epochs, E = the student's epochs
        warm = min(epoch / W, 1)
        L = ce_weight * CE(z_s, y) + warm * T^2 * (alpha * TCKD + beta * NCKD)      (KLs averaged over the batch)

    Classical KD weights NCKD by 1 - p_gt^T, which is small exactly when the teacher is confident, i.e. for a
    large, well-trained teacher; DKD replaces that coupling by the constant beta, which is why it is listed
    among the capacity-mismatch remedies.

    Warm-up, scaled to the schedule: the paper ramps the DKD term up over its first 20 of 240 CIFAR-100 epochs
    (mdistiller's config; 1 of 100 epochs on ImageNet), i.e. over 1/12 of training. kdlab's default is that
    fraction, ``warmup_fraction = 20/240 = 0.0833`` of the student's epochs: 20 epochs of a 240-epoch run,
    2.5 epochs of a 30-epoch run (factors 0, 0.4, 0.8, then 1). ``warmup_epochs=N`` instead fixes N epochs
    whatever the run's length (the paper's literal setting); giving both is an error. The loss learns the run's
    length from ``set_schedule(epochs)`` (the recipe calls it with ``train.epochs``).

    A freshly built loss is at full strength (warm = 1) so its values can be tested directly; once the training
    loop calls ``set_epoch(epoch)`` (kdlab epochs count from 0) the factor is min(epoch / W, 1), so epoch 0
    trains on CE alone and epoch ceil(W) is the first at full strength. The authors' code counts epochs from 1,
    so there the first epoch already gets 1/W: kdlab's ramp is one epoch later. W = 0 disables the warm-up.

    ``standardize=True`` z-scores both logit vectors per sample before the temperature (Sun, Ren, Li, Wang, Cao,
    "Logit Standardization in Knowledge Distillation", CVPR 2024; see ``standardize_logits``); CE always uses
    the raw student logits. That paper's DKD setting on CIFAR-100 is T=2 with alpha and beta multiplied by 9
    (alpha=9, beta=72), which kdlab leaves to the user.

    Defaults, from the paper's CIFAR-100 setting as released in the authors' code (mdistiller, DKD config:
    CE_WEIGHT 1.0, ALPHA 1.0, BETA 8.0, T 4.0, WARMUP 20 of 240 epochs): ``alpha=1.0, beta=8.0,
    temperature=4.0, ce_weight=1.0, warmup_fraction=20/240``; ``standardize=False``. beta is data-set
    dependent (the ImageNet config uses beta 0.5, T 1).

    Search space (``search_space``): beta {0.5, 1, 2, 4, 8} x temperature {1, 2, 4}, 15 points holding both
    released settings (CIFAR-100 beta 8, T 4; ImageNet beta 0.5, T 1). alpha stays at 1: the paper fixes the
    TCKD weight at 1.0 and studies beta alone, the one knob that replaces KD's (1 - p_gt) coupling.

    Named parts: {"ce": CE, "tckd": T^2 * TCKD, "nckd": T^2 * NCKD} (unweighted, without warm);
    the objective is ce_weight * ce + warm * (alpha * tckd + beta * nckd).
    """

    name = "dkd"
    search_space = Space({"beta": (0.5, 1.0, 2.0, 4.0, 8.0), "temperature": (1.0, 2.0, 4.0)})

    revision = 2  # warm-up given as a fraction of training (20/240 by default) instead of 20 epochs; standardize divides by K - 1

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        ce_weight: float = 1.0,
        warmup_fraction: float | None = None,
        warmup_epochs: int | None = None,
        standardize: bool = False,
    ) -> None:
        fraction, epochs = check_span("dkd", "warmup", warmup_fraction, warmup_epochs, PAPER_WARMUP_FRACTION)
        super().__init__(
            alpha=check_non_negative("dkd", "alpha", alpha),
            beta=check_non_negative("dkd", "beta", beta),
            temperature=check_positive("dkd", "temperature", temperature),
            ce_weight=check_non_negative("dkd", "ce_weight", ce_weight),
            warmup_fraction=fraction,
            warmup_epochs=epochs,
            standardize=check_bool("dkd", "standardize", standardize),
        )
        self.alpha: float = self.hyperparams["alpha"]
        self.beta: float = self.hyperparams["beta"]
        self.temperature: float = self.hyperparams["temperature"]
        self.ce_weight: float = self.hyperparams["ce_weight"]
        self.warmup_factor: float = 1.0  # min(epoch / W, 1), set by set_epoch; full strength until then

    def set_epoch(self, epoch: int) -> None:
        length = self.warmup_length  # a fraction with no known schedule fails here, at the first epoch
        self.warmup_factor = 1.0 if length == 0 else min(max(int(epoch), 0) / length, 1.0)

    @property
    def warmup_length(self) -> float:
        """W, the warm-up in epochs: warmup_epochs, or warmup_fraction * the student's epochs."""
        hp = self.hyperparams
        return span_in_epochs("dkd", "warmup", hp["warmup_fraction"], hp["warmup_epochs"], self.total_epochs)

    def compute(self, student_logits: Tensor, teacher_logits: Tensor | None, targets: Tensor) -> LossOutput:
        student, teacher, y = self._inputs(student_logits, teacher_logits, targets)
        assert teacher is not None
        z_s, z_t = self._standardized(student, teacher)
        t2 = self.temperature * self.temperature
        tckd_rows, nckd_rows = decoupled_kl(z_s, z_t, y, self.temperature)
        tckd, nckd = t2 * tckd_rows.mean(), t2 * nckd_rows.mean()
        ce = F.cross_entropy(student, y)
        return LossOutput(self.ce_weight * ce + self.warmup_factor * (self.alpha * tckd + self.beta * nckd),
                          named_parts(ce=ce, tckd=tckd, nckd=nckd))
