"""Running a model without gradients: its device, and its logits over a whole dataset's inputs in batches."""

from __future__ import annotations

import torch
from torch import nn

from ..batch import Inputs, batch_len, inputs_to, slice_rows
from .outputs import model_logits


@torch.inference_mode()
def predict_logits(model: nn.Module, x: Inputs, batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` (in eval mode, restored afterwards) for every row of ``x``, as a float32 CPU tensor.

    ``x`` is a tensor or a mapping of named input tensors (passed as keyword arguments). Batches move to the model's
    device one at a time, so ``x`` may stay on the CPU.
    """
    device = model_device(model)
    was_training = model.training
    model.eval()
    n = batch_len(x)
    try:
        return torch.cat([model_logits(model, inputs_to(slice_rows(x, i, i + batch_size), device)).float().cpu()
                          for i in range(0, n, batch_size)]) if n else torch.empty(0)
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter (or buffer); the CPU for a model with neither."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")
