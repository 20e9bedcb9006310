"""The in-memory dataset types and the registry of dataset sources."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..batch import Inputs, batch_len, slice_rows, take_rows
from ..errors import ConfigError
from ..registry import Registry


@dataclass
class RawDataset:
    """What a dataset source returns: the official train and test arrays before splitting and scaling.

    Images are integer arrays ``[N, C, H, W]`` with values in ``[0, max_value]``; vectors are float
    arrays ``[N, D]`` with ``max_value=None``. ``normalize=False`` keeps the values as they are
    (synthetic data whose density must stay exactly known).
    """

    x_train: np.ndarray | torch.Tensor
    y_train: np.ndarray | torch.Tensor
    x_test: np.ndarray | torch.Tensor
    y_test: np.ndarray | torch.Tensor
    class_names: list[str]
    in_shape: tuple[int, ...]
    max_value: float | None = 255.0
    normalize: bool = True
    info: dict[str, Any] = field(default_factory=dict)


# A source factory: ``factory(data_dir=..., download=..., **options) -> RawDataset``.
DATASETS: Registry[Callable[..., RawDataset]] = Registry("dataset")


@dataclass(eq=False)
class ArrayDataset:
    """A dataset held in memory: ``x`` float32 (``[N,C,H,W]`` images or ``[N,D]`` vectors) or a mapping of named
    tensors ``[N, ...]`` (``input_ids``, ``attention_mask``: passed to the model as keyword arguments), ``y`` int64
    ``[N]``.

    The tensors are treated as immutable: ``fingerprint()`` is computed once and cached.
    """

    x: Inputs
    y: torch.Tensor
    _fingerprint: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if batch_len(self.x) != self.y.shape[0]:
            raise ValueError(f"x has {batch_len(self.x)} rows but y has {self.y.shape[0]}; they must match")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: torch.Tensor | Sequence[int]) -> "ArrayDataset":
        """Return the samples at ``index`` (positions, or a boolean mask of length N) as a new dataset."""
        index = torch.as_tensor(index)
        index = torch.nonzero(index).flatten() if index.dtype == torch.bool else index.to(torch.int64)
        return ArrayDataset(take_rows(self.x, index), self.y[index])

    def head(self, n: int) -> Inputs:
        """The inputs of the first ``n`` samples (a real batch to set up feature taps with)."""
        return slice_rows(self.x, 0, n)

    def fingerprint(self) -> str:
        """SHA-256 hex over the dtype, shape and bytes of ``x`` (each named input in name order) and ``y``; cached
        after the first call."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            named = [self.x] if isinstance(self.x, torch.Tensor) else [self.x[k] for k in sorted(self.x)]
            if not isinstance(self.x, torch.Tensor):
                digest.update(("|".join(sorted(self.x)) + "|").encode())
            for t in (*named, self.y):
                _hash_tensor(digest, t)
            self._fingerprint = digest.hexdigest()
        return self._fingerprint


def as_array_dataset(dataset: Any) -> ArrayDataset:
    """``dataset`` as an :class:`ArrayDataset`: itself, or a ``torch.utils.data.TensorDataset(inputs, labels)``
    whose two tensors are used as they are (no copy; labels as int64)."""
    if isinstance(dataset, ArrayDataset):
        return dataset
    if isinstance(dataset, TensorDataset):
        tensors = dataset.tensors
        if len(tensors) != 2 or tensors[1].ndim != 1 or tensors[1].is_floating_point() or tensors[1].is_complex():
            shapes = ", ".join(f"{t.dtype} {list(t.shape)}" for t in tensors)
            raise ConfigError(f"TensorDataset({shapes}) is not allowed; allowed: TensorDataset(inputs [N, ...], "
                              "integer labels [N])")
        return ArrayDataset(tensors[0], tensors[1].to(torch.int64))
    raise ConfigError(f"a dataset of type {type(dataset).__name__} cannot be held by a TensorLoader; allowed: "
                      "ArrayDataset, TensorDataset(inputs, labels); any other Dataset goes through a torch DataLoader "
                      "(or kdlab.data.DatasetLoader for reproducible order)")


@dataclass(eq=False)
class DataSplits:
    """Train/validation/test splits of one dataset plus what a model needs to know about them.

    ``mean``/``std`` are the per-channel statistics already applied to ``x`` (computed on the train
    part of the train/validation split); for unnormalised vector data they are all 0 and 1.
    ``source_info`` carries source-specific objects, e.g. ``{"mixture": GaussianMixture}``.
    """

    name: str
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    num_classes: int
    in_shape: tuple[int, ...]
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source_info: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    _fingerprint: str | None = field(default=None, init=False, repr=False)

    def fingerprint(self) -> str:
        """SHA-256 hex over the name and the fingerprints of the train, val and test splits; cached."""
        if self._fingerprint is None:
            digest = hashlib.sha256(self.name.encode("utf-8"))
            for part in (self.train, self.val, self.test):
                digest.update(part.fingerprint().encode("ascii"))
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def summary(self) -> dict[str, Any]:
        """A JSON-able description for run manifests: sizes, shapes, statistics, options and fingerprint."""
        return {
            "name": self.name,
            "num_train": len(self.train),
            "num_val": len(self.val),
            "num_test": len(self.test),
            "num_classes": self.num_classes,
            "in_shape": list(self.in_shape),
            "mean": list(self.mean),
            "std": list(self.std),
            "options": dict(self.options),
            "fingerprint": self.fingerprint(),
        }


def _hash_tensor(digest: "hashlib._Hash", t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    digest.update(f"{t.dtype}|{tuple(t.shape)}|".encode("ascii"))
    if t.numel():
        # Viewing as bytes hashes the buffer in place instead of copying a ~200 MB array.
        digest.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
