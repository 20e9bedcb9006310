"""The Distiller: a student, an optional frozen teacher (or its cached outputs), one response loss and any number of
feature/relation terms read through forward hooks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..batch import Inputs
from ..losses import ResponseLoss
from ..losses.base import named_parts
from ..models.outputs import model_logits
from .hooks import FeatureTaps
from .objective import StepOutput


class TeacherLogitsTable(Protocol):
    """A table of cached teacher logits read by rows: ``table[index]`` is the dense ``[B, K]`` logits of the samples
    at dataset positions ``index`` (a CPU tensor); :class:`~kdlab.distill.cache.TopKLogits` is one."""

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor: ...

    def __len__(self) -> int: ...


class Distiller(nn.Module):
    """Student + frozen teacher + response loss + feature terms; an :class:`~kdlab.distill.objective.Objective`.

    The objective of (0-based) epoch e is

        L(e) = response_loss(z_s, z_t, y) + sum_k w_k(e) * term_k(adapter_k(s_k), t_k)

    where ``s_k`` and ``t_k`` are the outputs of the student's and the teacher's tap modules for the batch (captured
    by forward hooks) and ``w_k(e)`` is the term's scheduled weight (:func:`kdlab.distill.terms.scheduled_weight`).
    During the first ``hint_epochs`` epochs the response loss is left out (the hint stage of Romero, Ballas, Kahou,
    Chassang, Gatta, Bengio, "FitNets: Hints for Thin Deep Nets", ICLR 2015): only the layers up to the student's
    taps and the adapters get gradients, the layers above them are not in the graph and the optimiser skips them.

    The teacher is deliberately *not* a registered submodule: it never appears in ``parameters()`` (so the optimiser
    cannot touch it), in ``state_dict()`` (checkpoints hold only what trains) or in ``train()`` (it stays in eval mode).
    With ``teacher_logits`` (a cache of the teacher's outputs for every training sample, in dataset order), the
    teacher is not run at all; ``index`` picks the rows of the batch. Feature terms need the live teacher. The
    cache may be a tensor ``[N, K]`` or a table of rows (:class:`~kdlab.distill.cache.TopKLogits`, a memory-mapped
    file): anything ``cache[index]`` turns into the batch's logits.

    Inputs are a tensor or a mapping of named tensors (passed as keyword arguments: attention masks, token types);
    the student's and the teacher's outputs go through :func:`~kdlab.models.outputs.logits_of`, so a Hugging Face
    model (``.logits``) or a model returning ``(logits, features)`` is a student or teacher as it is.

    The terms (with their adapters) are registered, so they train with the student (``parameters()``) and are saved
    in checkpoints for resume, but the student's exported weights hold the student only. A step's parts (what the
    training loop logs) are the response loss's own parts plus each term's value under its label.
    Call :meth:`close` when done: it removes the forward hooks from student and teacher.
    """

    def __init__(self, student: nn.Module, loss: ResponseLoss, teacher: nn.Module | None = None,
                 teacher_logits: torch.Tensor | TeacherLogitsTable | None = None, stop_epoch: int | None = None,
                 terms: Sequence[nn.Module] = (), hint_epochs: int = 0) -> None:
        super().__init__()
        self.student = student
        self.loss = loss
        self.terms = terms if isinstance(terms, nn.ModuleList) else nn.ModuleList(terms)
        # ESKD's kd_stop_epoch: from this (0-based) epoch on the objective is plain CE and the teacher is not run
        self.stop_epoch = stop_epoch
        self.teacher_dropped = False
        self.hint_epochs = int(hint_epochs)
        self.epoch = 0
        needs_teacher = loss.requires_teacher
        if needs_teacher and teacher is None and teacher_logits is None:
            raise ValueError(f"loss '{type(loss).__name__}' needs a teacher or cached teacher logits")
        if len(self.terms) and teacher is None:
            raise ValueError("feature terms need the teacher module (its features are read live), not cached logits")
        if self.hint_epochs and not len(self.terms):
            raise ValueError(f"hint_epochs={self.hint_epochs} needs feature terms to train on")
        self.__dict__["teacher"] = freeze(teacher) if teacher is not None else None
        # with feature terms the teacher runs on every batch anyway, so its logits come from that pass
        self.__dict__["teacher_logits"] = teacher_logits if not len(self.terms) else None
        self.needs_teacher = needs_teacher
        # hooks live outside the module tree (plain attributes): they are not state, and close() removes them
        self.__dict__["student_taps"] = None
        self.__dict__["teacher_taps"] = None
        if len(self.terms):
            self.__dict__["student_taps"] = FeatureTaps(student, list(dict.fromkeys(t.student_tap for t in self.terms)))
            self.__dict__["teacher_taps"] = FeatureTaps(teacher, list(dict.fromkeys(t.teacher_tap for t in self.terms)))

    @property
    def hint_stage(self) -> bool:
        """True during the first ``hint_epochs`` epochs (feature terms only)."""
        return self.epoch < self.hint_epochs

    def set_epoch(self, epoch: int) -> None:
        """The hint stage, ESKD's teacher drop and the response loss's own schedule follow the 0-based epoch."""
        self.epoch = int(epoch)
        self.loss.set_epoch(epoch)
        self.teacher_dropped = self.stop_epoch is not None and epoch >= self.stop_epoch

    def teacher_outputs(self, x: Inputs, index: torch.Tensor | None) -> torch.Tensor:
        """The frozen teacher's logits of this batch (cached rows, or a no-autograd forward pass)."""
        return teacher_batch_logits(self.teacher, self.teacher_logits, x, index)

    def forward(self, x: Inputs, y: torch.Tensor, index: torch.Tensor | None = None) -> StepOutput:
        """The objective L(e) of the class docstring for one batch, the student's logits and the named parts."""
        student_logits = model_logits(self.student, x)
        if self.teacher_dropped:
            if self.student_taps is not None:
                self.student_taps.clear()  # features of a dropped teacher's terms: not needed, do not keep the graph
            objective = F.cross_entropy(student_logits, y)
            return StepOutput(objective, student_logits, named_parts(ce=objective))
        run_teacher = self.needs_teacher or len(self.terms)
        teacher_logits = self.teacher_outputs(x, index) if run_teacher else None
        terms, term_parts = self._feature_terms()
        if self.hint_stage:
            # nothing but the hints: layers above the taps stay out of the graph, so the optimiser skips them (no
            # weight decay or momentum either); a zero on the logits only when every term is scheduled off
            objective = terms if terms is not None else student_logits.sum() * 0.0
            return StepOutput(objective, student_logits, term_parts)
        response = self.loss.compute(student_logits, teacher_logits if self.needs_teacher else None, y)
        objective = response.loss if terms is None else response.loss + terms
        return StepOutput(objective, student_logits, {**response.parts, **term_parts})

    def _feature_terms(self) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """sum_k w_k(epoch) * term_k over the terms switched on this epoch, and their values for the logs."""
        if not len(self.terms):
            return None, {}
        total, parts = None, {}
        try:
            for term in self.terms:
                weight = term.weight_at(self.epoch)
                if weight == 0.0:
                    continue  # switched off by its schedule: not computed, not logged
                value, term_parts = term.compute(self.student_taps[term.student_tap],
                                                 self.teacher_taps[term.teacher_tap])
                parts.update(term_parts)
                total = weight * value if total is None else total + weight * value
        finally:
            # the objective holds the graph; dropping these references frees the features once backward is done
            self.student_taps.clear()
            self.teacher_taps.clear()
        return total, parts

    def close(self) -> None:
        """Remove the forward hooks from student and teacher; idempotent. The recipe calls it when training ends."""
        for taps in (self.student_taps, self.teacher_taps):
            if taps is not None:
                taps.remove()


def teacher_batch_logits(teacher: nn.Module | None, cached: torch.Tensor | TeacherLogitsTable | None, x: Inputs,
                         index: torch.Tensor | None) -> torch.Tensor:
    """A frozen teacher's logits for a batch: rows ``index`` of its cached logits when there are any (on the
    device of ``index``), else the teacher run on ``x`` without autograd."""
    if cached is not None:
        if index is None:
            raise ValueError("cached teacher logits are looked up by the samples' dataset positions, but this batch "
                             "has no index: yield (inputs, targets, index) batches, or run the teacher live "
                             "(teacher.cache: false; Distiller(teacher=...) without teacher_logits)")
        rows = cached[index.to(cached.device)] if isinstance(cached, torch.Tensor) else cached[index.cpu()]
        return rows.to(index.device)
    assert teacher is not None
    with torch.inference_mode():
        logits = model_logits(teacher, x)
    # inference tensors cannot be saved for backward; a clone made outside inference mode can
    return logits.clone()


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and ``requires_grad=False`` on every parameter: a teacher that cannot change."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
