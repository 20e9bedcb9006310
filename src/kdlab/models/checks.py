"""Validation of model arguments: each check returns the clean value or raises a ConfigError naming the option,
the value and what is allowed."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError
from ..registry import did_you_mean


def config_error(owner: str, key: str, value: Any, allowed: str) -> ConfigError:
    """Build the uniform error: ``model 'resnet': depth=21 is not allowed. Allowed: ...``."""
    return ConfigError(f"{owner}: {key}={value!r} is not allowed. Allowed: {allowed}")


def _is_int(value: Any) -> bool:
    # bool is an int subclass, but `depth: true` in a YAML file is a mistake, not a depth of 1.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(owner: str, key: str, value: Any, minimum: int, maximum: int | None = None, *,
              step: int = 1, offset: int = 0, allowed: str | None = None) -> int:
    """Return ``value`` as an int in ``[minimum, maximum]`` equal to ``offset`` modulo ``step``.

    ``allowed`` replaces the generated description of the allowed values in the error message.
    """
    upper = "" if maximum is None else f" and <= {maximum}"
    if (not _is_int(value) or value < minimum or (maximum is not None and value > maximum)
            or (value - offset) % step != 0):
        raise config_error(owner, key, value, allowed or f"an integer >= {minimum}{upper}")
    return int(value)


def check_multiplier(owner: str, key: str, value: Any) -> float:
    """Return ``value`` as a finite float > 0 (a channel multiplier)."""
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise config_error(owner, key, value, "a finite number > 0 (e.g. 0.5, 1.0, 2.0)")
    return float(value)


def check_probability(owner: str, key: str, value: Any) -> float:
    """Return ``value`` as a float in ``[0, 1)`` (a dropout rate)."""
    if not _is_real(value) or not 0.0 <= value < 1.0:
        raise config_error(owner, key, value, "a number in [0, 1)")
    return float(value)


def check_bool(owner: str, key: str, value: Any) -> bool:
    """Return ``value`` if it is a bool."""
    if not isinstance(value, bool):
        raise config_error(owner, key, value, "true or false")
    return value


def check_choice(owner: str, key: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``; suggest the closest spelling otherwise."""
    if not isinstance(value, str) or value not in choices:
        hint = did_you_mean(value, list(choices)) if isinstance(value, str) else ""
        raise config_error(owner, key, value, f"{', '.join(choices)}.{hint}".rstrip("."))
    return value


def check_num_classes(owner: str, value: Any) -> int:
    """Return the number of classes as an int >= 2."""
    return check_int(owner, "num_classes", value, minimum=2)


def check_in_shape(owner: str, value: Any, rank: int | None = None) -> tuple[int, ...]:
    """Return the per-sample input shape as a tuple of positive ints, of length ``rank`` when given."""
    if rank == 3:
        allowed = "(channels, height, width) of positive integers, e.g. (1, 28, 28) or (3, 32, 32)"
    else:
        allowed = "a non-empty sequence of positive integers, e.g. (784,) or (1, 28, 28)"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise config_error(owner, "in_shape", value, allowed)
    dims = tuple(value)
    if not dims or (rank is not None and len(dims) != rank) or not all(_is_int(d) and d >= 1 for d in dims):
        raise config_error(owner, "in_shape", value, allowed)
    return tuple(int(d) for d in dims)
