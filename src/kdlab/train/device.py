"""Where a run computes (``train.device``) and how it casts (``train.precision``), resolved before any training."""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn

from ..errors import ConfigError

log = logging.getLogger("kdlab")


def resolve_device(spec: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``; an explicit device must exist here.

    Raises ``ConfigError`` naming ``train.device`` when the device asked for is not available on this machine.
    """
    if spec == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device='{spec}' but CUDA is not available here (torch {torch.__version__}, "
                              f"built with CUDA {torch.version.cuda or 'none'}); allowed here: auto, cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise ConfigError(f"train.device='{spec}' but this machine has {torch.cuda.device_count()} CUDA "
                              f"device(s); allowed: cuda:0..cuda:{torch.cuda.device_count() - 1}, auto, cpu")
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(f"train.device='{spec}' but MPS is not available here; allowed here: auto, cpu")
    return device


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast region of a training step: none for fp32, bf16 or fp16 autocast on ``device``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A dynamic loss scaler for fp16 (gradients would underflow otherwise); a disabled pass-through otherwise.

    fp16 keeps only 5 exponent bits: small gradients flush to zero. The scaler multiplies the loss by S before
    backward, divides the gradients by S before the step, skips a step whose gradients hold inf/NaN and halves S,
    and doubles S after ``growth_interval`` clean steps (Micikevicius et al., 2018, "Mixed Precision Training").
    """
    enabled = precision == "fp16"
    if enabled and device.type == "cpu":
        log.warning("train.precision=fp16 on the CPU runs, but is slow and not what CPUs are good at; "
                    "prefer bf16 (or fp32) here")
    return torch.amp.GradScaler(device.type, enabled=enabled)


def use_channels_last(flag: bool | None, model: nn.Module) -> bool:
    """``train.channels_last`` for ``model``: the flag when given, else on when the model has a 2-D convolution."""
    if flag is not None:
        return flag
    return any(isinstance(m, nn.Conv2d) for m in model.modules())
