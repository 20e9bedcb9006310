"""Resumable checkpoints: weights in safetensors, optimiser/RNG state loaded only with ``weights_only=True``.

The files and their names are listed in :mod:`kdlab.layout`. An epoch directory is written under a temporary name
and renamed into place, then ``latest`` is replaced atomically, so a crash (or a full disk) at any point leaves the
previous complete checkpoint as ``latest``. Writers hold the run directory's lock (:mod:`kdlab.runlock`), so saving
never meets another process's files.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import KdlabError
from ..io import atomic_write_text, current_umask, load_state, load_tensors, save_state, save_tensors
from ..layout import CHECKPOINTS, LATEST, epoch_dir_name


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
    name = epoch_dir_name(epoch + 1)
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
    atomic_write_text(root / LATEST, name + "\n")
    keep = {epoch_dir_name(e) for e in keep_epochs} | {name}
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
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="utf-8", errors="replace").strip()
    folder = root / name
    if not re.fullmatch(r"epoch-\d{4,}", name) or not (folder / "weights.safetensors").is_file() \
            or not (folder / "state.pt").is_file():
        raise KdlabError(f"checkpoint '{folder}' named by '{pointer}' is incomplete; delete the run directory to restart")
    return load_tensors(folder / "weights.safetensors"), load_state(folder / "state.pt")
