"""Deep mutual learning: two or more peers trained together, each also learning from the others' predictions.

Zhang, Xiang, Hospedales, Lu, "Deep Mutual Learning", CVPR 2018. With K peers and p_k = softmax(z_k / T):

    L_k = L_sup(z_k, y) + weight * T^2 * KL( mean_{l != k} p_l  ||  p_k )            (one per peer)
    L   = sum_k L_k

The target ``mean_{l != k} p_l`` is fixed (detached) for peer k, so the gradient of L with respect to peer k's
parameters is exactly the gradient of L_k: every peer gets its own objective, all are updated in one optimiser step.
The paper updates the peers in turn within a mini-batch (peer 2 sees peer 1's prediction after peer 1's update);
kdlab uses the simultaneous form, where each peer sees the others' predictions from before the step. For K = 2 the
target is the other peer's distribution, as in the paper's eq. (2); for K > 2 it is the mean of the others (the
paper's ensemble-teacher variant, Sec. 3.3, "DML_e"), rather than the mean of K - 1 KL terms (eq. 10).

Defaults: T = 1 and weight = 1 (the paper's objective); T^2 keeps the gradient scale if T is raised (Hinton et al.).
``L_sup`` is the run's ``loss`` (ce; label smoothing allowed). Peer 0 is the run's ``model``: it is the student that
is evaluated and exported; ``scheme.peers`` lists the others (any kdlab models with the same classes and inputs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from pydantic import Field
from torch import Tensor, nn

from ...batch import Inputs
from ...config import Component, RunConfig, Section
from ...losses import LossOutput, ResponseLoss
from ...losses.functional import soft_kl
from ...models.outputs import model_logits
from ..objective import StepOutput
from .base import SCHEMES, Scheme, build_models, check_models, require_teacher_free


class DMLOptions(Section):
    # the peers besides the run's model (peer 0); one or more kdlab models
    peers: list[Component] = Field(min_length=1)
    temperature: float = Field(1.0, gt=0)
    weight: float = Field(1.0, ge=0)


class MutualLearningLoss(nn.Module):
    """sum_k [ L_sup(z_k, y) + weight * T^2 * KL(mean_{l != k} p_l || p_k) ] over the peers' logits ``z_k``.

    Named parts (:meth:`compute`): ``ce`` and ``kl`` for peer 0 (the student), ``ce_peer<k>`` and ``kl_peer<k>`` for
    the others.
    """

    def __init__(self, supervised: ResponseLoss, temperature: float = 1.0, weight: float = 1.0) -> None:
        super().__init__()
        self.supervised = supervised
        self.temperature = float(temperature)
        self.weight = float(weight)

    def forward(self, logits: Sequence[Tensor], targets: Tensor) -> Tensor:
        """The objective L."""
        return self.compute(logits, targets).loss

    def compute(self, logits: Sequence[Tensor], targets: Tensor) -> LossOutput:
        """The objective L and its parts (detached)."""
        if len(logits) < 2:
            raise ValueError(f"mutual learning needs at least 2 peers, got {len(logits)}")
        t = self.temperature
        log_probs = [torch.log_softmax(z.float() / t, dim=-1) for z in logits]
        total = logits[0].new_zeros((), dtype=torch.float32)
        parts: dict[str, Tensor] = {}
        for k, z in enumerate(logits):
            # log of the mean of the other peers' distributions, in log space (stable): the fixed target of peer k
            others = torch.stack([lp.detach() for l, lp in enumerate(log_probs) if l != k])
            log_target = torch.logsumexp(others, dim=0) - math.log(len(logits) - 1)
            kl = t * t * soft_kl(log_target, log_probs[k])
            sup = self.supervised(z, None, targets)
            total = total + sup + self.weight * kl
            suffix = "" if k == 0 else f"_peer{k}"
            parts[f"ce{suffix}"], parts[f"kl{suffix}"] = sup.detach(), kl.detach()
        return LossOutput(total, parts)


class MutualLearning(nn.Module):
    """The DML objective (an :class:`~kdlab.distill.objective.Objective`): ``student`` (peer 0) and ``peers`` (the
    others) all train; a step returns L, the student's logits z_0 and the loss's parts."""

    def __init__(self, student: nn.Module, peers: Sequence[nn.Module], loss: MutualLearningLoss) -> None:
        super().__init__()
        self.student = student
        self.peers = nn.ModuleList(peers)
        self.loss = loss

    def forward(self, x: Inputs, y: Tensor, index: Tensor | None = None) -> StepOutput:
        """One batch through every peer."""
        logits = [model_logits(self.student, x), *(model_logits(peer, x) for peer in self.peers)]
        loss, parts = self.loss.compute(logits, y)
        return StepOutput(loss, logits[0], parts)

    def set_epoch(self, epoch: int) -> None:
        """Nothing depends on the epoch."""

    def close(self) -> None:
        """No hooks to remove."""


def _check(cfg: RunConfig, options: DMLOptions) -> None:
    require_teacher_free("dml", cfg, "every peer's supervised term")
    check_models("scheme.peers", options.peers)


def _build(options: DMLOptions, student: nn.Module, loss: ResponseLoss, num_classes: int,
           in_shape: Sequence[int], example: Inputs) -> MutualLearning:
    # built after the student, so peer 0 starts from the same weights as every other method's student of this seed
    peers = build_models("scheme.peers", options.peers, num_classes, in_shape)
    return MutualLearning(student, peers, MutualLearningLoss(loss, options.temperature, options.weight))


SCHEMES.register("dml")(Scheme(options=DMLOptions, check=_check, build=_build))
