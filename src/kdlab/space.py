"""A finite hyperparameter search space: candidate values per key, optional order constraints between keys.

Losses declare one beside their defaults (``ResponseLoss.search_space``, keys are the loss's options); a user's
``kdlab tune --space SPACE.yaml`` gives one over dotted run-config paths (``loss.temperature``, ``optim.lr``).
Either way a space is data: its grid is the product of the value lists in declared order, filtered by the
constraints, and a budget smaller than the grid is spent on a seeded random sample of it.

    >>> space = Space({"tau_gt": (1.0, 2.0, 4.0), "tau_other": (1.0, 2.0)}, require=("tau_gt > tau_other",))
    >>> space.grid()
    [{'tau_gt': 2.0, 'tau_other': 1.0}, {'tau_gt': 4.0, 'tau_other': 1.0}, {'tau_gt': 4.0, 'tau_other': 2.0}]
"""

from __future__ import annotations

import itertools
import operator
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .errors import ConfigError

#: The comparisons a constraint may use, e.g. ``tau_gt > tau_other`` (ATS's rule) or ``tau_gt == tau_other``
#: (its symmetric control).
COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt,
}


def parse_constraint(text: str, keys: tuple[str, ...] | list[str]) -> tuple[str, str, str]:
    """``"a > b"`` -> ("a", ">", "b"); both sides must be keys of the space. Raises ConfigError otherwise."""
    for symbol in sorted(COMPARISONS, key=len, reverse=True):  # '>=' before '>'
        left, sep, right = str(text).partition(symbol)
        if sep:
            left, right = left.strip(), right.strip()
            unknown = [side for side in (left, right) if side not in keys]
            if unknown:
                raise ConfigError(f"require '{text}': {', '.join(repr(u) for u in unknown)} is not a key of "
                                  f"the space; allowed keys: {', '.join(keys)}")
            return left, symbol, right
    raise ConfigError(f"require '{text}' is not allowed; write 'KEY OP KEY' with OP one of "
                      f"{', '.join(COMPARISONS)}, e.g. 'loss.tau_gt > loss.tau_other'")


