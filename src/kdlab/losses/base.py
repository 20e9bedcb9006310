"""The loss registry, ``ResponseLoss`` (the base class every response-based loss follows) and ``LossOutput``."""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Registry
from ..space import Space
from .standardize import standardize_logits

LOSSES: Registry = Registry("loss")


class LossOutput(NamedTuple):
    """A loss's value and its named components.

    ``loss`` is the scalar to minimise (it carries the graph); ``parts`` maps a component's name to its value as a
    detached 0-d tensor on the loss's device, for the logs: reading them is left to the caller, so computing a loss
    never waits for the device (no ``.item()``, no ``float()``).
    """

    loss: Tensor
    parts: dict[str, Tensor]


def named_parts(**values: Tensor) -> dict[str, Tensor]:
    """``values`` detached from the graph, for :attr:`LossOutput.parts`."""
    return {key: value.detach() for key, value in values.items()}


class ResponseLoss(nn.Module):
    """A training objective computed from the student's logits, the teacher's logits and the labels.

    ``loss(student_logits [N, K], teacher_logits [N, K] or None, targets [N] class indices) -> scalar``: the
    whole objective *including* its cross-entropy term, as the method defines it. ``loss.compute(...)`` with the same
    arguments returns a :class:`LossOutput`: the same objective plus its named, unweighted components as detached
    tensors, e.g. ``{"ce": .., "kd": ..}`` (what the training loop logs). Subclasses implement ``compute``.

    Attributes:
        name: the registry name ("kd", ...), used in messages.
        requires_teacher: False for losses that never read ``teacher_logits`` (which may then be None).
        hyperparams: the resolved hyperparameters as JSON-able values, for logging and run keys.
        search_space: the method's key hyperparameters and the values an equal-budget tuner tries (a
            :class:`kdlab.space.Space` over this loss's options); it always contains the defaults. Empty for a
            loss with nothing to tune.
        control_spaces: named spaces of the method's controls, e.g. ATS's ``symmetric`` (tau_gt = tau_other).
        total_epochs: how many epochs the student trains, once ``set_schedule`` was called (None before).
        revision: the version of what the loss computes for given options; bumped (with a note of why) whenever
            kdlab changes a loss's arithmetic or a default without changing its options, so that the run store never
            hands back a run trained with the old arithmetic under the same config (see :meth:`revision_for`).

    The teacher's logits are detached: the teacher is a fixed target, never trained through the loss.
    Half-precision logits are promoted to float32 before any softmax, so the loss is float32 (or float64).
    """

    name: ClassVar[str] = ""
    requires_teacher: ClassVar[bool] = True
    search_space: ClassVar[Space] = Space({})
    control_spaces: ClassVar[dict[str, Space]] = {}
    revision: ClassVar[int] = 1

    @classmethod
    def revision_for(cls, options: dict[str, Any]) -> int:
        """The revision of this loss with ``options`` (the loss's config options): ``revision`` unless a subclass
        changed only some of its configurations (then only those carry the new revision)."""
        return cls.revision

    def __init__(self, **hyperparams: Any) -> None:
        super().__init__()
        self.hyperparams: dict[str, Any] = dict(hyperparams)
        self.total_epochs: int | None = None

    def set_schedule(self, epochs: int) -> None:
        """Tell the loss how many epochs the student trains (``train.epochs``), before the first ``set_epoch``.

        Settings given as a fraction of training (DKD's warm-up, CTKD's curriculum) become epochs here;
        ``kdlab.recipe.run`` calls it with ``train.epochs``, so a run's loss always knows its schedule.
        """
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"loss '{self.name}': epochs={epochs!r} is not allowed; must be an integer >= 1")
        self.total_epochs = epochs

    def forward(self, student_logits: Tensor, teacher_logits: Tensor | None, targets: Tensor) -> Tensor:
        """The objective (a scalar tensor); :meth:`compute` also returns its parts."""
        return self.compute(student_logits, teacher_logits, targets).loss

    def compute(self, student_logits: Tensor, teacher_logits: Tensor | None, targets: Tensor) -> LossOutput:
        """The objective and its named parts (detached)."""
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Called once at the start of every epoch; a no-op unless the method depends on training progress."""

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.hyperparams.items())

    # -- helpers for subclasses -------------------------------------------------------------------------------

    def _inputs(
        self, student_logits: Tensor, teacher_logits: Tensor | None, targets: Tensor
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """Check shapes, promote half precision to float32 and detach the teacher."""
        student = _as_float(student_logits)
        if student.dim() != 2:
            raise ValueError(f"loss '{self.name}': student_logits must have shape (N, K), got {tuple(student.shape)}")
        if targets.dim() != 1 or targets.shape[0] != student.shape[0]:
            raise ValueError(
                f"loss '{self.name}': targets must have shape ({student.shape[0]},) to match student_logits "
                f"{tuple(student.shape)}, got {tuple(targets.shape)}"
            )
        if targets.is_floating_point():
            raise ValueError(f"loss '{self.name}': targets must be integer class indices, got dtype {targets.dtype}")
        teacher = None
        if teacher_logits is not None:
            teacher = _as_float(teacher_logits.detach())
            if teacher.shape != student.shape:
                raise ValueError(
                    f"loss '{self.name}': teacher_logits {tuple(teacher.shape)} and student_logits "
                    f"{tuple(student.shape)} must have the same shape"
                )
        elif self.requires_teacher:
            raise ValueError(f"loss '{self.name}' needs teacher_logits, got None")
        return student, teacher, targets.long()

    def _standardized(self, student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
        """Both logit tensors z-scored per sample when the loss has ``standardize`` on, else unchanged."""
        if self.hyperparams.get("standardize", False):
            return standardize_logits(student), standardize_logits(teacher)
        return student, teacher


def _as_float(logits: Tensor) -> Tensor:
    if logits.dtype in (torch.float32, torch.float64):
        return logits
    return logits.float()


def search_space(name: str, control: str | None = None) -> Space:
    """The search space the loss registered as ``name`` declares (keys are its options), or with ``control`` the
    space of one of its named controls (``search_space("ats", "symmetric")``). Raises ConfigError for an
    unknown loss or control."""
    cls = LOSSES.get(name)
    if control is None:
        return cls.search_space
    controls = getattr(cls, "control_spaces", {})
    if control not in controls:
        raise ConfigError(f"loss '{name}' has no control space '{control}'. "
                          f"Allowed: {', '.join(sorted(controls)) or '(none)'}")
    return controls[control]
