"""Evaluation: mean cross-entropy and accuracy of a model over a loader."""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..batch import inputs_to, split_batch
from ..models.inference import model_device
from ..models.outputs import model_logits


@torch.inference_mode()
def evaluate(model: nn.Module, batches: Iterable) -> dict[str, float]:
    """Mean cross-entropy and top-1 accuracy over ``batches`` (any iterable of batches, :mod:`kdlab.batch`).

    The sums stay on the model's device (the loss summed in float64) and are read once, after the last batch.
    """
    device = model_device(model)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    count = 0
    try:
        for batch in batches:
            x, y, _ = split_batch(batch)
            x, y = inputs_to(x, device), y.to(device)
            logits = model_logits(model, x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            count += len(y)
    finally:
        model.train(was_training)
    if count == 0:
        return {"loss": float("nan"), "accuracy": float("nan"), "num_samples": 0}
    return {"loss": loss_sum.item() / count, "accuracy": correct.item() / count, "num_samples": count}
