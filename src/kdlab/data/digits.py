"""scikit-learn's bundled handwritten digits: 1797 8x8 images with 16 grey levels, always offline.

The data (Alpaydin & Kaynak, UCI "Optical Recognition of Handwritten Digits", test part) ships with
scikit-learn (``sklearn.datasets.load_digits``). It has no official test split, so a fixed seeded
stratified one is made here; ``load_dataset``'s ``seed`` then only moves the train/validation split.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import ConfigError
from .base import DATASETS, RawDataset
from .seeding import generator_for
from .splits import stratified_split

DIGIT_LEVELS = 16


@DATASETS.register("digits")
def load_digits_dataset(
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    test_size: float = 0.2,
    split_seed: int = 0,
) -> RawDataset:
    """Digits as raw arrays: uint8 images [N,1,8,8] with values 0..16, 10 classes, a stratified
    ``test_size`` fraction held out as the test set (the same for every ``split_seed``)."""
    from sklearn.datasets import load_digits  # lazily: scikit-learn takes about a second to import

    if not 0.0 < test_size < 1.0:
        raise ConfigError(f"digits option test_size={test_size!r} is invalid; allowed: a fraction in (0, 1)")
    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.uint8)[:, None, :, :]
    labels = np.asarray(bunch.target, dtype=np.int64)
    n_test = round(test_size * len(labels))
    train_idx, test_idx = stratified_split(torch.from_numpy(labels), n_test, generator_for(split_seed, "digits-test"))
    train_idx, test_idx = train_idx.numpy(), test_idx.numpy()
    return RawDataset(
        images[train_idx], labels[train_idx], images[test_idx], labels[test_idx],
        class_names=[str(d) for d in range(10)], in_shape=(1, 8, 8), max_value=float(DIGIT_LEVELS),
    )
