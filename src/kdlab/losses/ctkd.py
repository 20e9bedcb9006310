"""``ctkd``: Curriculum Temperature KD, a learnable temperature trained adversarially through gradient reversal."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..space import Space
from .base import LOSSES, LossOutput, ResponseLoss, named_parts
from .checks import check_not_below, check_positive, check_unit_interval
from .functional import blend, soft_kl
from .schedule import check_span, span_in_epochs

#: The authors' curriculum as a fraction of training: 10 of the 240 CIFAR-100 epochs (--decay_loops 10 in
#: scripts/run_cifar_distill.sh); their ImageNet script uses 5 of 120 epochs, the same 1/24.
PAPER_CURRICULUM_FRACTION = 10 / 240


class _GradientReversal(torch.autograd.Function):
    """Identity on the way forward; multiplies the incoming gradient by -strength on the way back.

    Ganin, Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015. Whatever follows this
    layer is *maximised* by the same optimiser step that minimises the loss for everything before it.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, strength: float) -> Tensor:
        ctx.strength = strength
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * (-ctx.strength), None


def curriculum_strength(epoch: int, epochs: float, lambda_min: float, lambda_max: float) -> float:
    """The cosine curriculum of CTKD: lambda_min at epoch 0, rising to lambda_max at ``epochs`` and staying there.

        lambda(e) = lambda_min + (lambda_max - lambda_min) * (1 - cos(pi * min(e, E) / E)) / 2

    (the paper writes it as lambda_min + 1/2 (lambda_max - lambda_min)(1 + cos((1 + min(e, E)/E) pi)), the same
    function); E = 0 means no curriculum (lambda_max from the start). E may be fractional (a fraction of a run).
    """
    if epochs == 0:
        return lambda_max
    e = min(max(epoch, 0), epochs)
    return lambda_min + (lambda_max - lambda_min) * (1.0 - math.cos(math.pi * e / epochs)) / 2.0


