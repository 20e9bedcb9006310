"""Evaluation: mean cross-entropy and accuracy of a model over a loader."""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..models.inference import model_device


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
