"""``nasty``: the self-undermining objective that trains a nasty teacher (a model that teaches students badly)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import LOSSES, LossOutput, ResponseLoss, named_parts
from .checks import check_non_negative, check_positive
from .functional import soft_kl


@LOSSES.register("nasty")
class NastyLoss(ResponseLoss):
    """Self-undermining knowledge distillation: keep the labels right, push the soft outputs away from a normal model.

    Ma, Chen, Hu, You, Xie, Wang, "Undistillable: Making A Nasty Teacher That CANNOT teach students", ICLR 2021
    (Sec. 3.2, "self-undermining knowledge distillation").

    In kdlab's slots the model being trained (the future nasty teacher) is the *student* and a frozen, normally
    trained adversary network is the *teacher*; z are the trained model's logits, z_A the adversary's:

        p   = softmax(z / tau),   p_A = softmax(z_A / tau)
        KL  = (1/N) sum_i sum_c p[i,c] * (log p[i,c] - log p_A[i,c])        (the nasty model's distribution first)
        L   = CE(z, y) - omega * tau^2 * KL

    Minimising L keeps the hard predictions right (the CE term) while *maximising* the divergence of the tempered
    outputs from those of a normal network, so the soft labels a student would imitate become misleading: the
    paper observes multi-peaked tempered outputs. The KL direction (nasty first, adversary second) is the paper's
    Eq. (2) and the official code's ``KLDivLoss(log_softmax(z_A / T), softmax(z / T))`` with batch-mean reduction.
    The objective is bounded below because KL(p || p_A) <= max_c -log p_A[c], which is finite for finite z_A.
    The official code adds a constant 100 to keep the logged loss positive; a constant changes no gradient and is
    left out here.

    Hyperparameters and where the defaults come from:

    - ``temperature`` (tau_A): 4 for CIFAR-10 and 20 for CIFAR-100 and Tiny-ImageNet, as the paper's experimental
      setup states (following Yuan et al., CVPR 2020).
    - ``omega``: the official code's configurations (github.com/VITA-Group/Nasty-Teacher, ``experiments/*/
      kd_nasty_*/nasty_*/params.json``, key ``weight``) use 0.04 for CIFAR-10 (ResNet-18), 0.005 for CIFAR-100
      (ResNet-18, ResNeXt-29) and 0.01 for Tiny-ImageNet (ResNet-18). (Values quoted from memory elsewhere,
      omega = 0.004 for CIFAR-10 and 0.01 for CIFAR-100, do not match the released configurations; kdlab follows
      the released configurations.)
    - Defaults ``temperature=4.0, omega=0.04``: the CIFAR-10 setting, kept for Fashion-MNIST, which also has 10
      classes and where the normal teacher is similarly confident.

    Named parts: {"ce": CE, "kl": tau^2 * KL}; the objective is ce - omega * kl.
    """

    name = "nasty"

    def __init__(self, temperature: float = 4.0, omega: float = 0.04) -> None:
        super().__init__(
            temperature=check_positive("nasty", "temperature", temperature),
            omega=check_non_negative("nasty", "omega", omega),
        )
        self.temperature: float = self.hyperparams["temperature"]
        self.omega: float = self.hyperparams["omega"]

    def compute(self, student_logits: Tensor, teacher_logits: Tensor | None, targets: Tensor) -> LossOutput:
        """L = CE(z, y) - omega tau^2 KL(softmax(z/tau) || softmax(z_A/tau)); student = z, teacher = adversary z_A."""
        nasty, adversary, y = self._inputs(student_logits, teacher_logits, targets)
        assert adversary is not None
        t = self.temperature
        # soft_kl(log p, log q) = KL(p || q): the trained (nasty) model's distribution goes first
        kl = t * t * soft_kl(torch.log_softmax(nasty / t, dim=-1), torch.log_softmax(adversary / t, dim=-1))
        ce = F.cross_entropy(nasty, y)
        return LossOutput(ce - self.omega * kl, named_parts(ce=ce, kl=kl))
