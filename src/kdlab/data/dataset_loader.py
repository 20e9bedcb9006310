"""Batches from a map-style dataset that decodes samples on demand (an image folder on disk), in kdlab's
reproducible order: the streamed counterpart of :class:`~kdlab.data.loader.TensorLoader`.

The order of epoch e is the TensorLoader's (a pure function of ``(seed, e)``; under torchrun each rank takes the
strided shard ``perm[rank::world_size]`` of one shared permutation, padded by wrapping around, as
``DistributedSampler`` does), and batch b of epoch e on rank r is augmented with the generator of
``(seed, e, r, b)``, so the same data in memory and streamed gives the same batches, and a resumed run equals an
uninterrupted one. Samples are decoded by a torch ``DataLoader`` whose batch sampler is that order, in
``num_workers`` worker processes (0: in this process).
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import ConfigError
from .loader import Batch, epoch_order
from .seeding import generator_for
from .transforms import BatchTransform


class _EpochBatches:
    """The batch sampler: lists of dataset positions, in the loader's order of its current epoch."""

    def __init__(self, loader: "DatasetLoader") -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[list[int]]:
        order = self.loader.epoch_indices()
        size = self.loader.batch_size
        for b in range(len(self.loader)):
            yield order[b * size:(b + 1) * size].tolist()

    def __len__(self) -> int:
        return len(self.loader)


class DatasetLoader:
    """Iterate over a map-style ``dataset`` whose item i is ``(x, y, i)`` in batches ``Batch(x, y, index)``."""

    def __init__(self, dataset: Dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, augment: BatchTransform | None = None, rank: int = 0, world_size: int = 1,
                 num_workers: int = 0) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r} is invalid; allowed: an int >= 1")
        if not isinstance(world_size, int) or world_size < 1 or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ConfigError(f"rank={rank!r}, world_size={world_size!r} are invalid; allowed: 0 <= rank < world_size")
        self.dataset, self.batch_size = dataset, batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.augment, self.rank, self.world_size = augment, rank, world_size
        self.epoch = 0
        self._loader = DataLoader(dataset, batch_sampler=_EpochBatches(self), num_workers=num_workers,
                                  persistent_workers=num_workers > 0)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration produces."""
        self.epoch = int(epoch)

    @property
    def augment_spec(self) -> dict[str, Any] | None:
        """The augmentation's ``spec()``, or None without augmentation."""
        return None if self.augment is None else self.augment.spec()

    def num_samples(self) -> int:
        """Samples this rank sees per epoch (before ``drop_last``)."""
        n = len(self.dataset)  # type: ignore[arg-type]
        return n if self.world_size == 1 else math.ceil(n / self.world_size)

    def __len__(self) -> int:
        m = self.num_samples()
        return m // self.batch_size if self.drop_last else math.ceil(m / self.batch_size)

    def epoch_indices(self) -> torch.Tensor:
        """The dataset positions this rank visits in the current epoch, in order."""
        return epoch_order(len(self.dataset), self.shuffle, self.seed, self.epoch, self.rank,  # type: ignore[arg-type]
                           self.world_size)

    def __iter__(self) -> Iterator[Batch]:
        for b, (x, y, index) in enumerate(self._loader):
            if self.augment is not None:
                x = self.augment(x, generator_for(self.seed, "augment", self.epoch, self.rank, b))
            yield Batch(x, y, index)
