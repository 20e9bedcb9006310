"""Teacher-output cache: the teacher's logits on a deterministic dataset, computed once and stored.

The key hashes the teacher's weights, the dataset's content and the input transform, so a cache entry can never be
stale: change any of them and the key changes.

Two stores, one key:

- in memory (:func:`cached_teacher_logits`, data held as tensors): a safetensors file read whole;
- on disk (:func:`disk_teacher_logits`, streamed data larger than memory): a directory of ``.npy`` arrays written
  batch by batch and read memory-mapped, so only the rows of the current batch are paged in.

Either may keep only each sample's top-k logits (``teacher.cache_topk``, :class:`TopKLogits`): N x k values and
indices instead of N x K logits, for problems with many classes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..batch import Inputs, batch_len, inputs_to
from ..data.dataset_loader import DatasetLoader
from ..errors import ConfigError
from ..io import current_umask, load_tensors, save_tensors
from ..models.inference import model_device, predict_logits
from ..models.outputs import model_logits

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


def cache_key(teacher: nn.Module, data_fingerprint: str, transform: Any = None, topk: int | None = None) -> str:
    """The cache entry's name: a hash of the teacher's weights and class, the data, the transform (and top-k)."""
    teacher = getattr(teacher, "_orig_mod", teacher)  # a torch.compile'd teacher keys as the teacher it wraps
    payload = {"v": CACHE_VERSION, "weights": weights_digest(teacher), "data": data_fingerprint,
               "transform": transform, "class": type(teacher).__qualname__}
    if topk is not None:  # absent otherwise, so full caches keep the keys they had
        payload["topk"] = int(topk)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def cached_teacher_logits(teacher: nn.Module, x: Inputs, data_fingerprint: str,
                          cache_dir: str | Path | None = None, transform: Any = None,
                          batch_size: int = 1024, topk: int | None = None) -> torch.Tensor | TopKLogits:
    """The teacher's logits for every row of ``x`` (a tensor or a mapping of named input tensors; the teacher in
    eval mode), from the cache or computed and stored; with ``topk``, reduced to :class:`TopKLogits`."""
    path = Path(cache_dir or default_cache_dir()) / f"{cache_key(teacher, data_fingerprint, transform)}.safetensors"
    logits = None
    if path.is_file():
        try:
            logits = load_tensors(path)["logits"]
        except (ConfigError, KeyError) as exc:  # a damaged cache entry is recomputed, never trusted
            log.warning("teacher-output cache %s is unreadable (%s); recomputing it", path, exc)
        else:
            logits = logits if logits.shape[0] == batch_len(x) else None
    if logits is None:
        logits = predict_logits(teacher, x, batch_size)
        save_tensors(path, {"logits": logits}, {"data": data_fingerprint})
    return TopKLogits.from_logits(logits, topk) if topk is not None else logits


class TopKLogits:
    """Each sample's k largest teacher logits, exactly, and one shared value for its other K - k classes.

    From logits z (K classes) of one sample, with T the top-k positions and m = K - k::

        stored   z_i for i in T (values and positions), and  f = log( (1/m) sum_{j not in T} exp(z_j) )
        rebuilt  z^_i = z_i for i in T,  z^_j = f otherwise

    f is the log-mean-exp of the tail, so at temperature 1 the rebuilt softmax p^ keeps every top-k probability and
    the tail's total mass r = sum_{j not in T} p_j exactly and spreads r evenly over the tail. Hence, per sample,

        TV(p, p^) = 1/2 sum_j |p_j - p^_j| <= r          and          KL(p || p^) = r (log m - H(p_tail / r)) <= r log m

    (tested). At a temperature tau != 1 the top-k probabilities keep their ratios to each other, but the tail is
    flattened to one value, so a KD target at tau > 1 loses the ranking inside the tail: choose k so that the
    classes whose affinities matter are inside it. Memory: N (2k + 1) numbers instead of N K.

    ``table[index]`` gives the dense ``[B, K]`` float32 rows (what the Distiller reads); the arrays may be numpy
    memory maps (the disk cache).
    """

    def __init__(self, values: np.ndarray, indices: np.ndarray, fill: np.ndarray, num_classes: int) -> None:
        self.values, self.indices, self.fill, self.num_classes = values, indices, fill, int(num_classes)
        self.device = torch.device("cpu")

    @classmethod
    def from_logits(cls, logits: torch.Tensor, k: int) -> "TopKLogits":
        """Reduce dense logits ``[N, K]`` to their top-k form (``k >= K`` keeps them all)."""
        values, indices, fill = topk_rows(logits, k)
        return cls(values.numpy(), indices.numpy(), fill.numpy(), logits.shape[1])

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), self.num_classes

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        rows = np.asarray(index.cpu().numpy(), dtype=np.int64)
        values = torch.from_numpy(np.ascontiguousarray(self.values[rows]))
        positions = torch.from_numpy(np.ascontiguousarray(self.indices[rows])).to(torch.int64)
        fill = torch.from_numpy(np.ascontiguousarray(self.fill[rows]))
        dense = fill[:, None].expand(len(rows), self.num_classes).clone()
        return dense.scatter_(1, positions, values)


def topk_rows(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(top-k values ``[N, k]`` float32, their class positions ``[N, k]`` int32, tail fill ``[N]`` float32) of
    :class:`TopKLogits`; the fill is the log-mean-exp of the other logits (or the smallest logit when k >= K)."""
    z = logits.float()
    k = min(int(k), z.shape[1])
    values, positions = z.topk(k, dim=1)
    m = z.shape[1] - k
    if m == 0:
        fill = z.min(dim=1).values
    else:
        tail = z.scatter(1, positions, float("-inf"))
        fill = (torch.logsumexp(tail.double(), dim=1) - math.log(m)).float()
    return values.contiguous(), positions.to(torch.int32).contiguous(), fill.contiguous()


