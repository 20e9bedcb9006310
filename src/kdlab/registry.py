"""One tiny name -> factory registry, reused by models, losses, datasets and studies."""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return ' Did you mean 'x'?' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


class Registry(Generic[F]):
    """Maps names to factories; ``@REG.register("name")`` adds one.

    >>> MODELS = Registry("model")
    >>> @MODELS.register("mlp")
    ... def mlp(num_classes, in_shape, width=128): ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def add(factory: F) -> F:
            if name in self._items:
                raise KeyError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = factory
            return factory

        return add

    def get(self, name: str) -> F:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} '{name}'.{did_you_mean(name, self.names())} "
                f"Allowed: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def check_kwargs(self, name: str, kwargs: dict[str, Any], *, skip: tuple[str, ...] = ()) -> None:
        """Raise ConfigError if ``kwargs`` holds a key the factory does not accept."""
        factory = self.get(name)
        params = inspect.signature(factory).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        allowed = [p for p in params if p not in skip]
        for key in kwargs:
            if key not in params:
                raise ConfigError(
                    f"{self.kind} '{name}' has no option '{key}'.{did_you_mean(key, allowed)} "
                    f"Allowed: {', '.join(allowed) or '(none)'}"
                )
