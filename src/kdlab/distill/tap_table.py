"""Every place a feature term can read in a model, with the shape it gives: what ``kdlab models taps`` prints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .hooks import FeatureTaps


def tap_table(model: nn.Module, in_shape: Sequence[int]) -> list[dict[str, Any]]:
    """Rows ``{"tap", "path", "module", "shape", "named"}``: the model's named taps first (kdlab models), then every
    module path in ``named_modules`` order. ``shape`` is the output shape without the batch dim from one forward
    pass of two all-zero samples (eval mode, no gradients, train/eval flags restored, global random state
    untouched), or None for a module the forward pass does not call (a ModuleList, an unused branch).
    """
    named = dict(getattr(model, "feature_taps", {}) or {})
    paths = [path for path, _ in model.named_modules() if path]
    taps = list(named) + [p for p in paths if p not in named]
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad(), FeatureTaps(model, taps) as captured:
            model(torch.zeros(2, *(int(v) for v in in_shape), dtype=dtype))
            shapes = {tap: list(captured.features[tap].shape[1:]) if tap in captured.features else None
                      for tap in taps}
    finally:
        for module, training in modes.items():
            module.training = training
    rows = []
    for tap in taps:
        path = named.get(tap, tap)
        rows.append({"tap": tap, "path": path, "module": type(model.get_submodule(path)).__name__,
                     "shape": shapes[tap], "named": tap in named})
    return rows
