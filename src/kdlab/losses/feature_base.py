"""The feature-loss registry and ``FeatureLoss``, the base class of every feature and relation loss.

``feature.py`` (fitnet, at, agd, nonlocal) and ``relation.py`` (lsp, rkd_distance, rkd_angle, rkd, sp, pairwise)
register into ``FEATURE_LOSSES``; the package ``kdlab.losses`` imports both, so ``build_feature_loss`` knows every
name whenever the package is imported.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Registry
from .base import LossOutput

FEATURE_LOSSES: Registry = Registry("feature loss")

SHAPE_RULES = ("same", "same_spatial", "spatial", "any")


def build_feature_loss(name: str, **hyperparams: Any) -> FeatureLoss:
    """The feature or relation loss registered as ``name`` with ``hyperparams`` (the others at their defaults).

    Raises ConfigError for an unknown name (with a did-you-mean), an option the loss does not have, or a value it
    does not allow; each message names the key, the value and what is allowed.
    """
    factory = FEATURE_LOSSES.get(name)
    FEATURE_LOSSES.check_kwargs(name, hyperparams)
    return factory(**hyperparams)


def check_choice(loss: str, key: str, value: Any, choices: Sequence[str]) -> str:
    """One of ``choices`` (strings), else ConfigError in the format of ``checks.py`` with a did-you-mean."""
    if not isinstance(value, str) or value not in choices:
        close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"loss '{loss}': {key}={value!r} is not allowed; must be one of "
                          f"{', '.join(choices)}{hint}")
    return value


class FeatureLoss(nn.Module):
    """Base class: a distillation term from a student feature and a teacher feature of the same batch.

    ``loss(student_feature, teacher_feature) -> scalar``; ``loss.compute(...)`` returns a
    :class:`~kdlab.losses.base.LossOutput`: the value and its named, *weighted* parts as detached tensors (they sum to
    the value; a one-part loss has one). Subclasses implement ``compute``.

    Attributes:
        name: the registry name, used in messages.
        shape_rule: which shape pairs the loss accepts (see the module docstring).
        hyperparams: the resolved hyperparameters as JSON-able values, for logging and run keys.

    The teacher's feature is detached (a fixed target) and, if it is an inference tensor (captured under
    ``torch.inference_mode``), cloned so autograd may save it. Half-precision features are promoted to float32.
    """

    name: ClassVar[str] = ""
    shape_rule: ClassVar[str] = "any"
    # token features [B, N, D] are read as maps [B, D, N, 1] (channels D at N positions) by losses defined on
    # positions and channels (at, nonlocal, agd); element-wise losses (fitnet) compare tokens as they are
    tokens_as_maps: ClassVar[bool] = False

    def __init__(self, **hyperparams: Any) -> None:
        super().__init__()
        self.hyperparams: dict[str, Any] = dict(hyperparams)

    def forward(self, student_feature: Tensor, teacher_feature: Tensor) -> Tensor:
        """The loss value (a scalar tensor); :meth:`compute` also returns its parts."""
        return self.compute(student_feature, teacher_feature).loss

    def compute(self, student_feature: Tensor, teacher_feature: Tensor) -> LossOutput:
        """The value and its named, *weighted* parts (detached; they sum to the value)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.hyperparams.items())

    def needs_adapter(self, student_shape: Sequence[int], teacher_shape: Sequence[int]) -> bool:
        """Whether the student's tap needs ``make_adapter(student_shape, teacher_shape)`` before this loss.

        Shapes are without the batch dim. Raises ConfigError when no adapter can help (a map-only loss on a vector
        tap), so a bad tap pairing fails at setup time rather than in the first training step.
        """
        student, teacher = tuple(int(v) for v in student_shape), tuple(int(v) for v in teacher_shape)
        if self.shape_rule != "any" and (len(student) == 2 or len(teacher) == 2):
            return self._tokens_need_adapter(student, teacher)
        if self.shape_rule in ("spatial", "same_spatial"):
            if len(student) != 3 or len(teacher) != 3:
                raise ConfigError(f"loss '{self.name}' compares feature maps [C, H, W]; got student tap shape "
                                  f"{list(student)} and teacher tap shape {list(teacher)}: pick convolutional taps")
            return self.shape_rule == "same_spatial" and student[1:] != teacher[1:]
        if self.shape_rule == "same":
            if len(student) == 1 and len(teacher) == 3:
                raise ConfigError(f"loss '{self.name}' cannot compare a student vector {list(student)} with a teacher "
                                  f"feature map {list(teacher)}: no adapter maps a vector onto a spatial layout. Use "
                                  f"a relation loss or pick other taps")
            return student != teacher
        return False

    def _tokens_need_adapter(self, student: tuple[int, ...], teacher: tuple[int, ...]) -> bool:
        """Token features [N, D]: both taps must give tokens with the same N (no geometry to resample tokens by);
        then an adapter maps D -> D' where the loss compares elements ("same"), none where channels may differ."""
        if len(student) != len(teacher):
            pooled = self.shape_rule == "same" and len(student) == 2 and len(teacher) == 1
            if pooled:
                return True  # tokens -> vector: mean over the tokens, then linear (make_adapter)
            raise ConfigError(f"loss '{self.name}' cannot compare student tap shape {list(student)} with teacher tap "
                              f"shape {list(teacher)}: token features [N, D] compare with token features only. Use a "
                              "relation loss (rkd, sp, pairwise, lsp) or taps of the same kind")
        if student[0] != teacher[0]:
            raise ConfigError(f"loss '{self.name}' compares token features position by position, but the taps have "
                              f"{student[0]} and {teacher[0]} tokens: tokens have no geometry to resample. Tap layers "
                              "with the same sequence length, or use a relation loss (rkd, sp, pairwise, lsp)")
        return self.shape_rule == "same" and student != teacher

    # -- helpers for subclasses -------------------------------------------------------------------------------

    def _pair(self, student_feature: Tensor, teacher_feature: Tensor) -> tuple[Tensor, Tensor]:
        """Promote, detach the teacher, and check the shapes against ``shape_rule`` (ValueError naming both)."""
        student = _as_float(student_feature)
        teacher = teacher_feature.detach()
        if teacher.is_inference():
            teacher = teacher.clone()
        teacher = _as_float(teacher).to(student.dtype)
        shapes = f"student_feature {tuple(student.shape)}, teacher_feature {tuple(teacher.shape)}"
        if student.dim() < 2 or teacher.dim() < 2 or student.shape[0] != teacher.shape[0]:
            raise ValueError(f"loss '{self.name}': features must be batches [N, ...] of the same N; got {shapes}")
        if self.shape_rule != "any" and student.dim() == 3 and teacher.dim() == 3 and student.shape[1] != teacher.shape[1]:
            raise ValueError(f"loss '{self.name}' compares token features position by position and needs the same "
                             f"token count; got {shapes}")
        if self.shape_rule == "same" and student.shape != teacher.shape:
            raise ValueError(f"loss '{self.name}' compares features element by element and needs equal shapes; got "
                             f"{shapes}. Map the student's feature with make_adapter(student_shape, teacher_shape)")
        if (self.shape_rule in ("spatial", "same_spatial") or self.tokens_as_maps) and student.dim() == 3 \
                and teacher.dim() == 3:
            student, teacher = tokens_as_map(student), tokens_as_map(teacher)
        if self.shape_rule in ("spatial", "same_spatial") and (student.dim() != 4 or teacher.dim() != 4):
            raise ValueError(f"loss '{self.name}' needs feature maps [N, C, H, W]; got {shapes}")
        if self.shape_rule == "same_spatial" and student.shape[2:] != teacher.shape[2:]:
            raise ValueError(f"loss '{self.name}' needs equal spatial sizes (channels may differ); got {shapes}. "
                             f"Map the student's feature with make_adapter(student_shape, teacher_shape)")
        return student, teacher

def tokens_as_map(tokens: Tensor) -> Tensor:
    """Token features ``[B, N, D]`` as a feature map ``[B, D, N, 1]``: channel d at position n is token n's d-th
    value, so a loss over positions and channels reads tokens as positions (a 1-D sequence)."""
    return tokens.transpose(1, 2).unsqueeze(-1)


def _as_float(x: Tensor) -> Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def zero_loss(student: Tensor) -> Tensor:
    """A zero that is still connected to the student's graph (backward works, grads are 0): a batch too small to
    hold any relation."""
    return student.sum() * 0.0
