"""Auxiliary classifiers on intermediate taps, for deep-supervision self-distillation (BYOT).

Zhang, Song, Gao, Chen, Bao, Ma, "Be Your Own Teacher: Improve the Performance of Convolutional Neural Networks via
Self Distillation", ICCV 2019, Sec. 3.1: the network is cut into sections after its blocks; each shallow section gets
a *bottleneck* (which also maps its feature to the size of the deepest feature, for the hint loss) and a fully
connected classifier. The heads train with the network and are thrown away (or kept for early exits) afterwards.

kdlab's head, for a tap output ``h`` of shape [C, H, W] or [C]:

    pooled  = mean over H, W of h                  (global average pool; vectors pass through)
    feature = ReLU(W_b pooled + b_b)               bottleneck C -> D, D = the deepest feature's width
    logits  = W_c feature + b_c                    linear D -> K

The paper's bottleneck is convolutional and runs before the pooling; pooling first costs H*W times less and keeps
the head small next to the tiny students kdlab trains on CPU. The ReLU puts the bottleneck output in the range of
the deepest feature it is compared with (kdlab models' ``pre_logits`` come after a ReLU and an average pool). No
batch norm: the last batch of an epoch may hold a single sample.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..errors import ConfigError


class AuxiliaryHead(nn.Module):
    """Pool -> bottleneck (linear + ReLU) -> linear classifier; ``forward(h) -> (feature [N, D], logits [N, K])``."""

    def __init__(self, in_shape: Sequence[int], feature_dim: int, num_classes: int) -> None:
        super().__init__()
        shape = tuple(int(v) for v in in_shape)
        if len(shape) not in (1, 3):
            raise ConfigError(f"an auxiliary head reads a feature map [C, H, W] or a vector [D]; got a tap of shape "
                              f"{list(shape)}")
        self.in_shape = shape
        self.bottleneck = nn.Sequential(nn.Linear(shape[0], feature_dim), nn.ReLU())
        self.classifier = nn.Linear(feature_dim, num_classes)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        pooled = h.mean(dim=(2, 3)) if h.dim() == 4 else h.flatten(1)
        feature = self.bottleneck(pooled)
        return feature, self.classifier(feature)

    def extra_repr(self) -> str:
        return f"in_shape={list(self.in_shape)}"


def head_key(tap: str) -> str:
    """The key of ``tap``'s head in :func:`make_aux_heads`' ModuleDict."""
    return tap.replace(".", "_")


def make_aux_heads(tap_shapes: dict[str, tuple[int, ...]], feature_dim: int, num_classes: int) -> nn.ModuleDict:
    """One :class:`AuxiliaryHead` per tap (tap -> shape without the batch dim), in the given order.

    Module names cannot hold dots, so a module-path tap ``stages.0`` is stored under ``stages_0``.
    """
    return nn.ModuleDict({head_key(tap): AuxiliaryHead(shape, feature_dim, num_classes)
                          for tap, shape in tap_shapes.items()})
