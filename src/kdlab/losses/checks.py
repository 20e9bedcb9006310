"""Hyperparameter validation shared by every loss: one place, one message format.

Every check returns the value in its JSON-able form (``float``, ``int`` or ``bool``) so a loss can store it in
``hyperparams`` directly, and raises ``ConfigError`` that names the loss, the key, the value and what is allowed:

    loss 'kd': temperature=-1 is not allowed; must be > 0
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..errors import ConfigError


def _fail(loss: str, key: str, value: Any, rule: str) -> ConfigError:
    return ConfigError(f"loss '{loss}': {key}={value!r} is not allowed; must be {rule}")


def _finite_number(loss: str, key: str, value: Any, rule: str) -> float:
    # bool is an int subclass: `alpha=True` is a typo, not 1.0
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise _fail(loss, key, value, f"a finite number {rule}")
    return float(value)


def check_positive(loss: str, key: str, value: Any) -> float:
    """A finite number > 0 (temperatures)."""
    number = _finite_number(loss, key, value, "> 0")
    if not number > 0:
        raise _fail(loss, key, value, "> 0")
    return number


def check_non_negative(loss: str, key: str, value: Any) -> float:
    """A finite number >= 0 (loss weights that may exceed 1, such as DKD's beta=8).

    Message: ``loss 'dkd': beta=-1 is not allowed; must be >= 0``.
    """
    number = _finite_number(loss, key, value, ">= 0")
    if number < 0:
        raise _fail(loss, key, value, ">= 0")
    return number


def check_unit_interval(loss: str, key: str, value: Any, *, include_one: bool = True) -> float:
    """A number in [0, 1] (loss weights), or in [0, 1) with ``include_one=False`` (label smoothing)."""
    rule = "in [0, 1]" if include_one else "in [0, 1)"
    number = _finite_number(loss, key, value, rule)
    if not (0.0 <= number <= 1.0) or (number == 1.0 and not include_one):
        raise _fail(loss, key, value, rule)
    return number


def check_int(loss: str, key: str, value: Any, *, minimum: int) -> int:
    """An integer >= ``minimum`` (grid sizes). A float such as 16.0 is refused: configs should say 16."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _fail(loss, key, value, f"an integer >= {minimum}")
    if value < minimum:
        raise _fail(loss, key, value, f">= {minimum}")
    return int(value)


def check_bool(loss: str, key: str, value: Any) -> bool:
    """true or false; strings such as "yes" and numbers are refused."""
    if not isinstance(value, bool):
        raise _fail(loss, key, value, "true or false")
    return value


def check_choice(loss: str, key: str, value: Any, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (a string option such as logit_std's ``std``)."""
    if not isinstance(value, str) or value not in choices:
        raise _fail(loss, key, value, f"one of {', '.join(choices)}")
    return value


def check_not_below(loss: str, key: str, value: float, low_key: str, low: float) -> None:
    """``value >= low`` for two already-checked numbers, e.g. tau_max >= tau_min."""
    if value < low:
        raise _fail(loss, key, value, f">= {low_key}={low!r}")
