"""Finding and swapping submodules: what pruning and low-rank factorisation both need."""

from __future__ import annotations

from torch import nn


def classifier_head(model: nn.Module, include: tuple[type[nn.Module], ...]) -> nn.Module | None:
    """The classifier head: ``model.head`` when the model has one (every kdlab model), else the last layer of an
    included type in definition order (the classifier of a plain ``nn.Sequential``)."""
    head = getattr(model, "head", None)
    if isinstance(head, nn.Module):
        return head
    last = None
    for module in model.modules():
        if isinstance(module, include):
            last = module
    return last


def replace_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    """Put ``module`` at dotted ``path`` (e.g. ``stages.1.0``) inside ``model``."""
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)
