"""A model's weights file: safetensors with the model's spec in the metadata, so the file alone rebuilds the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..io import load_tensors, read_safetensors_metadata, save_tensors
from .factory import model_from_spec

WEIGHTS_FORMAT = "kdlab-weights-v1"


def save_model_weights(path: str | Path, model: nn.Module, extra_metadata: dict[str, Any] | None = None,
                       state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """Save a model's state_dict (or the given one) as safetensors; a kdlab model's spec goes into the metadata."""
    metadata = {"format": WEIGHTS_FORMAT}
    spec = getattr(model, "spec", None)
    if spec is not None:
        metadata["model_spec"] = json.dumps(spec, sort_keys=True)
    for key, value in (extra_metadata or {}).items():
        metadata[key] = value if isinstance(value, str) else json.dumps(value)
    return save_tensors(path, state_dict if state_dict is not None else model.state_dict(), metadata)


def state_dict_mismatch(exc: RuntimeError) -> str:
    """The first concrete problem in ``load_state_dict``'s error (a missing key or a shape mismatch), on one line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    details = [line for line in lines[1:] if not line.startswith("Error(s)")]
    return (details[0] if details else lines[0] if lines else type(exc).__name__).rstrip(".")


def load_model_weights(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Load weights saved by :func:`save_model_weights`; rebuilds the kdlab model from its spec when ``model`` is None
    (:func:`~kdlab.models.factory.model_from_spec`, derived architectures included).

    A missing, damaged or foreign file (a pickle, a truncated download), or a spec kdlab cannot build, is a
    ConfigError naming the file. With ``model`` given, a shape mismatch stays a RuntimeError for the caller to word.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weights file '{path}' does not exist")
    if model is None:
        meta = read_safetensors_metadata(path)
        if "model_spec" not in meta:
            raise ConfigError(f"'{path}' has no kdlab model spec in its metadata; build the model yourself and pass it")
        try:
            model = model_from_spec(json.loads(meta["model_spec"]))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError(f"'{path}' holds a model spec kdlab cannot build ({exc}); it is damaged or from "
                              "another kdlab version") from None
        try:
            model.load_state_dict(load_tensors(path), strict=True)
        except RuntimeError as exc:
            raise ConfigError(f"'{path}' does not match the model its own spec describes "
                              f"({state_dict_mismatch(exc)}); the file is damaged") from None
        return model
    model.load_state_dict(load_tensors(path), strict=True)
    return model
