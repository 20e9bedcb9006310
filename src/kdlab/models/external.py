"""Models from outside kdlab's registry: a user's factory, Hugging Face, timm and torchvision.

A config names one with ``source`` (see :class:`kdlab.config.ExternalModel`):

    source: python        target: "package.module:factory"  + the factory's keyword arguments
    source: huggingface   path: DIR (``from_pretrained`` on a local directory, no hub download)
                          or config: {model_type: vit, ...} + architecture: ViTForImageClassification (``from_config``)
    source: timm          name: resnet18 + ``timm.create_model`` keyword arguments
    source: torchvision   name: resnet18 + ``torchvision.models.get_model`` keyword arguments

The dataset decides the class count (and, for timm, the input channels): kdlab passes ``num_classes`` (a Python
factory only when its signature has that parameter), sets ``num_labels`` of a Hugging Face config, and checks that a
Hugging Face checkpoint directory predicts that many classes. Every built model records ``model.spec`` = its source
section plus ``num_classes`` and ``in_shape``, and :func:`model_from_spec` rebuilds it through the spec builder
registered here under the key ``source``, so a run's weights file stays self-describing (``kdlab eval``, a teacher
given as ``teacher.run``).

transformers, timm and torchvision are optional extras, imported lazily (on purpose) by the source that needs them;
a missing one is a ConfigError naming ``pip install 'kdlab[hf|timm|torchvision]'`` (:func:`kdlab.extras.require`).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import ConfigError
from ..extras import require
from ..registry import did_you_mean
from .factory import register_spec_builder

SOURCES = ("python", "huggingface", "timm", "torchvision")


def build_external(spec: dict[str, Any], num_classes: int, in_shape: Sequence[int], key: str = "model") -> nn.Module:
    """The model a ``source`` section describes, with ``num_classes`` outputs; raises ConfigError naming ``key``."""
    source = spec.get("source")
    options = {k: v for k, v in spec.items() if k not in ("source", "target", "name", "path", "config",
                                                          "architecture", "num_classes", "in_shape")}
    if source == "python":
        model = _build_python(spec["target"], options, num_classes, in_shape, key)
    elif source == "huggingface":
        model = _build_huggingface(spec, num_classes, key)
    elif source == "timm":
        timm = require("timm", f"{key}.source=timm")
        model = _call(f"{key}: timm.create_model('{spec['name']}')", timm.create_model, spec["name"],
                      num_classes=num_classes, in_chans=int(in_shape[0]) if in_shape else 3, **options)
    elif source == "torchvision":
        models = require("torchvision.models", f"{key}.source=torchvision")
        model = _call(f"{key}: torchvision.models.get_model('{spec['name']}')", models.get_model, spec["name"],
                      num_classes=num_classes, **options)
    else:
        raise ConfigError(f"{key}.source={source!r} is not allowed; allowed: {', '.join(SOURCES)}")
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{key}: the {source} source returned {type(model).__name__}, not a torch.nn.Module")
    model.spec = {**{k: v for k, v in spec.items() if k not in ("num_classes", "in_shape")},
                  "num_classes": int(num_classes), "in_shape": [int(v) for v in in_shape]}
    return model


@register_spec_builder("source")
def model_from_source_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild an external model from the spec :func:`build_external` recorded (weights are then loaded over it)."""
    return build_external(spec, spec["num_classes"], spec.get("in_shape") or [], key="model spec")


def check_external(spec: dict[str, Any], key: str = "model") -> None:
    """Check a ``source`` section without building the model: the optional package is installed, the Python target
    imports, is callable and takes the given keyword arguments, the Hugging Face directory or config is readable, the
    timm or torchvision model name exists. Raises ConfigError naming ``key``."""
    source = spec.get("source")
    options = {k: v for k, v in spec.items() if k not in ("source", "target", "name", "path", "config",
                                                          "architecture")}
    if source == "python":
        factory = import_target(spec["target"], f"{key}.target")
        _check_signature(factory, options, f"{key} (target '{spec['target']}')")
    elif source == "huggingface":
        transformers = require("transformers", f"{key}.source=huggingface")
        _hf_architecture(transformers, spec, key)
    elif source == "timm":
        timm = require("timm", f"{key}.source=timm")
        if not timm.is_model(spec["name"]):
            raise ConfigError(f"{key}.name='{spec['name']}' is not a timm model.{did_you_mean(spec['name'], timm.list_models())}")
    elif source == "torchvision":
        models = require("torchvision.models", f"{key}.source=torchvision")
        names = list(models.list_models())
        if spec["name"] not in names:
            raise ConfigError(f"{key}.name='{spec['name']}' is not a torchvision model.{did_you_mean(spec['name'], names)}")


