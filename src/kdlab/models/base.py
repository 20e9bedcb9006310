"""The contract every kdlab model follows, so that any model can be the teacher or the student."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


class KDModel(nn.Module):
    """Base class of every kdlab model.

    Attributes:
        spec: ``{"name", "num_classes", "in_shape", **capacity}``; ``create_model(**spec)`` rebuilds the same
            architecture. Filled in by the registered factory (see :func:`kdlab.models.factory.register_model`).
        feature_taps: tap name -> module path inside the model (for ``get_submodule`` and forward hooks),
            ordered shallow to deep. Every kdlab model has a last tap ``"pre_logits"`` whose module outputs
            exactly ``forward_features(x)``.
        num_features: width of ``forward_features``' output.
        num_classes: number of logits.
        in_shape: shape of one input sample, e.g. ``(1, 28, 28)``.
    """

    def __init__(self, num_classes: int, in_shape: Sequence[int]) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_shape = tuple(in_shape)
        self.spec: dict[str, Any] = {}
        self.feature_taps: dict[str, str] = {}
        self.num_features = 0

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch ``[N, *in_shape]`` to the penultimate representation ``[N, num_features]``."""
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Map features ``[N, num_features]`` to logits ``[N, num_classes]``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]`` of a batch ``[N, *in_shape]``."""
        return self.forward_head(self.forward_features(x))

    def check_input(self, x: torch.Tensor, *, flat: bool) -> None:
        """Raise ValueError unless ``x`` is a batch this model can read.

        ``flat=True`` (an MLP): any batch whose samples hold ``prod(in_shape)`` values. ``flat=False`` (a conv net):
        ``[N, C, H, W]`` with ``C == in_shape[0]``; the spatial size may differ from ``in_shape``.
        """
        if flat:
            ok = x.dim() >= 2 and math.prod(x.shape[1:]) == math.prod(self.in_shape)
            expected = f"[N, {', '.join(map(str, self.in_shape))}] (or any [N, ...] holding {math.prod(self.in_shape)} values)"
        else:
            ok = x.dim() == 4 and x.shape[1] == self.in_shape[0]
            expected = f"[N, {self.in_shape[0]}, H, W]"
        if not ok:
            raise ValueError(
                f"{type(self).__name__}: input x of shape {list(x.shape)} is not allowed; "
                f"this model (in_shape={list(self.in_shape)}) expects {expected}"
            )
