"""Seeded, stratified index splits (each class keeps its share of the samples)."""

from __future__ import annotations

import math
import numbers

import torch

from ..errors import ConfigError


def allocate_per_class(counts: torch.Tensor, total: int, min_per_class: int = 0) -> torch.Tensor:
    """Split ``total`` into per-class quotas proportional to ``counts`` that sum exactly to ``total``.

    quota_c = min_per_class + floor(r * n_c / N') plus one for the classes with the largest remainders,
    where r = total - C * min_per_class and N' = sum_c (n_c - min_per_class) (the largest-remainder
    method of apportionment; ties go to the lower class index). No quota exceeds its class count.
    """
    counts = counts.to(torch.int64)
    if total < 0 or total > int(counts.sum()):
        raise ValueError(f"total={total} must be in [0, {int(counts.sum())}]")
    present = counts > 0
    floor_ = torch.where(present, torch.clamp(counts, max=min_per_class), torch.zeros_like(counts))
    rest, room = total - int(floor_.sum()), counts - floor_
    if rest < 0:
        raise ValueError(f"total={total} is smaller than the per-class minimum {int(floor_.sum())}")
    if rest == 0 or int(room.sum()) == 0:
        return floor_
    share = room.to(torch.float64) * rest / float(room.sum())
    quota = torch.minimum(share.floor().to(torch.int64), room)
    left = rest - int(quota.sum())
    remainder = torch.where(quota < room, share - quota, torch.full_like(share, -1.0))
    # Stable sort on the negated remainder: largest first, lower class index first among ties.
    order = torch.sort(-remainder, stable=True).indices
    quota[order[:left]] += 1
    return floor_ + quota


def stratified_split(
    y: torch.Tensor, n_take: int, generator: torch.Generator, min_per_class: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(kept, taken)`` sorted int64 positions: ``n_take`` samples drawn per class in proportion.

    Within each class the taken samples are a uniformly random subset chosen with ``generator``, so the
    split is a pure function of ``(y, n_take, generator state)``.
    """
    y = torch.as_tensor(y).to(torch.int64)
    n = int(y.shape[0])
    if n == 0:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty.clone()
    classes, inverse, counts = torch.unique(y, sorted=True, return_inverse=True, return_counts=True)
    quota = allocate_per_class(counts, n_take, min_per_class)
    # One random key per sample; within a class, the samples with the smallest keys are taken.
    keys = torch.rand(n, generator=generator, dtype=torch.float64)
    order = torch.argsort(inverse.to(torch.float64) * 2.0 + keys)  # grouped by class, random within
    starts = torch.cumsum(counts, 0) - counts
    rank_in_class = torch.empty(n, dtype=torch.int64)
    rank_in_class[order] = torch.arange(n) - starts.repeat_interleave(counts)
    take_mask = rank_in_class < quota[inverse]
    taken = torch.nonzero(take_mask).flatten()
    kept = torch.nonzero(~take_mask).flatten()
    return kept, taken


def resolve_val_size(val_size: float | int, n_train: int) -> int:
    """Turn ``val_size`` (a fraction in [0, 1) if float, a count in [0, n_train) if int) into a count."""
    if isinstance(val_size, bool) or not isinstance(val_size, numbers.Real):
        raise ConfigError(
            f"val_size={val_size!r} is invalid; allowed: a fraction in [0, 1) or a count in [0, {n_train})"
        )
    if isinstance(val_size, numbers.Integral):
        count = int(val_size)
    else:
        if math.isnan(val_size) or not 0.0 <= val_size < 1.0:
            raise ConfigError(
                f"val_size={val_size!r} is invalid; allowed: a fraction in [0, 1) or an int count in [0, {n_train})"
            )
        count = round(float(val_size) * n_train)
    if not 0 <= count < n_train:
        raise ConfigError(
            f"val_size={val_size!r} ({count} of {n_train} training samples) is invalid; allowed: a fraction "
            f"in [0, 1) or a count in [0, {n_train}) that leaves at least one training sample"
        )
    return count


def check_train_subset(train_subset: int | None, available: int, num_classes: int) -> None:
    """Raise ConfigError unless ``train_subset`` is None or an int in [num_classes, available]."""
    if train_subset is None:
        return
    if isinstance(train_subset, bool) or not isinstance(train_subset, numbers.Integral) or not (
        num_classes <= train_subset <= available
    ):
        raise ConfigError(
            f"train_subset={train_subset!r} is invalid; allowed: an int in [{num_classes}, {available}] "
            f"(at least one sample per class, at most the training samples left after the validation split)"
        )
