"""Wide ResNet (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016).

A 3x3 conv stem with 16 channels, 3 groups of ``n = (depth - 4) / 6`` pre-activation basic blocks with ``16k, 32k, 64k``
channels (``k = widen_factor``) at strides 1, 2, 2, a final BN-ReLU, global average pooling and a linear head.
A block is BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3; when it changes the channel count or stride its shortcut is a 1x1
conv applied to the block's first BN-ReLU output, otherwise the identity. WRN-d-k names depth d and widen factor k.

Capacity: about ``18 n (16 k)^2 (1 + 4 + 16)`` conv weights, i.e. linear in ``depth`` and quadratic in
``widen_factor``. On 3x32x32, 10 classes: wrn_16_1 0.18M, wrn_16_2 0.69M, wrn_40_1 0.56M, wrn_40_2 2.2M.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .base import KDModel
from .checks import check_in_shape, check_int, check_num_classes, check_probability
from .factory import register_model
from .layers import GlobalAvgPool
from .weight_init import init_conv_net

STEM_CHANNELS = 16
GROUP_CHANNELS = (16, 32, 64)
MIN_DEPTH = 10


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3 plus the shortcut (no activation after the sum)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the block, ``[N, out_channels, H / stride, W / stride]``."""
        activated = F.relu(self.bn1(x))
        out = self.conv1(activated)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        # a projection sees the normalised input, as the projected path must match the residual path's scale
        return out + (x if self.shortcut is None else self.shortcut(activated))


class WideResNet(KDModel):
    """Stem, groups (taps ``stage1``..``stage3``), BN-ReLU, global average pool (tap ``pre_logits``), linear head."""

    def __init__(self, num_classes: int, in_shape: Sequence[int], blocks_per_group: int, widen_factor: int,
                 dropout: float) -> None:
        super().__init__(num_classes, in_shape)
        self.stem = nn.Conv2d(in_shape[0], STEM_CHANNELS, 3, padding=1, bias=False)
        stages = []
        fan_in = STEM_CHANNELS
        for i, base in enumerate(GROUP_CHANNELS):
            out = base * widen_factor
            blocks = [PreActBlock(fan_in if b == 0 else out, out, 2 if i > 0 and b == 0 else 1, dropout)
                      for b in range(blocks_per_group)]
            stages.append(nn.Sequential(*blocks))
            fan_in = out
        self.stages = nn.Sequential(*stages)
        self.norm = nn.BatchNorm2d(fan_in)
        self.pool = GlobalAvgPool()
        self.head = nn.Linear(fan_in, num_classes)
        self.num_features = fan_in
        self.feature_taps = {"stage1": "stages.0", "stage2": "stages.1", "stage3": "stages.2", "pre_logits": "pool"}
        init_conv_net(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled, batch-normalised and rectified output of group 3, ``[N, num_features]``."""
        self.check_input(x, flat=False)
        x = self.stages(self.stem(x))
        return self.pool(F.relu(self.norm(x)))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]``."""
        return self.head(features)


def build_wrn(owner: str, num_classes: int, in_shape: Sequence[int], depth: int, widen_factor: int,
              dropout: float) -> WideResNet:
    """Validate the arguments and build a WRN-``depth``-``widen_factor``."""
    num_classes = check_num_classes(owner, num_classes)
    in_shape = check_in_shape(owner, in_shape, rank=3)
    depth = check_int(owner, "depth", depth, MIN_DEPTH, step=6, offset=4,
                      allowed=f"6n+4 >= {MIN_DEPTH}, e.g. 10, 16, 22, 28, 40")
    widen_factor = check_int(owner, "widen_factor", widen_factor, minimum=1)
    dropout = check_probability(owner, "dropout", dropout)
    return WideResNet(num_classes, in_shape, (depth - 4) // 6, widen_factor, dropout)


@register_model("wrn")
def wrn(num_classes: int, in_shape: Sequence[int], depth: int = 16, widen_factor: int = 1,
        dropout: float = 0.0) -> WideResNet:
    """Wide ResNet of ``depth = 6n+4`` layers with channels 16, 16k, 32k, 64k (``k = widen_factor``)."""
    return build_wrn("model 'wrn'", num_classes, in_shape, depth, widen_factor, dropout)


@register_model("wrn_16_1")
def wrn_16_1(num_classes: int, in_shape: Sequence[int], dropout: float = 0.0) -> WideResNet:
    """WRN-16-1: 2 blocks per group, channels 16, 16, 32, 64."""
    return build_wrn("model 'wrn_16_1'", num_classes, in_shape, 16, 1, dropout)


@register_model("wrn_16_2")
def wrn_16_2(num_classes: int, in_shape: Sequence[int], dropout: float = 0.0) -> WideResNet:
    """WRN-16-2: 2 blocks per group, channels 16, 32, 64, 128."""
    return build_wrn("model 'wrn_16_2'", num_classes, in_shape, 16, 2, dropout)


@register_model("wrn_40_1")
def wrn_40_1(num_classes: int, in_shape: Sequence[int], dropout: float = 0.0) -> WideResNet:
    """WRN-40-1: 6 blocks per group, channels 16, 16, 32, 64."""
    return build_wrn("model 'wrn_40_1'", num_classes, in_shape, 40, 1, dropout)


@register_model("wrn_40_2")
def wrn_40_2(num_classes: int, in_shape: Sequence[int], dropout: float = 0.0) -> WideResNet:
    """WRN-40-2: 6 blocks per group, channels 16, 32, 64, 128."""
    return build_wrn("model 'wrn_40_2'", num_classes, in_shape, 40, 2, dropout)