@LOSSES.register("ctkd")
class CTKDLoss(ResponseLoss):
    """KD whose temperature is a parameter that the student's optimiser pushes to make distillation *harder*.

    Zheng Li, Xiang Li, Lingfeng Yang, Borui Zhao, Renjie Song, Lei Luo, Jun Li, Jian Yang, "Curriculum
    Temperature for Knowledge Distillation", AAAI 2023 (the global-temperature variant).

        T    = t_min + (t_max - t_min) * sigmoid(r)         (r: one learnable number, the ``raw_temperature``)
        L    = (1 - alpha) * CE(z_s, y) + alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))
        dL/dr as seen by the optimiser = -lambda * (true dL/dr)     (gradient-reversal layer between r and T)

    So one optimiser step *descends* L in the student's weights and *ascends* the KD term in r: the temperature
    moves to where the student currently finds the teacher hardest to match. lambda follows an easy-to-hard
    cosine curriculum over the epochs (``curriculum_strength``), set by ``set_epoch``; with lambda = 0 the
    temperature does not move. The student's own gradients are exactly those of ``kd`` at the current T.

    ``raw_temperature`` is an ``nn.Parameter`` of this module. The Distiller registers the loss as its submodule
    ``loss``, so ``distiller.parameters()`` (what the training loop hands to the optimiser) includes it, and its
    value is saved in and restored from checkpoints with the rest of the trainable state. kdlab's optimiser
    exempts 1-D tensors from weight decay, so r is not decayed (the authors' SGD decays it with the student).

    Curriculum length, scaled to the schedule: the authors' scripts raise lambda over the first 10 of 240
    CIFAR-100 epochs (5 of 120 on ImageNet), 1/24 of training. kdlab's default is that fraction,
    ``curriculum_fraction = 10/240 = 0.0417`` of the student's epochs: 10 epochs of a 240-epoch run, 1.25 epochs
    of a 30-epoch run. ``curriculum_epochs=N`` instead fixes N epochs (the paper's literal count); giving both is
    an error. The loss learns the run's length from ``set_schedule(epochs)`` (the recipe calls it with
    ``train.epochs``).

    A freshly built loss is at full strength (lambda = lambda_max) so its behaviour can be tested directly; once
    the loop calls ``set_epoch(epoch)`` (kdlab epochs count from 0) lambda = curriculum_strength(epoch, E_c, ...)
    with E_c the curriculum in epochs. The authors' code counts epochs from 1, so its first epoch already has
    lambda(1) = 0.024 with their 10 epochs: kdlab's curriculum is one epoch later.

    Defaults, from the authors' CIFAR-100 script (github.com/zhengli97/CTKD, scripts/run_cifar_distill.sh and
    helper/loops.py): the temperature is bounded to [t_min, t_max] = [1, 21] (their ``--t_start 1 --t_end 20``
    with T = t_start + t_end * sigmoid(r)); ``init_temperature=None`` means their initialisation r = 1 (the
    Global_T parameter starts at torch.ones(1)), i.e. T_0 = 1 + 20 * sigmoid(1) = 15.62, and the resolved value
    is what ``hyperparams`` records; ``lambda_min=0, lambda_max=1`` (``--decay_max 0 --decay_min -1``, their
    sign convention for the same reversal strength 0 -> 1) over ``curriculum_fraction=10/240``
    (``--decay_loops 10`` of 240 epochs); ``alpha=0.9`` (``-r 0.1 -a 0.9``, CE weight 0.1 and KD weight 0.9).
    lambda values are limited to [0, 1].

    Search space (``search_space``): curriculum_fraction {1/24, 1/12, 1/6, 1/3} (10, 20, 40, 80 of 240
    epochs) x alpha {0.5, 0.7, 0.9}, 12 points holding the defaults. The temperature itself is learnt, so the
    curriculum and the KD weight are what is left to tune, as KD tunes its temperature and alpha.

    ``temperature`` (property) is the current T as a float. Named parts: {"ce": CE, "kd": T^2 * KL,
    "temperature": T}; the objective is (1 - alpha) * ce + alpha * kd.
    """

    name = "ctkd"
    search_space = Space({"curriculum_fraction": (10 / 240, 20 / 240, 40 / 240, 80 / 240),
                          "alpha": (0.5, 0.7, 0.9)})

    revision = 2  # curriculum given as a fraction of training (10/240 by default) instead of 10 epochs

    def __init__(
        self,
        t_min: float = 1.0,
        t_max: float = 21.0,
        init_temperature: float | None = None,
        alpha: float = 0.9,
        lambda_min: float = 0.0,
        lambda_max: float = 1.0,
        curriculum_fraction: float | None = None,
        curriculum_epochs: int | None = None,
    ) -> None:
        t_min = check_positive("ctkd", "t_min", t_min)
        t_max = check_positive("ctkd", "t_max", t_max)
        check_not_below("ctkd", "t_max", t_max, "t_min", t_min)
        if init_temperature is None:
            raw = 1.0  # the authors' initialisation of the raw parameter
            init = t_min + (t_max - t_min) / (1.0 + math.exp(-raw))
        else:
            init = check_positive("ctkd", "init_temperature", init_temperature)
            raw = _inverse_bound(init, t_min, t_max)
        lambda_min = check_unit_interval("ctkd", "lambda_min", lambda_min)
        lambda_max = check_unit_interval("ctkd", "lambda_max", lambda_max)
        check_not_below("ctkd", "lambda_max", lambda_max, "lambda_min", lambda_min)
        fraction, epochs = check_span("ctkd", "curriculum", curriculum_fraction, curriculum_epochs,
                                      PAPER_CURRICULUM_FRACTION)
        super().__init__(
            t_min=t_min,
            t_max=t_max,
            init_temperature=init,
            alpha=check_unit_interval("ctkd", "alpha", alpha),
            lambda_min=lambda_min,
            lambda_max=lambda_max,
            curriculum_fraction=fraction,
            curriculum_epochs=epochs,
        )
        self.t_min, self.t_max = t_min, t_max
        self.alpha: float = self.hyperparams["alpha"]
        # shape [1] like the authors' parameter; 1-D, so kdlab's optimiser applies no weight decay to it
        self.raw_temperature = nn.Parameter(torch.tensor([raw], dtype=torch.float32))
        self.grl_strength: float = lambda_max  # full strength until the loop says otherwise

    @property
    def curriculum_length(self) -> float:
        """E_c, the curriculum in epochs: curriculum_epochs, or curriculum_fraction * the student's epochs."""
        hp = self.hyperparams
        return span_in_epochs("ctkd", "curriculum", hp["curriculum_fraction"], hp["curriculum_epochs"],
                              self.total_epochs)

    def set_epoch(self, epoch: int) -> None:
        hp = self.hyperparams
        self.grl_strength = curriculum_strength(int(epoch), self.curriculum_length, hp["lambda_min"],
                                                hp["lambda_max"])

    def _temperature(self, raw: Tensor) -> Tensor:
        return (self.t_min + (self.t_max - self.t_min) * torch.sigmoid(raw)).reshape(())

    @property
    def temperature(self) -> float:
        """The current temperature T (a float, no gradient)."""
        with torch.no_grad():
            return float(self._temperature(self.raw_temperature))

    def compute(self, student_logits: Tensor, teacher_logits: Tensor | None, targets: Tensor) -> LossOutput:
        student, teacher, y = self._inputs(student_logits, teacher_logits, targets)
        assert teacher is not None
        raw = _GradientReversal.apply(self.raw_temperature, self.grl_strength)
        # T is computed in the parameter's dtype and then cast, so float64 logits see the same T as float32 ones
        t = self._temperature(raw).to(student.dtype)
        kd = t * t * soft_kl(torch.log_softmax(teacher / t, dim=-1), torch.log_softmax(student / t, dim=-1))
        ce = F.cross_entropy(student, y)
        return LossOutput(blend(ce, kd, self.alpha), named_parts(ce=ce, kd=kd, temperature=t))


def _inverse_bound(value: float, low: float, high: float) -> float:
    """r with low + (high - low) * sigmoid(r) = value, for low < value < high; 0 for a fixed range low == high."""
    if high == low:
        if value != low:
            raise ConfigError(
                f"loss 'ctkd': init_temperature={value!r} is not allowed; must be t_min=t_max={low!r} "
                "when the range is a single point"
            )
        return 0.0
    if not low < value < high:
        raise ConfigError(
            f"loss 'ctkd': init_temperature={value!r} is not allowed; must be strictly between "
            f"t_min={low!r} and t_max={high!r}"
        )
    u = (value - low) / (high - low)
    return math.log(u / (1.0 - u))
