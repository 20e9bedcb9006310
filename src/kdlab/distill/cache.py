"""Teacher-output cache: the teacher's logits on a deterministic dataset, computed once and stored.

The key hashes the teacher's weights, the dataset's content and the input transform, so a cache entry can never be
stale: change any of them and the key changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..io import load_tensors, save_tensors
from ..models.inference import predict_logits

log = logging.getLogger("kdlab")

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``KDLAB_CACHE``, else ``$XDG_CACHE_HOME/kdlab/teacher_logits``, else ``~/.cache/kdlab/teacher_logits``."""
    if os.environ.get("KDLAB_CACHE"):
        return Path(os.environ["KDLAB_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "kdlab" / "teacher_logits"


def weights_digest(model: nn.Module) -> str:
    """SHA-256 over a model's state_dict: names, dtypes, shapes and bytes, in key order."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def cache_key(teacher: nn.Module, data_fingerprint: str, transform: Any = None) -> str:
    teacher = getattr(teacher, "_orig_mod", teacher)  # a torch.compile'd teacher keys as the teacher it wraps
    payload = {"v": CACHE_VERSION, "weights": weights_digest(teacher), "data": data_fingerprint,
               "transform": transform, "class": type(teacher).__qualname__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def cached_teacher_logits(teacher: nn.Module, x: torch.Tensor, data_fingerprint: str,
                          cache_dir: str | Path | None = None, transform: Any = None,
                          batch_size: int = 1024) -> torch.Tensor:
    """The teacher's logits for every row of ``x`` (in eval mode), from the cache or computed and stored."""
    path = Path(cache_dir or default_cache_dir()) / f"{cache_key(teacher, data_fingerprint, transform)}.safetensors"
    if path.is_file():
        try:
            logits = load_tensors(path)["logits"]
        except (ConfigError, KeyError) as exc:  # a damaged cache entry is recomputed, never trusted
            log.warning("teacher-output cache %s is unreadable (%s); recomputing it", path, exc)
        else:
            if logits.shape[0] == len(x):
                return logits
    logits = predict_logits(teacher, x, batch_size)
    save_tensors(path, {"logits": logits}, {"data": data_fingerprint})
    return logits
