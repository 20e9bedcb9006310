"""Checks of a RunConfig that need the registries: dataset, model, loss, feature-loss and scheme names and options.

``kdlab.config`` validates a config's shape and values on its own; what a name refers to (a registered model, a
loss's hyperparameters, a scheme's options) is checked here, before any data is read or anything trains. This module
sits above ``config``, ``data``, ``models``, ``losses`` and ``distill`` (whose schemes it asks), so none of them
imports it.
"""

from __future__ import annotations

from typing import Any

from .config import RunConfig, term_label
from .data import DATASETS, STREAMING_SOURCES
from .distill.schemes import check_scheme
from .errors import ConfigError
from .extras import require
from .losses import build as build_loss
from .losses import build_feature_loss
from .models import check_model
from .registry import did_you_mean


def check_components(cfg: RunConfig) -> None:
    """Check registry names and options (dataset, models, loss), external model sources and the optional packages
    the config needs (transformers, datasets, timm, torchvision, tensorboard), without loading data or training."""
    if cfg.data.name not in DATASETS:
        raise ConfigError(f"data.name='{cfg.data.name}' is not allowed.{did_you_mean(cfg.data.name, DATASETS.names())} "
                          f"Allowed: {', '.join(DATASETS.names())}")
    _check_options("data.options", DATASETS, cfg.data.name, cfg.data.options)
    if cfg.data.streaming and cfg.data.name not in STREAMING_SOURCES:
        raise ConfigError(f"data.streaming=true is not allowed for data.name='{cfg.data.name}': it is read into "
                          f"memory; streaming sources: {', '.join(STREAMING_SOURCES.names())}")
    check_model(cfg.model.as_dict(), "model")
    if cfg.teacher is not None and cfg.teacher.model is not None:
        check_model(cfg.teacher.model.as_dict(), "teacher.model")
    if cfg.data.name == "hf_dataset":
        require("datasets", "data.name: hf_dataset")
    if "tensorboard" in cfg.train.log:
        require("torch.utils.tensorboard", "train.log: [tensorboard]", package="tensorboard")
    try:
        loss = build_loss(cfg.loss.name, **cfg.loss.options)
    except ConfigError as exc:
        raise ConfigError(f"loss: {exc}") from None
    if cfg.teacher is not None and cfg.teacher.compile and cfg.features:
        raise ConfigError("teacher.compile=true cannot be combined with 'features': feature terms hook the teacher's "
                          "modules by path, which a compiled teacher does not expose; set teacher.compile: false")
    if cfg.scheme is not None:
        check_scheme(cfg)  # the scheme decides which loss and teacher it takes
        return
    if loss.requires_teacher and cfg.teacher is None:
        raise ConfigError(f"loss.name='{cfg.loss.name}' needs a teacher: add a 'teacher' section "
                          "(teacher.run: <run dir>, or teacher.model + teacher.weights)")
    check_features(cfg)


def check_features(cfg: RunConfig) -> None:
    """Feature terms: a teacher to tap, known losses with valid options, unique labels, a hint stage that ends.

    Taps and shapes need the models; ``kdlab.distill.build_feature_terms`` checks them before training.
    """
    if cfg.hint_epochs and not cfg.features:
        raise ConfigError(f"hint_epochs={cfg.hint_epochs} needs at least one term in 'features' (the hint stage "
                          "trains on the feature terms alone)")
    if cfg.hint_epochs >= cfg.train.epochs:
        raise ConfigError(f"hint_epochs={cfg.hint_epochs} is not allowed; must be < train.epochs="
                          f"{cfg.train.epochs} (the hint stage is followed by training on the full objective)")
    if not cfg.features:
        return
    if cfg.teacher is None:
        raise ConfigError("features: feature terms compare the student with a teacher; add a 'teacher' section "
                          "(teacher.run: <run dir>, or teacher.model + teacher.weights)")
    labels: list[str] = []
    for i, term in enumerate(cfg.features):
        try:
            build_feature_loss(term.loss.name, **term.loss.options)
        except ConfigError as exc:
            raise ConfigError(f"features[{i}].loss: {exc}") from None
        labels.append(term_label(term))
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(f"features: terms must have distinct labels, repeated: {', '.join(repeated)}; give each "
                          "term a 'name'")



def _check_options(key: str, registry: Any, name: str, options: dict[str, Any]) -> None:
    try:
        registry.check_kwargs(name, options, skip=("num_classes", "in_shape"))
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None
