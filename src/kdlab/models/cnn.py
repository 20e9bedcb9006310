"""Small VGG-style conv net (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015, in miniature) for 28x28, 32x32 and 8x8 inputs.

Stage i (from 0) has ``round(32 * 2**i * width)`` channels and ``convs_per_stage`` 3x3 conv-BN-ReLU layers, then a 2x2
max-pool while both spatial sides are >= 2; global average pooling, dropout and a linear head follow.

Capacity: the conv weights dominate, ``9 * sum_i c_(i-1) c_i`` with ``c_i = 32 * 2**i * width``, so parameters grow
about quadratically in ``width`` and about 4x per extra stage (channels double). On 1x28x28 inputs, 10 classes:
depth 2 width 1 -> 20k, depth 3 width 1 -> 94k, depth 3 width 2 -> 0.37M, depth 4 width 2 -> 1.5M parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import KDModel
from .checks import (check_bool, check_in_shape, check_int, check_multiplier, check_num_classes,
                     check_probability)
from .factory import register_model
from .layers import GlobalAvgPool, scaled_channels
from .weight_init import init_conv_net

BASE_CHANNELS = 32
MAX_DEPTH = 6


class CNN(KDModel):
    """Conv stages (taps ``stage1``..``stageK``), global average pool (tap ``pre_logits``), dropout, linear head.

    Convs carry a bias only when there is no batch norm after them (BN's shift makes a bias redundant).
    """

    def __init__(self, num_classes: int, in_shape: Sequence[int], channels: Sequence[int], convs_per_stage: int,
                 dropout: float, batch_norm: bool) -> None:
        super().__init__(num_classes, in_shape)
        fan_in, height, width = in_shape
        stages = []
        for out in channels:
            layers: list[nn.Module] = []
            for _ in range(convs_per_stage):
                layers.append(nn.Conv2d(fan_in, out, kernel_size=3, padding=1, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(out))
                # not in-place: a forward hook on a tap must keep the value it saw
                layers.append(nn.ReLU())
                fan_in = out
            if height >= 2 and width >= 2:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = GlobalAvgPool()
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(fan_in, num_classes)
        self.num_features = fan_in
        self.feature_taps = {f"stage{i + 1}": f"stages.{i}" for i in range(len(stages))}
        self.feature_taps["pre_logits"] = "pool"
        init_conv_net(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled output of the last stage, ``[N, num_features]``."""
        self.check_input(x, flat=False)
        return self.pool(self.stages(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]``."""
        return self.head(self.dropout(features))


@register_model("cnn")
def cnn(num_classes: int, in_shape: Sequence[int], width: float = 1.0, depth: int = 2, convs_per_stage: int = 1,
        dropout: float = 0.0, batch_norm: bool = True) -> CNN:
    """VGG-style CNN with ``depth`` stages (1..6) of ``convs_per_stage`` convs; ``width`` multiplies 32, 64, 128..."""
    owner = "model 'cnn'"
    num_classes = check_num_classes(owner, num_classes)
    in_shape = check_in_shape(owner, in_shape, rank=3)
    width = check_multiplier(owner, "width", width)
    depth = check_int(owner, "depth", depth, minimum=1, maximum=MAX_DEPTH)
    convs_per_stage = check_int(owner, "convs_per_stage", convs_per_stage, minimum=1)
    dropout = check_probability(owner, "dropout", dropout)
    batch_norm = check_bool(owner, "batch_norm", batch_norm)
    channels = [scaled_channels(BASE_CHANNELS * 2**i, width) for i in range(depth)]
    return CNN(num_classes, in_shape, channels, convs_per_stage, dropout, batch_norm)
