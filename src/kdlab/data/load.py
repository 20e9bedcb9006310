"""``load_dataset``: from a registered source to seeded, stratified, normalised train/val/test splits."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError
from . import (  # noqa: F401  (each registers its sources)
    cifar, digits, fashion_mnist, hf_datasets, hierarchical_mixture, image_folder, synthetic)
from .base import DATASETS, ArrayDataset, DataSplits, RawDataset
from .seeding import generator_for
from .splits import check_train_subset, resolve_val_size, stratified_split
from .transforms import channel_mean_std, normalize


_RECENT: "OrderedDict[str, DataSplits]" = OrderedDict()
_RECENT_SIZE = 4


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    val_size: float | int = 0.1,
    seed: int = 0,
    train_subset: int | None = None,
    download: bool = True,
    **options: Any,
) -> DataSplits:
    """Load dataset ``name`` as seeded, stratified, normalised splits (see :func:`build_splits`).

    The result is a pure function of the arguments, so the last few results are kept in memory: a study that
    trains dozens of models on the same data reads and normalises it once. Treat the returned tensors as read-only.
    """
    key = json.dumps([name, str(data_dir) if data_dir is not None else None, val_size, seed, train_subset, download,
                      options], sort_keys=True, default=str)
    if key in _RECENT:
        _RECENT.move_to_end(key)
        return _RECENT[key]
    splits = build_splits(name, data_dir=data_dir, val_size=val_size, seed=seed, train_subset=train_subset,
                          download=download, **options)
    _RECENT[key] = splits
    while len(_RECENT) > _RECENT_SIZE:
        _RECENT.popitem(last=False)
    return splits


def build_splits(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    val_size: float | int = 0.1,
    seed: int = 0,
    train_subset: int | None = None,
    download: bool = True,
    **options: Any,
) -> DataSplits:
    """Load dataset ``name`` and split it into train/val/test ``DataSplits``.

    1. The source returns the official train and test sets; ``options`` go to it.
    2. A stratified ``val_size`` (fraction in [0,1) if float, count if int) of the official train set
       becomes the validation split, drawn with ``seed``.
    3. Images are scaled to [0, 1] and standardised per channel, (x - mean_c) / std_c, with mean and std
       of the training part of step 2 -- before ``train_subset``, so a teacher trained on all the data
       and a student trained on a subset see identically normalised inputs and identical val/test sets.
       Sources with ``normalize=False`` (synthetic vectors) are left as they are (mean 0, std 1 reported).
    4. ``train_subset`` keeps that many training samples, stratified, at least one per class.

    The result is a pure function of the arguments: the same seed gives identical splits.
    """
    if not isinstance(name, str):
        raise ConfigError(f"dataset name={name!r} is invalid; allowed: {', '.join(DATASETS.names())}")
    name = name.replace("-", "_")
    DATASETS.get(name)  # unknown name -> ConfigError with the allowed names
    DATASETS.check_kwargs(name, options, skip=("data_dir", "download"))
    raw = DATASETS.get(name)(data_dir=data_dir, download=download, **options)

    x_all, y_all = _as_tensor(raw.x_train), _as_tensor(raw.y_train).to(torch.int64)
    x_test, y_test = _as_tensor(raw.x_test), _as_tensor(raw.y_test).to(torch.int64)
    num_classes = len(raw.class_names)
    _check_raw(name, raw, x_all, y_all, x_test, y_test, num_classes)

    n_val = resolve_val_size(val_size, len(y_all))
    train_idx, val_idx = stratified_split(y_all, n_val, generator_for(seed, "val-split"))
    check_train_subset(train_subset, len(train_idx), num_classes)

    x_all, x_test = _scale(x_all, raw.max_value), _scale(x_test, raw.max_value)
    channels = x_all.shape[1]
    if raw.normalize:
        mean, std = channel_mean_std(x_all[train_idx])
        x_all, x_test = normalize(x_all, mean, std), normalize(x_test, mean, std)
    else:
        mean, std = (0.0,) * channels, (1.0,) * channels

    if train_subset is not None and train_subset < len(train_idx):
        _, picked = stratified_split(
            y_all[train_idx], train_subset, generator_for(seed, "train-subset"), min_per_class=1
        )
        train_idx = train_idx[picked]

    return DataSplits(
        name=name,
        train=ArrayDataset(x_all[train_idx], y_all[train_idx]),
        val=ArrayDataset(x_all[val_idx], y_all[val_idx]),
        test=ArrayDataset(x_test, y_test),
        num_classes=num_classes,
        in_shape=tuple(raw.in_shape),
        class_names=list(raw.class_names),
        mean=mean,
        std=std,
        source_info=dict(raw.info),
        options={"val_size": val_size, "seed": seed, "train_subset": train_subset, **options},
    )


def _as_tensor(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    return a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))


def _scale(x: torch.Tensor, max_value: float | None) -> torch.Tensor:
    """Integer images to float32 in [0, 1]; float vectors to float32 unchanged."""
    if max_value is None:
        return x.to(torch.float32)
    return x.to(torch.float32, copy=True).div_(max_value)


def _check_raw(name: str, raw: RawDataset, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
               y_test: torch.Tensor, num_classes: int) -> None:
    """A source's arrays must agree with its declared shape and classes (a broken source fails here, loudly)."""
    for part, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if tuple(x.shape[1:]) != tuple(raw.in_shape) or x.shape[0] != y.shape[0]:
            raise DataError(
                f"dataset '{name}' {part} part has x {tuple(x.shape)} and y {tuple(y.shape)}; "
                f"expected x [N, {', '.join(map(str, raw.in_shape))}] and y [N]"
            )
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise DataError(f"dataset '{name}' {part} labels span {int(y.min())}..{int(y.max())}; "
                            f"expected 0..{num_classes - 1}")
    if len(y_train) == 0:
        raise DataError(f"dataset '{name}' has no training samples")
