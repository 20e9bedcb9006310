"""Names of the places in a model where forward hooks can read features."""

from __future__ import annotations

from torch import nn

from .base import KDModel


def list_taps(model: nn.Module) -> list[str]:
    """Tap names usable for feature KD.

    A kdlab model: its ``feature_taps`` names, shallow to deep (resolve one with
    ``model.get_submodule(model.feature_taps[name])``). Any other module: every named submodule path, containers
    and leaves, in ``named_modules`` order; each is directly a ``get_submodule`` path.
    """
    if isinstance(model, KDModel):
        return list(model.feature_taps)
    return [path for path, _ in model.named_modules() if path]