def import_target(target: str, key: str) -> Callable[..., Any]:
    """The callable named by ``"package.module:attribute"`` (or ``"package.module.attribute"``).

    The current directory is on the import path (as for ``python -m``), so a module beside the config imports.
    """
    module_name, sep, attribute = target.partition(":")
    if not sep:
        module_name, _, attribute = target.rpartition(".")
    if not module_name or not attribute:
        raise ConfigError(f"{key}='{target}' is not allowed; give 'package.module:factory'")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{key}='{target}': module '{module_name}' cannot be imported ({exc}); it must be "
                          "importable from the current directory or the Python path") from None
    obj: Any = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{key}='{target}': '{module_name}' has no attribute '{attribute}'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{key}='{target}' is a {type(obj).__name__}, not a callable that returns an nn.Module")
    return obj


def _check_signature(factory: Callable[..., Any], options: dict[str, Any], where: str) -> None:
    """Every option is a keyword parameter of ``factory`` (unless it takes ``**kwargs``)."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return  # a builtin without a signature: the call reports its own errors
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    named = [name for name, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for option in options:
        if option not in named:
            raise ConfigError(f"{where}: option '{option}' is not a parameter of the factory.{did_you_mean(option, named)} "
                              f"Allowed: {', '.join(n for n in named if n not in ('num_classes', 'in_shape')) or 'none'}")


def _build_python(target: str, options: dict[str, Any], num_classes: int, in_shape: Sequence[int],
                  key: str) -> nn.Module:
    factory = import_target(target, f"{key}.target")
    _check_signature(factory, options, f"{key} (target '{target}')")
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        parameters = {}  # type: ignore[assignment]
    given = dict(options)
    if "num_classes" in parameters:
        given["num_classes"] = num_classes
    if "in_shape" in parameters:
        given["in_shape"] = tuple(in_shape)
    return _call(f"{key}.target='{target}'", factory, **given)


def _call(where: str, factory: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``factory(*args, **kwargs)``; a TypeError or ValueError (a bad option) becomes a ConfigError naming ``where``."""
    try:
        return factory(*args, **kwargs)
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        raise ConfigError(f"{where} failed: {type(exc).__name__}: {exc}") from None


def _hf_architecture(transformers: Any, spec: dict[str, Any], key: str) -> Any:
    """The transformers class that builds the model: ``architecture``, else the checkpoint's ``architectures[0]``."""
    name = spec.get("architecture")
    if spec.get("path") is not None:
        directory = Path(spec["path"])
        if not (directory / "config.json").is_file():
            raise ConfigError(f"{key}.path='{spec['path']}' is not a Hugging Face checkpoint directory (no "
                              "config.json); give a directory written by save_pretrained (hub names are not "
                              "downloaded)")
        if name is None:
            try:
                saved = json.loads((directory / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{key}.path='{spec['path']}': config.json is unreadable ({exc})") from None
            names = saved.get("architectures") or []
            if not names:
                raise ConfigError(f"{key}.path='{spec['path']}': config.json names no architecture; give "
                                  f"{key}.architecture (e.g. AutoModelForImageClassification)")
            name = names[0]
    if not isinstance(name, str) or not hasattr(transformers, name):
        raise ConfigError(f"{key}.architecture={name!r} is not a transformers class; give one such as "
                          "ViTForImageClassification or AutoModelForSequenceClassification")
    return getattr(transformers, name)


def _build_huggingface(spec: dict[str, Any], num_classes: int, key: str) -> nn.Module:
    transformers = require("transformers", f"{key}.source=huggingface")
    cls = _hf_architecture(transformers, spec, key)
    if spec.get("path") is not None:
        transformers.utils.logging.disable_progress_bar()  # kdlab's own progress shows; a bar per load is noise
        model = _call(f"{key}.path='{spec['path']}'", cls.from_pretrained, spec["path"], local_files_only=True)
        labels = getattr(model.config, "num_labels", None)
        if labels is not None and int(labels) != int(num_classes):
            raise ConfigError(f"{key}.path='{spec['path']}' predicts {labels} classes but the dataset has "
                              f"{num_classes}; teacher, student and data must share the classes")
        return model
    options = dict(spec["config"])
    model_type = options.pop("model_type", None)
    if not isinstance(model_type, str):
        raise ConfigError(f"{key}.config needs 'model_type' (e.g. vit, bert): the Hugging Face model family")
    config = _call(f"{key}.config", transformers.AutoConfig.for_model, model_type, num_labels=num_classes, **options)
    if cls.__name__.startswith("Auto"):
        return _call(f"{key}.architecture='{cls.__name__}'", cls.from_config, config)
    return _call(f"{key}.architecture='{cls.__name__}'", cls, config)
