"""Small building blocks shared by the conv-net families."""

from __future__ import annotations

import torch
from torch import nn


class GlobalAvgPool(nn.Module):
    """Average over the spatial dimensions: ``[N, C, H, W] -> [N, C]`` (the ``pre_logits`` tap of conv nets)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial mean of ``x``: ``[N, C, H, W] -> [N, C]``."""
        return x.mean(dim=(2, 3))


def scaled_channels(base: int, multiplier: float) -> int:
    """``round(base * multiplier)``, at least 1: the channel count of a layer under a width multiplier."""
    return max(1, round(base * multiplier))
