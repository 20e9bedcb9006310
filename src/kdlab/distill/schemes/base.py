"""The scheme registry and what every scheme shares: option validation, the check against the rest of a run's
config, building the objective, and helpers for the models a scheme trains besides the student.

A scheme registers itself here (``SCHEMES.register(name)(Scheme(...))``) when its module is imported; the package
``kdlab.distill.schemes`` imports every scheme module, so the registry is complete whenever the package is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic import create_model as create_pydantic_model
from torch import nn

from ...batch import Inputs
from ...config import RunConfig, Section, parse_config
from ...errors import ConfigError
from ...losses import ResponseLoss
from ...losses import build as build_loss
from ...models import MODELS, create_model
from ...registry import Registry
from ..objective import Objective


@dataclass(frozen=True)
class Scheme:
    """A registered scheme: its options schema, a check that needs no model, and the objective builder."""

    options: type[BaseModel]
    check: Callable[[RunConfig, Any], None]
    build: Callable[..., Objective]


SCHEMES: Registry[Any] = Registry("scheme")


def scheme_options(cfg: RunConfig) -> Any:
    """The validated options of ``cfg.scheme`` (ConfigError naming ``scheme.<key>``)."""
    assert cfg.scheme is not None
    name = cfg.scheme.name
    if name == "ban":
        raise ConfigError("scheme.name='ban' is not a single run: born-again networks are a chain of runs; use "
                          "kdlab.distill.schemes.ban.born_again(cfg, generations, store) or the kinds study")
    try:
        scheme = SCHEMES.get(name)
    except ConfigError as exc:
        raise ConfigError(f"scheme.name: {exc}") from None
    try:
        return parse_config({"scheme": cfg.scheme.options}, _wrapper(scheme.options)).scheme
    except ConfigError as exc:
        raise ConfigError(f"scheme '{name}': {exc}") from None


def check_scheme(cfg: RunConfig) -> None:
    """Check the scheme's name, options and how it combines with the rest of ``cfg``, before anything trains."""
    options = scheme_options(cfg)
    name = cfg.scheme.name  # type: ignore[union-attr]
    if cfg.teacher is not None:
        raise ConfigError(f"scheme '{name}' trains without a pretrained teacher; remove the 'teacher' section")
    if cfg.features or cfg.hint_epochs:
        raise ConfigError(f"scheme '{name}' cannot be combined with 'features' or 'hint_epochs' (feature terms "
                          "need a pretrained teacher: use them without a scheme)")
    SCHEMES.get(name).check(cfg, options)


def build_scheme(cfg: RunConfig, student: nn.Module, loss: ResponseLoss, num_classes: int,
                 in_shape: Sequence[int], example: Inputs) -> Objective:
    """The objective module of ``cfg.scheme`` around ``student``; ``loss`` is the run's response loss, ``example``
    a real batch of training inputs (a scheme that taps the student learns its feature shapes from it)."""
    check_scheme(cfg)
    scheme = SCHEMES.get(cfg.scheme.name)  # type: ignore[union-attr]
    return scheme.build(scheme_options(cfg), student, loss, num_classes, tuple(in_shape), example)


def require_teacher_free(name: str, cfg: RunConfig, role: str) -> None:
    """ConfigError unless the run's ``loss`` works without a teacher (ce): ``role`` says what the scheme uses it for."""
    if build_loss(cfg.loss.name, **cfg.loss.options).requires_teacher:
        raise ConfigError(f"scheme '{name}': loss.name='{cfg.loss.name}' needs a pretrained teacher; with this "
                          f"scheme 'loss' is {role} and must be one without a teacher (e.g. ce)")


def build_models(key: str, models: Sequence[Any], num_classes: int, in_shape: Sequence[int]) -> list[nn.Module]:
    """kdlab models from Components, errors naming ``key[i]``."""
    built = []
    for i, model in enumerate(models):
        try:
            built.append(create_model(model.name, num_classes, in_shape, **model.options))
        except ConfigError as exc:
            raise ConfigError(f"{key}[{i}]: {exc}") from None
    return built


def check_models(key: str, models: Sequence[Any]) -> None:
    """Model names and option names of Components, errors naming ``key[i]`` (values are checked when built)."""
    for i, model in enumerate(models):
        try:
            MODELS.check_kwargs(model.name, model.options, skip=("num_classes", "in_shape"))
        except ConfigError as exc:
            raise ConfigError(f"{key}[{i}]: {exc}") from None


@functools.cache
def _wrapper(options: type[BaseModel]) -> type[BaseModel]:
    # validating {"scheme": options} makes every message name the key as the user wrote it: scheme.peers[0]...
    return create_pydantic_model(f"{options.__name__}InRun", __base__=Section, scheme=(options, ...))
