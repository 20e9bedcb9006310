"""Epochs over any iterable of batches: telling a loader which epoch starts, and how many batches an epoch has.

kdlab's own loaders (:class:`~kdlab.data.loader.TensorLoader`, :class:`~kdlab.data.dataset_loader.DatasetLoader`)
draw the order of epoch e as a pure function of (seed, e) and have ``set_epoch``. A torch ``DataLoader`` does not;
its ``DistributedSampler`` (and a Hugging Face ``datasets.IterableDataset``) does. Resume equivalence per kind of
loader (what a run resumed after epoch k sees, against an uninterrupted run):

- kdlab loaders, and a ``DataLoader`` whose sampler (or dataset) has ``set_epoch`` with an order that is a function
  of (seed, epoch) such as ``DistributedSampler``: exact (same batches, same weights on the CPU).
- A ``DataLoader(shuffle=True)`` without a ``generator``: exact as well, because its ``RandomSampler`` draws each
  epoch's seed from torch's global random state, which kdlab checkpoints at every epoch end and restores on resume.
- A ``DataLoader`` with its own ``generator=`` (its state is not checkpointed), an ``IterableDataset`` with its own
  shuffling, or any other iterable: epoch-granular. The run resumes after the last finished epoch with every
  finished epoch's record and weights kept, but the batches of later epochs may differ from the uninterrupted run.
"""

from __future__ import annotations

from typing import Any


def set_loader_epoch(loader: Any, epoch: int) -> None:
    """Call ``set_epoch(epoch)`` on the loader and on the sampler, batch sampler and dataset behind it, each that
    has one (a ``DataLoader`` over a ``DistributedSampler``, an ``IterableDataset`` that reshuffles per epoch)."""
    seen: set[int] = set()
    candidates = [loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None),
                  getattr(getattr(loader, "batch_sampler", None), "sampler", None), getattr(loader, "dataset", None)]
    for candidate in candidates:
        if candidate is None or id(candidate) in seen:
            continue
        seen.add(id(candidate))
        method = getattr(candidate, "set_epoch", None)
        if callable(method):
            method(epoch)
            return_here = candidate is loader  # kdlab's loaders forward the epoch themselves
            if return_here:
                return


def batches_per_epoch(loader: Any) -> int | None:
    """``len(loader)``, or None for a loader without a length (a ``DataLoader`` over an ``IterableDataset``)."""
    try:
        return len(loader)
    except TypeError:
        return None
