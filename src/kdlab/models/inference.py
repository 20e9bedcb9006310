"""Running a model without gradients: its device, and its logits over a whole tensor of inputs in batches."""

from __future__ import annotations

import torch
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


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter (or buffer); the CPU for a model with neither."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")
