"""CIFAR-style ResNet (He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, section 4.2).

A 3x3 conv stem, then 3 stages of ``n`` basic blocks with ``16, 32, 64`` channels (times ``width``) at strides 1, 2, 2,
global average pooling and a linear head: ``depth = 6n + 2`` weighted layers. Inputs of any spatial size work
(28x28 -> 28, 14, 7; 32x32 -> 32, 16, 8; 8x8 -> 8, 4, 2).

Shortcuts: identity when the shape is unchanged; when a block changes the channel count or stride the shortcut is a
1x1 conv + BN projection (the paper's option B). The paper's CIFAR models use option A (zero-padded identity); B adds
2 small projections (+2,752 parameters on resnet20) and keeps every shortcut a module that hooks can see.

Capacity: about ``18 n (16 w)^2 (1 + 4 + 16)`` conv weights, i.e. linear in ``depth`` and quadratic in ``width``.
On 3x32x32, 10 classes: resnet8 78k, resnet20 272k, resnet56 0.86M, resnet110 1.7M; resnet20 with width 2 1.1M.

``resnet8x4`` and ``resnet32x4`` are the 4x-wide CIFAR-100 pair of the KD benchmarks (Tian, Krishnan, Isola,
"Contrastive Representation Distillation", ICLR 2020, Table 1, and the methods compared on it since): stages of
64, 128, 256 channels (``width=4``) after a 32-channel stem (2 x 16, not 4 x 16: the benchmark's definition).
On 3x32x32, 100 classes: resnet8x4 1.2M parameters, resnet32x4 7.4M.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .base import KDModel
from .checks import check_in_shape, check_int, check_multiplier, check_num_classes
from .factory import register_model
from .layers import GlobalAvgPool, scaled_channels
from .weight_init import init_conv_net

STAGE_CHANNELS = (16, 32, 64)
MIN_DEPTH, MAX_DEPTH = 8, 110


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus the shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the block, ``[N, out_channels, H / stride, W / stride]``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(KDModel):
    """Stem, stages (taps ``stage1``..``stage3``), global average pool (tap ``pre_logits``), linear head."""

    def __init__(self, num_classes: int, in_shape: Sequence[int], blocks_per_stage: int, width: float,
                 stem_channels: int | None = None) -> None:
        super().__init__(num_classes, in_shape)
        channels = [scaled_channels(c, width) for c in STAGE_CHANNELS]
        stem = stem_channels if stem_channels is not None else channels[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_shape[0], stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.ReLU()
        )
        stages = []
        fan_in = stem
        for i, out in enumerate(channels):
            blocks = [BasicBlock(fan_in if b == 0 else out, out, 2 if i > 0 and b == 0 else 1)
                      for b in range(blocks_per_stage)]
            stages.append(nn.Sequential(*blocks))
            fan_in = out
        self.stages = nn.Sequential(*stages)
        self.pool = GlobalAvgPool()
        self.head = nn.Linear(fan_in, num_classes)
        self.num_features = fan_in
        self.feature_taps = {"stage1": "stages.0", "stage2": "stages.1", "stage3": "stages.2", "pre_logits": "pool"}
        init_conv_net(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled output of stage 3, ``[N, num_features]``."""
        self.check_input(x, flat=False)
        return self.pool(self.stages(self.stem(x)))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]``."""
        return self.head(features)


def build_resnet(owner: str, num_classes: int, in_shape: Sequence[int], depth: int, width: float,
                 stem_channels: int | None = None) -> ResNet:
    """Validate the arguments and build a ResNet of ``depth`` layers (``6n + 2``)."""
    num_classes = check_num_classes(owner, num_classes)
    in_shape = check_in_shape(owner, in_shape, rank=3)
    width = check_multiplier(owner, "width", width)
    depth = check_int(owner, "depth", depth, MIN_DEPTH, MAX_DEPTH, step=6, offset=2,
                      allowed=f"6n+2 between {MIN_DEPTH} and {MAX_DEPTH}, e.g. 8, 14, 20, 32, 44, 56, 110")
    return ResNet(num_classes, in_shape, (depth - 2) // 6, width, stem_channels)


@register_model("resnet")
def resnet(num_classes: int, in_shape: Sequence[int], depth: int = 20, width: float = 1.0) -> ResNet:
    """CIFAR ResNet of ``depth = 6n+2`` layers (8..110) with ``width`` times 16/32/64 channels."""
    return build_resnet("model 'resnet'", num_classes, in_shape, depth, width)


@register_model("resnet8")
def resnet8(num_classes: int, in_shape: Sequence[int], width: float = 1.0) -> ResNet:
    """CIFAR ResNet-8 (1 block per stage)."""
    return build_resnet("model 'resnet8'", num_classes, in_shape, 8, width)


@register_model("resnet14")
def resnet14(num_classes: int, in_shape: Sequence[int], width: float = 1.0) -> ResNet:
    """CIFAR ResNet-14 (2 blocks per stage)."""
    return build_resnet("model 'resnet14'", num_classes, in_shape, 14, width)


@register_model("resnet20")
def resnet20(num_classes: int, in_shape: Sequence[int], width: float = 1.0) -> ResNet:
    """CIFAR ResNet-20 (3 blocks per stage)."""
    return build_resnet("model 'resnet20'", num_classes, in_shape, 20, width)


@register_model("resnet32")
def resnet32(num_classes: int, in_shape: Sequence[int], width: float = 1.0) -> ResNet:
    """CIFAR ResNet-32 (5 blocks per stage)."""
    return build_resnet("model 'resnet32'", num_classes, in_shape, 32, width)


@register_model("resnet44")
def resnet44(num_classes: int, in_shape: Sequence[int], width: float = 1.0) -> ResNet:
    """CIFAR ResNet-44 (7 blocks per stage)."""
    return build_resnet("model 'resnet44'", num_classes, in_shape, 44, width)


@register_model("resnet56")
def resnet56(num_classes: int, in_shape: Sequence[int], width: float = 1.0) -> ResNet:
    """CIFAR ResNet-56 (9 blocks per stage)."""
    return build_resnet("model 'resnet56'", num_classes, in_shape, 56, width)


@register_model("resnet110")
def resnet110(num_classes: int, in_shape: Sequence[int], width: float = 1.0) -> ResNet:
    """CIFAR ResNet-110 (18 blocks per stage)."""
    return build_resnet("model 'resnet110'", num_classes, in_shape, 110, width)


@register_model("resnet8x4")
def resnet8x4(num_classes: int, in_shape: Sequence[int]) -> ResNet:
    """CIFAR ResNet-8x4 of the KD benchmarks: 1 block per stage, stages 64/128/256, a 32-channel stem."""
    return build_resnet("model 'resnet8x4'", num_classes, in_shape, 8, 4.0, stem_channels=32)


@register_model("resnet32x4")
def resnet32x4(num_classes: int, in_shape: Sequence[int]) -> ResNet:
    """CIFAR ResNet-32x4 of the KD benchmarks: 5 blocks per stage, stages 64/128/256, a 32-channel stem."""
    return build_resnet("model 'resnet32x4'", num_classes, in_shape, 32, 4.0, stem_channels=32)
