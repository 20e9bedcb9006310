"""Multi-layer perceptron: the BN-free family (a linear classifier at depth 0).

Capacity: with input size D (``prod(in_shape)``), C classes, ``depth`` hidden layers of ``width`` units the model has
``(D + 1) w + (depth - 1)(w + 1) w + (w + 1) C`` parameters (``(D + 1) C`` at depth 0): linear in ``width`` at
depth 1, quadratic in ``width`` from depth 2, linear in ``depth``. On 28x28 inputs, 10 classes, depth 2:
width 32 -> 26.5k, 256 -> 270k, 2048 -> 5.8M parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .base import KDModel
from .checks import check_choice, check_in_shape, check_int, check_num_classes, check_probability, config_error
from .factory import register_model

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class MLP(KDModel):
    """Flatten, then hidden layers (Linear + activation, dropout between them), then a linear head.

    Taps ``hidden1``..``hiddenK`` are the activations of the hidden layers (before dropout); ``pre_logits`` is the
    last of them (the flattened input at depth 0).
    """

    def __init__(self, num_classes: int, in_shape: Sequence[int], widths: Sequence[int], dropout: float,
                 activation: str) -> None:
        super().__init__(num_classes, in_shape)
        self.flatten = nn.Flatten(start_dim=1)
        layers = []
        fan_in = math.prod(in_shape)
        for width in widths:
            layers.append(nn.Sequential(nn.Linear(fan_in, width), ACTIVATIONS[activation]()))
            fan_in = width
        self.hidden = nn.ModuleList(layers)
        self.pre_logits = nn.Identity()
        # dropout acts on hidden activations only, never on the raw input of a linear classifier
        self.dropout = nn.Dropout(dropout) if widths else nn.Identity()
        self.head = nn.Linear(fan_in, num_classes)
        self.num_features = fan_in
        self.feature_taps = {f"hidden{i + 1}": f"hidden.{i}" for i in range(len(layers))}
        self.feature_taps["pre_logits"] = "pre_logits"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden activations of the last layer, ``[N, num_features]``."""
        self.check_input(x, flat=True)
        x = self.flatten(x)
        for i, layer in enumerate(self.hidden):
            x = layer(self.dropout(x) if i > 0 else x)
        return self.pre_logits(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]``."""
        return self.head(self.dropout(features))


@register_model("mlp")
def mlp(num_classes: int, in_shape: Sequence[int], width: int = 256, depth: int = 2, dropout: float = 0.0,
        activation: str = "relu", widths: Sequence[int] | None = None) -> MLP:
    """MLP with ``depth`` hidden layers of ``width`` units, or the explicit hidden sizes ``widths`` (which then
    override ``width`` and ``depth``; ``[]`` is a linear classifier)."""
    owner = "model 'mlp'"
    num_classes = check_num_classes(owner, num_classes)
    in_shape = check_in_shape(owner, in_shape)
    width = check_int(owner, "width", width, minimum=1)
    depth = check_int(owner, "depth", depth, minimum=0)
    dropout = check_probability(owner, "dropout", dropout)
    activation = check_choice(owner, "activation", activation, list(ACTIVATIONS))
    if widths is None:
        hidden = [width] * depth
    else:
        if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
            raise config_error(owner, "widths", widths, "a list of positive integers (hidden sizes), or null")
        hidden = [check_int(owner, f"widths[{i}]", w, minimum=1) for i, w in enumerate(widths)]
    return MLP(num_classes, in_shape, hidden, dropout, activation)
