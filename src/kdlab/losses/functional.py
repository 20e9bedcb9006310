"""Pure tensor helpers shared by the response losses (no state, no hyperparameter checks)."""

from __future__ import annotations

import torch
from torch import Tensor


def soft_kl(log_p_teacher: Tensor, log_p_student: Tensor) -> Tensor:
    """Batch-mean KL divergence KL(p_t || p_s) from two [N, K] log-probability tensors.

    KL = (1/N) sum_i sum_c p_t[i,c] * (log p_t[i,c] - log p_s[i,c]),   p_t = exp(log p_t)

    Both inputs come from log_softmax, so they are finite even for logits of magnitude 1e4 (no log(0)). Where
    p_t underflows to exactly 0 the term is set to 0 explicitly (the limit of p log p), so a teacher logit of
    -inf, as produced by class masking, does not turn 0 * (-inf) into NaN.
    """
    return soft_kl_per_sample(log_p_teacher, log_p_student).mean()


def soft_kl_per_sample(log_p_teacher: Tensor, log_p_student: Tensor) -> Tensor:
    """KL(p_t[i] || p_s[i]) for every row i of two [N, K] log-probability tensors, as [N]; see :func:`soft_kl`."""
    p_teacher = log_p_teacher.exp()
    terms = p_teacher * (log_p_teacher - log_p_student)
    terms = torch.where(p_teacher > 0, terms, torch.zeros_like(terms))
    return terms.sum(dim=-1)


def class_temperatures(logits: Tensor, targets: Tensor, tau_gt: float, tau_other: float | Tensor) -> Tensor:
    """The [N, K] temperature matrix of asymmetric temperature scaling.

    tau[i, c] = tau_gt if c == y_i else tau_other_i; ``tau_other`` is one number or a tensor of shape [N]
    (one temperature per sample, as in instance-specific ATS).
    """
    if isinstance(tau_other, Tensor):
        tau = tau_other.to(dtype=logits.dtype, device=logits.device).reshape(-1, 1).expand_as(logits).clone()
    else:
        tau = torch.full_like(logits, float(tau_other))
    return tau.scatter(1, targets.reshape(-1, 1), float(tau_gt))


def asymmetric_log_probs(logits: Tensor, targets: Tensor, tau_gt: float, tau_other: float | Tensor) -> Tensor:
    """log p with p_c = exp(z_c / tau_c) / sum_j exp(z_j / tau_j), tau_c = tau_gt for c = y, tau_other otherwise.

    Computed as log_softmax(z / tau) with the matrix of ``class_temperatures``; [N, K] -> [N, K].
    """
    return torch.log_softmax(logits / class_temperatures(logits, targets, tau_gt, tau_other), dim=-1)


def blend(ce: Tensor, distill: Tensor, alpha: float) -> Tensor:
    """The usual response-distillation objective (1 - alpha) * CE + alpha * distill."""
    return (1.0 - alpha) * ce + alpha * distill
