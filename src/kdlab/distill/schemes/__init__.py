"""Training schemes beyond offline distillation (Gou, Yu, Maybank, Tao, "Knowledge Distillation: A Survey", IJCV
2021, Sec. 4): who teaches whom, and when.

    offline   a trained, frozen teacher teaches the student: the plain Distiller (no ``scheme`` in the config)
    online    ``dml``   peers learn from each other while all train (Deep Mutual Learning, CVPR 2018)
              ``joint`` teacher and student train together from scratch; the teacher only on labels
    self      ``byot``  auxiliary classifiers on the student's own intermediate taps learn from its deepest
                        classifier (Be Your Own Teacher, ICCV 2019)
              born-again networks: a chain of runs, each generation taught by the previous one
              (:func:`kdlab.distill.schemes.ban.born_again`; not a single run, so not a ``scheme`` name)

A run selects a single-run scheme with ``scheme: {name: dml, ...options}``. Each scheme builds one objective module
that the one training loop trains like a Distiller: ``forward(x, y, index) -> (objective, student_logits)``,
``.student`` (the model evaluated and exported), ``.loss.last_parts`` (what is logged), ``set_epoch``, ``close``.
Everything that trains besides the student (peers, a live teacher, auxiliary heads) is a registered submodule of the
objective, so ``parameters()`` hands it to the optimiser and checkpoints resume it; only the student is exported.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, create_model
from torch import nn

from ...config import RunConfig, Section, parse_config
from ...errors import ConfigError
from ...registry import Registry


@dataclass(frozen=True)
class Scheme:
    """A registered scheme: its options schema, a check that needs no model, and the objective builder."""

    options: type[BaseModel]
    check: Callable[[RunConfig, Any], None]
    build: Callable[..., nn.Module]


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


def build_scheme(cfg: RunConfig, student: nn.Module, loss: nn.Module, num_classes: int,
                 in_shape: Sequence[int]) -> nn.Module:
    """The objective module of ``cfg.scheme`` around ``student``; ``loss`` is the run's response loss."""
    check_scheme(cfg)
    scheme = SCHEMES.get(cfg.scheme.name)  # type: ignore[union-attr]
    return scheme.build(scheme_options(cfg), student, loss, num_classes, tuple(in_shape))


def require_teacher_free(name: str, cfg: RunConfig, role: str) -> None:
    """ConfigError unless the run's ``loss`` works without a teacher (ce): ``role`` says what the scheme uses it for."""
    from ...losses import build as build_loss

    if getattr(build_loss(cfg.loss.name, **cfg.loss.options), "requires_teacher", True):
        raise ConfigError(f"scheme '{name}': loss.name='{cfg.loss.name}' needs a pretrained teacher; with this "
                          f"scheme 'loss' is {role} and must be one without a teacher (e.g. ce)")


def build_models(key: str, models: Sequence[Any], num_classes: int, in_shape: Sequence[int]) -> list[nn.Module]:
    """kdlab models from Components, errors naming ``key[i]``."""
    from ...models import create_model

    built = []
    for i, model in enumerate(models):
        try:
            built.append(create_model(model.name, num_classes, in_shape, **model.options))
        except ConfigError as exc:
            raise ConfigError(f"{key}[{i}]: {exc}") from None
    return built


def check_models(key: str, models: Sequence[Any]) -> None:
    """Model names and option names of Components, errors naming ``key[i]`` (values are checked when built)."""
    from ...models import MODELS

    for i, model in enumerate(models):
        try:
            MODELS.check_kwargs(model.name, model.options, skip=("num_classes", "in_shape"))
        except ConfigError as exc:
            raise ConfigError(f"{key}[{i}]: {exc}") from None


@functools.cache
def _wrapper(options: type[BaseModel]) -> type[BaseModel]:
    # validating {"scheme": options} makes every message name the key as the user wrote it: scheme.peers[0]...
    return create_model(f"{options.__name__}InRun", __base__=Section, scheme=(options, ...))


from . import byot, dml, joint  # noqa: E402,F401  (importing registers the schemes)
from .ban import born_again, born_again_configs  # noqa: E402

__all__ = ["SCHEMES", "Scheme", "build_scheme", "check_scheme", "scheme_options", "born_again",
           "born_again_configs"]
