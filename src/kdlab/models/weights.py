"""A model's weights file: safetensors with the model's spec in the metadata, so the file alone rebuilds the model."""

from __future__ import annotations

import json
import pickle
import zipfile
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


# a plain state-dict file: what torch.save(model.state_dict(), ...) writes, and what Hugging Face directories hold
STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin")
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A model's state dict from a file that is not a kdlab weights file: ``.safetensors``, a ``torch.save``'d state
    dict (``.pt``, ``.pth``, ``.bin``, read with ``torch.load(weights_only=True)``), or a Hugging Face checkpoint
    directory (its ``model.safetensors``, else ``pytorch_model.bin``).

    ``torch.load(weights_only=True)`` unpickles tensors, containers and numbers only: a pickle that names any other
    callable (one that would run code on loading) is refused before anything of it runs. A checkpoint that wraps the
    state dict (``{"state_dict": ...}`` or ``{"model": ...}``, as training scripts often save) is unwrapped, and the
    ``module.`` prefix that DistributedDataParallel adds is removed. Raises ConfigError naming the file otherwise.
    """
    path = Path(path)
    if path.is_dir():
        found = next((path / name for name in HF_WEIGHT_FILES if (path / name).is_file()), None)
        if found is None:
            raise ConfigError(f"'{path}' is a directory without {' or '.join(HF_WEIGHT_FILES)} (a Hugging Face "
                              "checkpoint directory holds one; sharded checkpoints are not read)")
        path = found
    if not path.is_file():
        raise ConfigError(f"weights file '{path}' does not exist")
    if path.suffix == ".safetensors":
        return load_tensors(path)
    if path.suffix not in STATE_DICT_SUFFIXES:
        raise ConfigError(f"'{path}' is not a weights file kdlab reads; allowed: .safetensors, a state dict saved "
                          f"with torch.save ({', '.join(STATE_DICT_SUFFIXES)}), or a Hugging Face directory")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(f"'{path}' was refused: it is a pickle that torch.load(weights_only=True) will not read, "
                          f"because it holds more than tensors (an object whose loading could run code). "
                          f"Nothing of it was run. {first[:200]}") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as exc:
        raise ConfigError(f"'{path}' cannot be read as a state dict ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); it is damaged or not a "
                          "torch.save'd state dict") from None
    return _unwrap_state_dict(loaded, path)


def _unwrap_state_dict(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, dict):
        for key in ("state_dict", "model"):
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ConfigError(f"'{path}' holds a {type(loaded).__name__}, not a state dict (a mapping of parameter "
                          "names to tensors); save model.state_dict()")
    prefix = "module."
    if all(isinstance(k, str) and k.startswith(prefix) for k in loaded):
        loaded = {k[len(prefix):]: v for k, v in loaded.items()}
    return dict(loaded)


def load_state_dict_file(path: str | Path, model: nn.Module) -> nn.Module:
    """Load :func:`read_state_dict` of ``path`` into ``model`` (strict); a mismatch stays a RuntimeError."""
    model.load_state_dict(read_state_dict(path), strict=True)
    return model
