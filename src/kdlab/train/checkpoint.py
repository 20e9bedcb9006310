"""Checkpoints: weights in safetensors, optimiser/RNG state loaded only with ``weights_only=True``.

Layout inside a run directory::

    checkpoints/epoch-0003/weights.safetensors   trainable state of the Distiller (student + any loss/adapter params)
    checkpoints/epoch-0003/state.pt              optimiser state, RNG state, epoch, best metric (tensors and numbers only)
    checkpoints/latest                           text: name of the newest complete epoch directory
    checkpoints/best.safetensors                 student weights with the model spec in the metadata (for eval/export)
    checkpoints/last.safetensors                 the same for the last epoch

An epoch directory is written under a temporary name and renamed into place, then ``latest`` is replaced atomically, so
a crash (or a full disk) at any point leaves the previous complete checkpoint as ``latest``. Writers hold the run
directory's lock (:mod:`kdlab.runlock`), so saving never meets another process's files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, KdlabError
from ..io import (atomic_write_text, current_umask, load_state, load_tensors, read_safetensors_metadata, save_state,
                  save_tensors)

CHECKPOINTS = "checkpoints"
WEIGHTS_FORMAT = "kdlab-weights-v1"


def save_checkpoint(run_dir: str | Path, epoch: int, tensors: dict[str, torch.Tensor], state: dict[str, Any],
                    keep_epochs: tuple[int, ...] | list[int] = ()) -> Path:
    """Write the checkpoint of ``epoch`` (0-based) and prune older ones not listed in ``keep_epochs`` (1-based).

    Only this run's own files are touched (the caller holds the run directory's lock): its temp directory, an earlier
    copy of the same epoch (left by a crash before ``latest`` moved on; set aside, replaced, then removed, so
    ``latest`` never names a missing directory) and pruned epochs. Stale temp files of a killed earlier attempt are
    removed when the run starts again (:func:`remove_stale_temp_files`). A failure (disk full) removes the temp
    directory and leaves the previous checkpoint as ``latest``.
    """
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{epoch + 1:04d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    final = root / name
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it owner-only; a run directory follows the umask
        save_tensors(tmp / "weights.safetensors", tensors)
        save_state(tmp / "state.pt", state)
        if final.exists():
            retired = root / f".{name}.retired"
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(final, retired)
            os.replace(tmp, final)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(root / "latest", name + "\n")
    keep = {f"epoch-{e:04d}" for e in keep_epochs} | {name}
    for old in root.glob("epoch-*"):
        if old.is_dir() and old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
    return final


# temp files a killed run can leave in its own directory: atomic writes of the recipe's files, checkpoint temps
_RUN_TEMP_PATTERNS = (".config.yaml.*.tmp", ".metrics.jsonl.*.tmp", ".summary.json.*.tmp")


def remove_stale_temp_files(run_dir: str | Path) -> list[Path]:
    """Remove what a killed earlier attempt of this run left half-written: ``*.tmp`` files and ``.epoch-*`` temp
    directories. Call it only while holding the run directory's lock (no other process writes there then).
    Returns the removed paths."""
    run_dir = Path(run_dir)
    stale = [p for pattern in _RUN_TEMP_PATTERNS for p in run_dir.glob(pattern)]
    root = run_dir / CHECKPOINTS
    if root.is_dir():
        stale += list(root.glob(".*.tmp")) + list(root.glob(".epoch-*"))
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale


def load_latest_checkpoint(run_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The newest complete checkpoint (weights, state), or None when the run has none."""
    root = Path(run_dir) / CHECKPOINTS
    pointer = root / "latest"
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="utf-8", errors="replace").strip()
    folder = root / name
    if not re.fullmatch(r"epoch-\d{4,}", name) or not (folder / "weights.safetensors").is_file() \
            or not (folder / "state.pt").is_file():
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


def state_dict_mismatch(exc: RuntimeError) -> str:
    """The first concrete problem in ``load_state_dict``'s error (a missing key or a shape mismatch), on one line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    details = [line for line in lines[1:] if not line.startswith("Error(s)")]
    return (details[0] if details else lines[0] if lines else type(exc).__name__).rstrip(".")


def load_model_weights(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Load weights saved by :func:`save_model_weights`; rebuilds the kdlab model from its spec when ``model`` is None.

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
            spec = json.loads(meta["model_spec"])
            if "pruned_from" in spec or "lowrank_from" in spec:
                from ..compress import build_model  # compressed models are rebuilt from their compression spec
                model = build_model(spec)
            else:
                from ..models import create_model

                model = create_model(**spec)
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
