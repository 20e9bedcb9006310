"""The Distiller: a student, an optional frozen teacher (or its cached outputs) and one response loss."""

from __future__ import annotations

import torch
from torch import nn


class Distiller(nn.Module):
    """Student + frozen teacher + loss; ``forward(x, y, index) -> (objective, student_logits)``.

    The teacher is deliberately *not* a registered submodule: it never appears in ``parameters()`` (so the optimiser
    cannot touch it), in ``state_dict()`` (checkpoints hold only what trains) or in ``train()`` (it stays in eval mode).
    With ``teacher_logits`` (a cache of the teacher's outputs for every training sample, in dataset order), the
    teacher is not run at all; ``index`` picks the rows of the batch.
    """

    def __init__(self, student: nn.Module, loss: nn.Module, teacher: nn.Module | None = None,
                 teacher_logits: torch.Tensor | None = None) -> None:
        super().__init__()
        self.student = student
        self.loss = loss
        needs_teacher = getattr(loss, "requires_teacher", True)
        if needs_teacher and teacher is None and teacher_logits is None:
            raise ValueError(f"loss '{type(loss).__name__}' needs a teacher or cached teacher logits")
        self.__dict__["teacher"] = freeze(teacher) if teacher is not None else None
        self.__dict__["teacher_logits"] = teacher_logits
        self.needs_teacher = needs_teacher

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.loss, "set_epoch"):
            self.loss.set_epoch(epoch)

    def teacher_outputs(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if self.teacher_logits is not None:
            return self.teacher_logits[index]
        with torch.inference_mode():
            logits = self.teacher(x)
        # inference tensors cannot be saved for backward; a clone made outside inference mode can
        return logits.clone()

    def forward(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        student_logits = self.student(x)
        teacher_logits = self.teacher_outputs(x, index) if self.needs_teacher else None
        return self.loss(student_logits, teacher_logits, y), student_logits


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and ``requires_grad=False`` on every parameter: a teacher that cannot change."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
