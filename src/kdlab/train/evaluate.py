"""Evaluation: accuracy and loss of a model over a loader, and its logits over a dataset."""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn


@torch.inference_mode()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` (in eval mode, restored afterwards) for every row of ``x``, as a float32 CPU tensor.

    Batches move to the model's device one at a time, so ``x`` may stay on the CPU.
    """
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x[i:i + batch_size].to(device)).float().cpu()
                          for i in range(0, len(x), batch_size)]) if len(x) else torch.empty(0)
    finally:
        model.train(was_training)


@torch.inference_mode()
def evaluate(model: nn.Module, batches: Iterable) -> dict[str, float]:
    """Mean cross-entropy and top-1 accuracy over ``batches`` of (x, y, ...)."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    try:
        for batch in batches:
            x, y = batch[0].to(device), batch[1].to(device)
            logits = model(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            count += len(y)
    finally:
        model.train(was_training)
    if count == 0:
        return {"loss": float("nan"), "accuracy": float("nan"), "num_samples": 0}
    return {"loss": loss_sum / count, "accuracy": correct / count, "num_samples": count}


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter (or buffer); the CPU for a model with neither."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")