def _short(value: Any) -> str:
    """A value as people read it: floats to 4 significant digits (1/24 -> 0.04167), anything else as is."""
    return format(value, ".4g") if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Space:
    """Candidate values per key (``values``) and constraints between keys (``require``, e.g. ``"a > b"``).

    The grid is the Cartesian product of the value lists, keys in declared order and each list in its order,
    keeping the points that satisfy every constraint. An empty space has one point, ``{}`` (the base config).
    """

    values: Mapping[str, tuple[Any, ...]]
    require: tuple[str, ...] = ()
    _constraints: tuple[tuple[str, str, str], ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = {str(k): tuple(v) for k, v in dict(self.values).items()}
        for key, options in values.items():
            if not options:
                raise ConfigError(f"space key '{key}' has no values; give at least one")
            if len(set(map(repr, options))) != len(options):
                raise ConfigError(f"space key '{key}' repeats a value: {list(options)}; give each value once")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "require", tuple(self.require))
        object.__setattr__(self, "_constraints", tuple(parse_constraint(r, list(values)) for r in self.require))
        if not self.grid():
            raise ConfigError(f"space {self.describe()} has no point that satisfies {', '.join(self.require)}")

    @property
    def keys(self) -> list[str]:
        return list(self.values)

    def satisfies(self, point: Mapping[str, Any]) -> bool:
        """True when ``point`` meets every constraint."""
        return all(COMPARISONS[op](point[a], point[b]) for a, op, b in self._constraints)

    def grid(self) -> list[dict[str, Any]]:
        """Every point, in product order (the last key varies fastest)."""
        keys = self.keys
        points = (dict(zip(keys, combo)) for combo in itertools.product(*(self.values[k] for k in keys)))
        return [p for p in points if self.satisfies(p)]

    def size(self) -> int:
        """The number of grid points."""
        return len(self.grid())

    def contains(self, point: Mapping[str, Any]) -> bool:
        """True when ``point`` (values for exactly this space's keys) is a grid point."""
        return set(point) == set(self.values) and dict(point) in self.grid()

    def sample(self, n: int, seed: int) -> list[dict[str, Any]]:
        """``n`` distinct grid points drawn uniformly without replacement with ``random.Random(seed)``, in grid
        order; the same (n, seed) always gives the same points. Raises ValueError when n exceeds the grid."""
        grid = self.grid()
        if not 0 <= n <= len(grid):
            raise ValueError(f"cannot sample {n} of the {len(grid)} points of {self.describe()}")
        chosen = sorted(random.Random(seed).sample(range(len(grid)), n))
        return [grid[i] for i in chosen]

    def points(self, budget: int, seed: int) -> list[dict[str, Any]]:
        """The points a budget of ``budget`` trials visits: the whole grid when it fits, else ``sample(budget,
        seed)`` (seeded random search)."""
        if budget < 1:
            raise ConfigError(f"trials={budget} is not allowed; must be >= 1")
        grid = self.grid()
        return grid if len(grid) <= budget else self.sample(budget, seed)

    def prefixed(self, prefix: str) -> "Space":
        """The same space with every key (and constraint) under ``prefix.``, e.g. a loss's space as run-config
        paths (``temperature`` -> ``loss.temperature``)."""
        rename = {k: f"{prefix}.{k}" for k in self.values}
        return Space({rename[k]: v for k, v in self.values.items()},
                     tuple(f"{rename[a]} {op} {rename[b]}" for a, op, b in self._constraints))

    def describe(self) -> str:
        """One line: ``temperature [1, 2] x alpha [0.5, 0.9] where ...`` (or ``(no hyperparameters)``)."""
        if not self.values:
            return "(no hyperparameters)"
        text = " x ".join(f"{k} [{', '.join(_short(x) for x in v)}]" for k, v in self.values.items())
        return text + (f" where {' and '.join(self.require)}" if self.require else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, read back by :meth:`from_dict`: ``{"values": {key: [..]}, "require": [..]}``."""
        return {"values": {k: list(v) for k, v in self.values.items()}, "require": list(self.require)}

    @classmethod
    def from_dict(cls, raw: Any, source: str = "space") -> "Space":
        """A space from ``{"values": {key: [..] or nested sections}, "require": ["a > b", ..]}``.

        Nested sections are flattened to dotted keys (``{loss: {temperature: [1, 2]}}`` is
        ``loss.temperature``). Every failure is a ConfigError naming ``source``, the key and what is allowed.
        """
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source} must be a mapping with 'values' (and optionally 'require'), "
                              f"got {type(raw).__name__}")
        unknown = sorted(set(raw) - {"values", "require"})
        if unknown:
            raise ConfigError(f"{source}: unknown key '{unknown[0]}'. Allowed keys here: values, require")
        if "values" not in raw or not isinstance(raw["values"], Mapping):
            raise ConfigError(f"{source}: missing 'values', a mapping of config keys to lists of values, e.g. "
                              "values: {loss.temperature: [1, 2, 4]}")
        flat: dict[str, tuple[Any, ...]] = {}

        def walk(node: Mapping[str, Any], prefix: str) -> None:
            for key, value in node.items():
                path = f"{prefix}{key}"
                if isinstance(value, Mapping):
                    walk(value, f"{path}.")
                elif isinstance(value, list):
                    flat[path] = tuple(value)
                else:
                    raise ConfigError(f"{source}: values.{path}={value!r} is not allowed; must be a list of "
                                      "candidate values (or a section of them)")

        walk(raw["values"], "")
        require = raw.get("require") or []
        if not isinstance(require, list) or not all(isinstance(r, str) for r in require):
            raise ConfigError(f"{source}: require={require!r} is not allowed; must be a list of 'KEY OP KEY' strings")
        try:
            return cls(flat, tuple(require))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
