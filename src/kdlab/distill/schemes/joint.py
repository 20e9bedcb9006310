"""Online distillation with a teacher trained together with the student, from scratch.

The simplest online scheme of the survey (Gou, Yu, Maybank, Tao, "Knowledge Distillation: A Survey", IJCV 2021,
Sec. 4.2: "the teacher model and the student model are updated simultaneously"); the one-way special case of
Deep Mutual Learning (Zhang et al., CVPR 2018) in which only the student learns from its partner:

    L = CE(z_t, y) + L_student(z_s, stopgrad(z_t), y)

The teacher learns from the labels only; the student's objective is the run's ``loss`` (e.g. kd) with the teacher's
*current* logits as a fixed target (detached: the student cannot pull the teacher towards itself). Both update in
the same optimiser step. The teacher is a registered submodule here (it trains, so it must be in ``parameters()`` and
in checkpoints), unlike the Distiller's frozen teacher; only the student is exported.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ...batch import Inputs
from ...config import Component, RunConfig, Section
from ...losses import LossOutput, ResponseLoss
from ...models.outputs import model_logits
from ..objective import StepOutput
from .base import SCHEMES, Scheme, build_models, check_models


class JointOptions(Section):
    # the teacher's architecture (a kdlab model), trained from scratch alongside the student
    teacher: Component


class JointLoss(nn.Module):
    """``CE(z_t, y) + student_loss(z_s, z_t.detach(), y)``; named parts (:meth:`compute`): the student loss's parts
    and ``teacher_ce``."""

    def __init__(self, student_loss: ResponseLoss) -> None:
        super().__init__()
        self.student_loss = student_loss

    def forward(self, student_logits: Tensor, teacher_logits: Tensor, targets: Tensor) -> Tensor:
        """The objective L."""
        return self.compute(student_logits, teacher_logits, targets).loss

    def compute(self, student_logits: Tensor, teacher_logits: Tensor, targets: Tensor) -> LossOutput:
        """The objective L and its parts (detached)."""
        teacher_ce = F.cross_entropy(teacher_logits.float(), targets)
        student = self.student_loss.compute(student_logits, teacher_logits.detach(), targets)
        return LossOutput(teacher_ce + student.loss, {**student.parts, "teacher_ce": teacher_ce.detach()})

    def set_epoch(self, epoch: int) -> None:
        """The student loss's own schedule, if it has one."""
        self.student_loss.set_epoch(epoch)


class JointTraining(nn.Module):
    """The objective of teacher and student trained together (an :class:`~kdlab.distill.objective.Objective`)."""

    def __init__(self, student: nn.Module, teacher: nn.Module, loss: JointLoss) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher
        self.loss = loss

    def forward(self, x: Inputs, y: Tensor, index: Tensor | None = None) -> StepOutput:
        """One batch through student and teacher."""
        student_logits = model_logits(self.student, x)
        loss, parts = self.loss.compute(student_logits, model_logits(self.teacher, x), y)
        return StepOutput(loss, student_logits, parts)

    def set_epoch(self, epoch: int) -> None:
        """The student loss's schedule follows the epoch."""
        self.loss.set_epoch(epoch)

    def close(self) -> None:
        """No hooks to remove."""


def _check(cfg: RunConfig, options: JointOptions) -> None:
    check_models("scheme.teacher", [options.teacher])


def _build(options: JointOptions, student: nn.Module, loss: ResponseLoss, num_classes: int,
           in_shape: Sequence[int], example: Inputs) -> JointTraining:
    # built after the student, so the student starts from the same weights as every other method's of this seed
    (teacher,) = build_models("scheme.teacher", [options.teacher], num_classes, in_shape)
    return JointTraining(student, teacher, JointLoss(loss))


SCHEMES.register("joint")(Scheme(options=JointOptions, check=_check, build=_build))