class MappedLogits:
    """Dense cached logits ``[N, K]`` in a memory-mapped ``.npy`` file: ``table[index]`` reads those rows only."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return int(self.array.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.array[np.asarray(index.cpu().numpy(), dtype=np.int64)]))


DISK_FILES = {"dense": ("logits.npy",), "topk": ("values.npy", "indices.npy", "fill.npy")}


def disk_teacher_logits(teacher: nn.Module, dataset: Dataset, data_fingerprint: str,
                        cache_dir: str | Path | None = None, transform: Any = None, batch_size: int = 1024,
                        topk: int | None = None, num_workers: int = 0) -> MappedLogits | TopKLogits:
    """The teacher's logits for every sample of a map-style ``dataset`` (item i = ``(x, y, i)``), memory-mapped from
    the on-disk cache, computed batch by batch and stored first when absent.

    The entry is the directory ``<key>.npy.d`` (same key as :func:`cached_teacher_logits`, plus top-k) holding
    ``logits.npy`` or the top-k arrays; it is written under a temporary name and renamed into place when complete, so
    a killed build leaves no entry that could be read. Memory: one batch of inputs and of logits.
    """
    root = Path(cache_dir or default_cache_dir())
    entry = root / f"{cache_key(teacher, data_fingerprint, transform, topk)}.npy.d"
    n = len(dataset)  # type: ignore[arg-type]
    opened = _open_disk_entry(entry, n, topk)
    if opened is not None:
        return opened
    root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=root))
    try:
        _write_disk_entry(teacher, dataset, building, n, batch_size, topk, num_workers)
        os.chmod(building, 0o777 & ~current_umask())
        if entry.exists():  # a damaged entry: replaced, never trusted
            shutil.rmtree(entry)
        os.replace(building, entry)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    opened = _open_disk_entry(entry, n, topk)
    assert opened is not None
    return opened


@torch.inference_mode()
def _write_disk_entry(teacher: nn.Module, dataset: Dataset, directory: Path, n: int, batch_size: int,
                      topk: int | None, num_workers: int) -> None:
    device = model_device(teacher)
    was_training = teacher.training
    teacher.eval()
    arrays: dict[str, np.ndarray] = {}
    row = 0
    try:
        for x, _, _ in DatasetLoader(dataset, batch_size, num_workers=num_workers):
            logits = model_logits(teacher, inputs_to(x, device)).float().cpu()
            if not arrays:  # the class count is known from the first batch
                k = logits.shape[1]
                if topk is None:
                    shapes = {"logits.npy": ((n, k), np.float32)}
                else:
                    kk = min(int(topk), k)
                    shapes = {"values.npy": ((n, kk), np.float32), "indices.npy": ((n, kk), np.int32),
                              "fill.npy": ((n,), np.float32)}
                for name, (shape, dtype) in shapes.items():
                    arrays[name] = np.lib.format.open_memmap(directory / name, mode="w+", dtype=dtype, shape=shape)
                arrays["classes"] = np.array(k)
            rows = slice(row, row + len(logits))
            if topk is None:
                arrays["logits.npy"][rows] = logits.numpy()
            else:
                values, indices, fill = topk_rows(logits, topk)
                arrays["values.npy"][rows], arrays["indices.npy"][rows] = values.numpy(), indices.numpy()
                arrays["fill.npy"][rows] = fill.numpy()
            row += len(logits)
    finally:
        teacher.train(was_training)
    for name, array in arrays.items():
        if isinstance(array, np.memmap):
            array.flush()
    (directory / "classes.txt").write_text(f"{int(arrays['classes'])}\n")


def _open_disk_entry(entry: Path, n: int, topk: int | None) -> MappedLogits | TopKLogits | None:
    """The entry's arrays memory-mapped read-only, or None when it is missing or does not hold n rows."""
    names = DISK_FILES["dense" if topk is None else "topk"]
    if not all((entry / name).is_file() for name in names) or not (entry / "classes.txt").is_file():
        return None
    try:
        arrays = [np.load(entry / name, mmap_mode="r") for name in names]
        classes = int((entry / "classes.txt").read_text())
    except (OSError, ValueError) as exc:
        log.warning("teacher-output cache %s is unreadable (%s); recomputing it", entry, exc)
        return None
    if any(array.shape[0] != n for array in arrays):
        return None
    return MappedLogits(arrays[0]) if topk is None else TopKLogits(*arrays, num_classes=classes)
