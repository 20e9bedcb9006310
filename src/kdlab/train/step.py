"""One optimisation step of an objective: learning rate, forward under autocast, backward, update.

Under torchrun the objective runs wrapped in DistributedDataParallel, which averages the gradients over the ranks in
``backward()``; ``find_unused_parameters`` because hint stages, scheduled-off terms and auxiliary heads leave some
parameters without a gradient in some epochs.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from ..batch import Inputs, inputs_to
from ..config import OptimConfig, ScheduleConfig, TrainConfig
from ..distill.objective import Objective, StepOutput
from ..models.inference import model_device
from . import distributed
from .device import autocast_context, grad_scaler, use_channels_last
from .optim import build_optimizer, lr_factor, set_lr


class TrainStep:
    """Everything a training step needs besides the batch, built once per ``fit``: the optimiser, the learning-rate
    schedule, the device and memory layout, autocast and the gradient scaler, and the (DDP-wrapped) objective."""

    def __init__(self, objective: Objective, train: TrainConfig, optim: OptimConfig, schedule: ScheduleConfig,
                 steps_per_epoch: int) -> None:
        self.objective = objective
        self.device = model_device(objective.student)  # the recipe moved the objective to train.device
        self.channels_last = use_channels_last(train.channels_last, objective.student)
        if self.channels_last:  # the student and every trained module of the objective (peers, adapters, heads)
            objective.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(objective.parameters(), optim)
        self.scaler = grad_scaler(self.device, train.precision)  # a pass-through unless precision is fp16
        self.autocast = autocast_context(self.device, train.precision)
        self.module = (DistributedDataParallel(objective, find_unused_parameters=True,
                                               device_ids=[self.device.index] if self.device.type == "cuda" else None)
                       if distributed.current().enabled else objective)
        self.base_lr, self.schedule = optim.lr, schedule
        self.steps_per_epoch, self.epochs = steps_per_epoch, train.epochs

    @property
    def lr(self) -> float:
        """The learning rate of the last step."""
        return self.optimizer.param_groups[0]["lr"]

    def to_device(self, x: Inputs, y: Tensor, index: Tensor | None) -> tuple[Inputs, Tensor, Tensor | None]:
        """A batch from the loader (which keeps the data on the CPU) on the training device, in its memory layout
        (channels-last applies to a 4-D image tensor; named inputs move as they are)."""
        if self.device.type != "cpu":
            x, y = inputs_to(x, self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            index = index.to(self.device, non_blocking=True) if index is not None else None
        if self.channels_last and isinstance(x, Tensor) and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y, index

    def __call__(self, x: Inputs, y: Tensor, index: Tensor | None, step: int) -> StepOutput:
        """One update on a batch at global ``step`` (0-based); the objective's output with the loss detached.

        The learning rate is ``base_lr * lr_factor(step)``, a pure function of the step (nothing to resume).
        """
        set_lr(self.optimizer, self.base_lr * lr_factor(step, self.steps_per_epoch, self.epochs, self.schedule,
                                                        self.base_lr))
        with self.autocast:
            out = self.module(x, y, index)
        loss = out.loss.float()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)  # with fp16: unscales, and skips the step if a gradient overflowed
        self.scaler.update()
        return StepOutput(loss.detach(), out.logits.detach(), out.parts)
