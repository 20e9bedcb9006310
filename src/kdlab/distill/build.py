"""The training objective of one run (an :class:`~kdlab.distill.objective.Objective`), from the run's config.

    scheme given            the scheme's objective (kdlab.distill.schemes: dml, joint, byot)
    otherwise               a Distiller: the response loss, plus the ``features`` terms (with adapters) when given

Everything is built and checked here, before the first training step: taps, shapes, adapters, peers and heads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..batch import Inputs
from ..config import RunConfig
from ..losses import ResponseLoss
from .distiller import Distiller, TeacherLogitsTable
from .objective import Objective
from .schemes import build_scheme
from .terms import build_feature_terms


def build_objective(cfg: RunConfig, student: nn.Module, loss: ResponseLoss, num_classes: int,
                    in_shape: Sequence[int], example: Inputs, teacher: nn.Module | None = None,
                    teacher_logits: torch.Tensor | TeacherLogitsTable | None = None) -> Objective:
    """The objective ``kdlab.train.fit`` trains for ``cfg`` (call its ``close()`` when done: it removes hooks).

    ``example`` is a real batch of the training inputs (at least 2 samples): feature taps and auxiliary heads learn
    their shapes from it. Modules that train besides the student (adapters, peers, heads) are created here, after
    the student, so the student's initial weights are the same for every method of a seed.
    """
    if cfg.scheme is not None:
        return build_scheme(cfg, student, loss, num_classes, in_shape, example)
    terms = build_feature_terms(cfg.features, student, teacher, example) if cfg.features else ()
    return Distiller(student, loss, teacher=teacher, teacher_logits=teacher_logits,
                     stop_epoch=cfg.teacher.kd_stop_epoch(cfg.train.epochs) if cfg.teacher else None, terms=terms,
                     hint_epochs=cfg.hint_epochs)
