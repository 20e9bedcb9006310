"""The contract between a training objective and the one training loop.

An objective is the module the loop trains: the student plus whatever teaches or trains with it (a frozen teacher or
its cached logits, feature terms with adapters, DML peers, a jointly trained teacher, auxiliary heads). Every step the
loop calls ``objective(x, y, index)`` and gets a :class:`StepOutput`: the loss to backpropagate, the student's logits
(for the training accuracy) and the named parts of the loss (for the logs). The loop never reaches into the objective
to find anything else.

Implemented by :class:`~kdlab.distill.distiller.Distiller`, the schemes' objectives (``MutualLearning``,
``JointTraining``, ``SelfDistillation``) and ``kdlab.protect.skeptical.SkepticalObjective``. It is a ``Protocol``,
not a base class (like torchtune's recipe interface, "not a vehicle for code reuse"): each objective is an
``nn.Module`` with these members, and the loop also uses the module's ``parameters()``, ``state_dict()``,
``load_state_dict()``, ``train()`` and ``to()``.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

from torch import Tensor, nn

from ..batch import Inputs


class StepOutput(NamedTuple):
    """What one training step of an objective returns.

    ``loss``: the scalar objective (carries the graph). ``logits``: the student's logits ``[N, K]`` for the batch.
    ``parts``: the objective's named components as detached 0-d tensors on the device (e.g. ``ce``, ``kd``, one per
    feature term); the loop sums them over the epoch without reading them and logs ``train_<name>``, their sample
    mean, once per epoch.
    """

    loss: Tensor
    logits: Tensor
    parts: dict[str, Tensor]


@runtime_checkable
class Objective(Protocol):
    """What :func:`kdlab.train.fit` trains (see the module docstring)."""

    student: nn.Module  # the model that is evaluated each epoch and exported (best/last weights)

    def forward(self, x: Inputs, y: Tensor, index: Tensor | None = None) -> StepOutput:
        """One batch: inputs ``x`` (a tensor, or a mapping of named tensors passed to the models as keyword
        arguments; :mod:`kdlab.batch`), labels ``y``, dataset row numbers ``index`` (for cached teacher outputs;
        None when the loader yields none)."""
        ...

    def __call__(self, x: Inputs, y: Tensor, index: Tensor | None = None) -> StepOutput:
        """``nn.Module.__call__``: runs :meth:`forward` (with hooks; DDP wraps the same call)."""
        ...

    def set_epoch(self, epoch: int) -> None:
        """Called at the start of every (0-based) epoch, before its first step: schedules that depend on training
        progress (a hint stage, ESKD's teacher drop, a loss's warm-up or curriculum) read it."""
        ...

    def close(self) -> None:
        """Release what outlives training (forward hooks on the student or a teacher); idempotent."""
        ...
