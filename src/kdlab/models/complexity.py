"""Model size: parameter counts and multiply-accumulates (MACs) of one forward pass."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..batch import Inputs, inputs_to
from .checks import check_in_shape
from .outputs import model_logits


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter values (shared parameters counted once; buffers such as BN running stats excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _linear_macs(module: nn.Linear, output: torch.Tensor) -> int:
    # every output value is a dot product over in_features inputs
    return output.numel() * module.in_features


def _conv2d_macs(module: nn.Conv2d, output: torch.Tensor) -> int:
    # every output value sums over the kernel window of the in_channels/groups channels of its group
    return output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)


def count_macs(model: nn.Module, in_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass of ONE sample of shape ``in_shape``.

    Counts only ``nn.Linear`` and ``nn.Conv2d`` layers (grouped and depthwise convs included); biases, batch norm,
    activations, pooling and residual additions are ignored, as they are a small fraction of the work in the
    models kdlab builds. The pass runs in eval mode without gradients (so batch norm running statistics are left
    untouched); each module's train/eval mode is restored and the counting hooks are removed afterwards.
    """
    shape = check_in_shape("count_macs", in_shape)
    return sum_over_layers(model, shape, _macs)


def count_macs_of(model: nn.Module, sample: Inputs) -> int:
    """:func:`count_macs` for one real sample: ``sample`` is a batch of one (a tensor or a mapping of named tensors,
    e.g. a transformer's ``input_ids`` and ``attention_mask``, whose cost depends on the sequence)."""
    return sum_over_layers(model, sample, _macs)


def _macs(module: nn.Module, output: torch.Tensor) -> int:
    return _linear_macs(module, output) if isinstance(module, nn.Linear) else _conv2d_macs(module, output)


def sum_over_layers(model: nn.Module, shape: Sequence[int] | Inputs,
                    per_layer: Callable[[nn.Module, torch.Tensor], int]) -> int:
    """Sum ``per_layer(module, output)`` over every ``nn.Linear`` / ``nn.Conv2d`` call of one forward pass of one
    zero sample of ``shape`` (on the model's device and dtype) or of the given batch of one sample, in eval mode
    without gradients; each module's train/eval mode is restored and the hooks are removed afterwards."""
    total = 0

    def count(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        total += per_layer(module, output)

    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    modes = {module: module.training for module in model.modules()}
    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        model.eval()
        with torch.no_grad():
            if isinstance(shape, (torch.Tensor, dict)):
                model_logits(model, inputs_to(shape, device))
            else:
                model(torch.zeros(1, *shape, device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return total
