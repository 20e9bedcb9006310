"""The model registry, the ``@register_model`` decorator, ``create_model``, and ``model_from_spec`` (any kdlab
model, derived architectures included, rebuilt from its spec)."""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from ..errors import ConfigError
from ..registry import Registry
from .base import KDModel

MODELS: Registry[Callable[..., KDModel]] = Registry("model")


def _plain(value: Any) -> Any:
    """Turn a factory argument into plain JSON data (numpy ints -> int, tuples -> lists) for ``spec``."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def register_model(name: str) -> Callable[[Callable[..., KDModel]], Callable[..., KDModel]]:
    """Register ``factory(num_classes, in_shape, **capacity)`` under ``name`` and make it record ``model.spec``.

    The spec holds every argument including defaults, so ``create_model(**model.spec)`` rebuilds the same
    architecture even if a default changes later.
    """

    def add(factory: Callable[..., KDModel]) -> Callable[..., KDModel]:
        signature = inspect.signature(factory)

        @functools.wraps(factory)
        def build(*args: Any, **kwargs: Any) -> KDModel:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            model = factory(*bound.args, **bound.kwargs)
            arguments = dict(bound.arguments)
            model.spec = {
                "name": name,
                "num_classes": _plain(arguments.pop("num_classes")),
                "in_shape": _plain(list(arguments.pop("in_shape"))),
                **{key: _plain(value) for key, value in arguments.items()},
            }
            return model

        MODELS.register(name)(build)
        return build

    return add


def create_model(name: str, num_classes: int, in_shape: Sequence[int], **capacity: Any) -> KDModel:
    """Build the registered model ``name``; raise ConfigError for an unknown name, option or impossible value."""
    if not isinstance(name, str):
        raise ConfigError(f"model name={name!r} is not allowed. Allowed: {', '.join(MODELS.names())}")
    factory = MODELS.get(name)
    MODELS.check_kwargs(name, capacity, skip=("num_classes", "in_shape"))
    return factory(num_classes, in_shape, **capacity)


# A derived architecture (a structured-pruned or low-rank model) has the spec of its source under a marker key plus
# what was changed; the module that derives it registers how to rebuild it (kdlab.compress: "pruned_from",
# "lowrank_from"), so this layer rebuilds any kdlab model without importing the layers that derive them.
SPEC_BUILDERS: dict[str, Callable[[dict[str, Any]], nn.Module]] = {}


def register_spec_builder(marker: str) -> Callable[[Callable[[dict[str, Any]], nn.Module]],
                                                   Callable[[dict[str, Any]], nn.Module]]:
    """Register ``builder(spec) -> model`` for specs that hold the key ``marker`` (e.g. ``"pruned_from"``)."""

    def add(builder: Callable[[dict[str, Any]], nn.Module]) -> Callable[[dict[str, Any]], nn.Module]:
        if marker in SPEC_BUILDERS and SPEC_BUILDERS[marker] is not builder:
            raise ValueError(f"a spec builder for '{marker}' is already registered")
        SPEC_BUILDERS[marker] = builder
        return builder

    return add


def model_from_spec(spec: dict[str, Any]) -> nn.Module:
    """The architecture of a kdlab model from its ``spec`` (weights are placeholders: load them).

    A plain spec goes to :func:`create_model`; a derived one (it holds a registered marker key) to its builder.
    """
    for marker, builder in SPEC_BUILDERS.items():
        if marker in spec:
            return builder(spec)
    unknown = sorted(key for key in spec if key.endswith("_from"))
    if unknown:
        raise ConfigError(f"model spec key '{unknown[0]}' marks a derived architecture with no registered builder; "
                          f"import the module that derives it first (kdlab.compress for pruned_from and "
                          f"lowrank_from). Registered: {', '.join(sorted(SPEC_BUILDERS)) or 'none'}")
    return create_model(**spec)
