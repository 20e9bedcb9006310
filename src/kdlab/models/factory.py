"""The model registry, the ``@register_model`` decorator and ``create_model``."""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable, Sequence
from typing import Any

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
