"""Optimisers and learning-rate schedules (step, cosine, constant; linear warm-up).

The schedule is a pure function of the global step, so a resumed run needs no scheduler state.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

from ..config import OptimConfig, ScheduleConfig


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam or AdamW over ``params``; weight decay is not applied to 1-D tensors (biases, norms)."""
    params = [p for p in params if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def lr_factor(step: int, steps_per_epoch: int, epochs: int, cfg: ScheduleConfig, base_lr: float) -> float:
    """Multiplier on the base learning rate at global ``step`` (0-based).

    warm-up: factor = (step + 1) / warmup_steps for the first ``warmup_epochs`` epochs;
    step:    factor = gamma ** (number of milestones <= current epoch);
    cosine:  factor = m + (1 - m) * (1 + cos(pi * t)) / 2, t = progress after warm-up in [0, 1], m = min_lr / base_lr
             (Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017, without restarts).
    """
    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "step":
        epoch = step // steps_per_epoch
        return cfg.gamma ** sum(1 for m in cfg.milestones if epoch >= m)
    total = max(1, epochs * steps_per_epoch - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / total)
    floor = min(1.0, cfg.min_lr / base_lr)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
