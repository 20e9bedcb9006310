"""One entry point from a config's model section to a model: kdlab's registry (``{name: ..., **capacity}``) or an
external source (``{source: python|huggingface|timm|torchvision, ...}``, :mod:`kdlab.models.external`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from ..errors import ConfigError
from ..registry import did_you_mean
from .external import build_external, check_external
from .factory import MODELS, create_model


def build_model(section: dict[str, Any], num_classes: int, in_shape: Sequence[int], key: str = "model") -> nn.Module:
    """The model of a config's model section (a dict: ``Component.as_dict()`` or ``ExternalModel.as_dict()``)."""
    if "source" in section:
        return build_external(section, num_classes, in_shape, key)
    options = {k: v for k, v in section.items() if k != "name"}
    return create_model(section["name"], num_classes, in_shape, **options)


def check_model(section: dict[str, Any], key: str = "model") -> None:
    """Check a model section without building it (registry name and options, or the external source)."""
    if "source" in section:
        check_external(section, key)
        return
    name = section.get("name")
    if name not in MODELS:
        raise ConfigError(f"{key}.name='{name}' is not allowed.{did_you_mean(str(name), MODELS.names())} "
                          f"Allowed: {', '.join(MODELS.names())}")
    try:
        MODELS.check_kwargs(name, {k: v for k, v in section.items() if k != "name"}, skip=("num_classes", "in_shape"))
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None
