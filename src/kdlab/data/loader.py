"""An in-memory batch iterator: index gathers on tensors, no worker processes, reproducible order."""

from __future__ import annotations

import math
from typing import Any, Iterator, NamedTuple

import torch
from torch.utils.data import TensorDataset

from ..batch import Inputs, take_rows
from ..errors import ConfigError
from .base import ArrayDataset, as_array_dataset
from .seeding import generator_for
from .transforms import BatchTransform


class Batch(NamedTuple):
    """One batch; ``index`` holds the samples' positions in the dataset (keys for teacher-output caches).

    ``x`` is a tensor or a mapping of named tensors (:mod:`kdlab.batch`)."""

    x: Inputs
    y: torch.Tensor
    index: torch.Tensor


def epoch_order(n: int, shuffle: bool, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """The dataset positions rank ``rank`` visits in ``epoch``: a permutation drawn from ``(seed, epoch)`` (or
    0..n-1 without ``shuffle``); with ``world_size > 1`` its strided shard ``perm[rank::world_size]`` after padding the
    permutation by wrapping around to a multiple of ``world_size`` (every rank gets ceil(n / world_size) samples, as
    with ``torch.utils.data.DistributedSampler``)."""
    order = torch.randperm(n, generator=generator_for(seed, "epoch-order", epoch)) if shuffle else torch.arange(n)
    if world_size > 1 and n > 0:
        total = math.ceil(n / world_size) * world_size
        order = order[torch.arange(total) % n]  # wrap around so the shards have equal length
        order = order[rank::world_size]
    return order


class SeededOrderLoader:
    """What every kdlab loader shares: the order of epoch e is :func:`epoch_order` of ``(seed, e)`` (this rank's
    shard under torchrun) and the augmentation of batch b of epoch e on rank r uses the generator of
    ``(seed, e, r, b)``. Subclasses set ``dataset`` (with ``len``) and iterate."""

    def _set_order(self, dataset: Any, batch_size: int, shuffle: bool, seed: int, drop_last: bool,
                   augment: BatchTransform | None, rank: int, world_size: int) -> None:
        """Validate and store the order's parameters (a ConfigError names a bad batch size, rank or world size)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r} is invalid; allowed: an int >= 1")
        if not isinstance(world_size, int) or world_size < 1:
            raise ConfigError(f"world_size={world_size!r} is invalid; allowed: an int >= 1")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ConfigError(f"rank={rank!r} is invalid; allowed: 0..{world_size - 1} (world_size={world_size})")
        self.dataset, self.batch_size = dataset, batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.augment, self.rank, self.world_size = augment, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration produces."""
        self.epoch = int(epoch)

    @property
    def augment_spec(self) -> dict[str, Any] | None:
        """The augmentation's ``spec()``, or None without augmentation."""
        return None if self.augment is None else self.augment.spec()

    def num_samples(self) -> int:
        """Samples this rank sees per epoch (before ``drop_last`` drops a short final batch)."""
        n = len(self.dataset)
        return n if self.world_size == 1 else math.ceil(n / self.world_size)

    def __len__(self) -> int:
        m = self.num_samples()
        return m // self.batch_size if self.drop_last else math.ceil(m / self.batch_size)

    def epoch_indices(self) -> torch.Tensor:
        """The dataset positions this rank visits in the current epoch, in order."""
        return epoch_order(len(self.dataset), self.shuffle, self.seed, self.epoch, self.rank, self.world_size)

    def _augmented(self, x: Inputs, b: int) -> Inputs:
        """Batch ``b``'s inputs after this epoch's augmentation (unchanged without one)."""
        if self.augment is None:
            return x
        return self.augment(x, generator_for(self.seed, "augment", self.epoch, self.rank, b))


class TensorLoader(SeededOrderLoader):
    """Iterate over an ``ArrayDataset`` (inputs a tensor or a mapping of named tensors), or a torch
    ``TensorDataset(inputs, labels)``, in batches.

    The order of epoch e is a pure function of ``(seed, e)`` and the augmentation of batch b of epoch e
    on rank r a pure function of ``(seed, e, r, b)``, so a resumed run sees exactly the batches of an
    uninterrupted one. With ``world_size > 1`` each rank takes a disjoint strided shard
    ``perm[rank::world_size]`` of one shared permutation, padded by wrapping around so every rank gets
    the same number of samples (as ``torch.utils.data.DistributedSampler`` does).
    """

    def __init__(
        self,
        dataset: ArrayDataset | TensorDataset,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        augment: BatchTransform | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self._set_order(as_array_dataset(dataset), batch_size, shuffle, seed, drop_last, augment, rank, world_size)

    def __iter__(self) -> Iterator[Batch]:
        order = self.epoch_indices()
        for b in range(len(self)):
            index = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = self._augmented(take_rows(self.dataset.x, index), b)
            yield Batch(x, self.dataset.y.index_select(0, index), index)
