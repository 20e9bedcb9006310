"""Checkpoints: weights in safetensors, optimiser/RNG state loaded only with ``weights_only=True``.

Layout inside a run directory::

    checkpoints/epoch-0003/weights.safetensors   trainable state of the Distiller (student + any loss/adapter params)
    checkpoints/epoch-0003/state.pt              optimiser state, RNG state, epoch, best metric (tensors and numbers only)
    checkpoints/latest                           text: name of the newest complete epoch directory
    checkpoints/best.safetensors                 student weights with the model spec in the metadata (for eval/export)
    checkpoints/last.safetensors                 the same for the last epoch

An epoch directory is written under a temporary name and renamed into place, then ``latest`` is replaced atomically, so
a crash at any point leaves the previous complete checkpoint as ``latest``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import KdlabError
from ..io import atomic_write_text, load_state, load_tensors, read_safetensors_metadata, save_state, save_tensors

CHECKPOINTS = "checkpoints"
WEIGHTS_FORMAT = "kdlab-weights-v1"


def save_checkpoint(run_dir: str | Path, epoch: int, tensors: dict[str, torch.Tensor], state: dict[str, Any],
                    keep_epochs: tuple[int, ...] | list[int] = ()) -> Path:
    """Write the checkpoint of ``epoch`` (0-based) and prune older ones not listed in ``keep_epochs`` (1-based)."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{epoch + 1:04d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    save_tensors(tmp / "weights.safetensors", tensors)
    save_state(tmp / "state.pt", state)
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_text(root / "latest", name + "\n")
    keep = {f"epoch-{e:04d}" for e in keep_epochs} | {name}
    for old in root.glob("epoch-*"):
        if old.is_dir() and old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".epoch-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return final


def load_latest_checkpoint(run_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The newest complete checkpoint (weights, state), or None when the run has none."""
    root = Path(run_dir) / CHECKPOINTS
    pointer = root / "latest"
    if not pointer.is_file():
        return None
    folder = root / pointer.read_text().strip()
    if not (folder / "weights.safetensors").is_file() or not (folder / "state.pt").is_file():
        raise KdlabError(f"checkpoint '{folder}' named by '{pointer}' is incomplete; delete the run directory to restart")
    return load_tensors(folder / "weights.safetensors"), load_state(folder / "state.pt")


def epoch_weights_path(run_dir: str | Path, epoch: int) -> Path:
    """Path of the trainable-state weights kept for 1-based ``epoch`` (see ``keep_epochs``)."""
    return Path(run_dir) / CHECKPOINTS / f"epoch-{epoch:04d}" / "weights.safetensors"


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


def load_model_weights(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Load weights saved by :func:`save_model_weights`; rebuilds the kdlab model from its spec when ``model`` is None."""
    path = Path(path)
    if not path.is_file():
        raise KdlabError(f"weights file '{path}' does not exist")
    if model is None:
        meta = read_safetensors_metadata(path)
        if "model_spec" not in meta:
            raise KdlabError(f"'{path}' has no kdlab model spec in its metadata; build the model yourself and pass it")
        spec = json.loads(meta["model_spec"])
        if "pruned_from" in spec or "lowrank_from" in spec:
            from ..compress import build_model  # compressed models are rebuilt from their compression spec
            model = build_model(spec)
        else:
            from ..models import create_model

            model = create_model(**spec)
    model.load_state_dict(load_tensors(path), strict=True)
    return model
