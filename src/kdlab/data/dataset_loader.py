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

from typing import Iterator

from torch.utils.data import DataLoader, Dataset

from .loader import Batch, SeededOrderLoader
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


class DatasetLoader(SeededOrderLoader):
    """Iterate over a map-style ``dataset`` whose item i is ``(x, y, i)`` in batches ``Batch(x, y, index)``."""

    def __init__(self, dataset: Dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, augment: BatchTransform | None = None, rank: int = 0, world_size: int = 1,
                 num_workers: int = 0) -> None:
        self._set_order(dataset, batch_size, shuffle, seed, drop_last, augment, rank, world_size)
        self._loader = DataLoader(dataset, batch_sampler=_EpochBatches(self), num_workers=num_workers,
                                  persistent_workers=num_workers > 0)

    def __iter__(self) -> Iterator[Batch]:
        for b, (x, y, index) in enumerate(self._loader):
            yield Batch(self._augmented(x, b), y, index)
