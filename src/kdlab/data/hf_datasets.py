"""Image classification data saved with Hugging Face ``datasets``, in memory or streamed (``kdlab[datasets]``).

Layout (``data.data_dir``): a directory written by ``DatasetDict.save_to_disk`` with a ``train`` and a ``test``
split. kdlab never downloads: a hub dataset is saved once where the hub is reachable
(``datasets.load_dataset("cifar100").save_to_disk(DIR)``) and read here with ``load_from_disk``, which memory-maps the
Arrow files, so ``data.streaming: true`` reads one row at a time and data larger than memory trains in memory bounded
by a batch, as the image folder does (same seeded splits, statistics from one streamed pass or given, same
:class:`~kdlab.data.dataset_loader.DatasetLoader`, same memory-mapped teacher-output cache).

Options: ``image_column`` (default ``image``: a ``datasets.Image`` feature, decoded to a Pillow image, or integers in
0..255 shaped ``[H, W]`` / ``[H, W, C]``), ``label_column`` (default ``label``: integers 0..K-1; the class names are the
``ClassLabel`` feature's names, else the label numbers), and ``image_size``, ``channels``, ``mean``, ``std`` as for
the image folder.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..extras import require
from .base import DATASETS, RawDataset
from .streaming import (STREAMING_SOURCES, DecodedImages, StreamedSplits, given_mean_std, image_pixels,
                        parse_channels, parse_image_size, streamed_splits)


def _open(data_dir: str | os.PathLike | None, image_column: str, label_column: str) -> dict[str, Any]:
    """The ``train`` and ``test`` splits of a saved DatasetDict, each reduced to its image column (its labels are read
    into memory: 8 bytes per sample), with the class names."""
    if data_dir is None:
        raise ConfigError("data.name='hf_dataset' needs data.data_dir: a directory written by "
                          "datasets.DatasetDict.save_to_disk with 'train' and 'test' splits")
    # imported lazily, on purpose: an optional extra (kdlab[datasets]) that only this source needs
    datasets = require("datasets", "data.name: hf_dataset")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"data.data_dir='{root}' does not exist; expected a directory written by "
                        "datasets.DatasetDict.save_to_disk")
    try:
        saved = datasets.load_from_disk(str(root))
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(f"data.data_dir='{root}' is not a saved Hugging Face dataset: {exc}") from None
    splits = list(saved.keys()) if isinstance(saved, datasets.DatasetDict) else []
    if not {"train", "test"} <= set(splits):
        raise DataError(f"data.data_dir='{root}' holds splits {splits or 'none (a single Dataset)'}; kdlab needs "
                        "a DatasetDict with 'train' and 'test' (the validation split is drawn from 'train')")
    columns = saved["train"].column_names
    for key, column in (("image_column", image_column), ("label_column", label_column)):
        if column not in columns:
            raise ConfigError(f"data.options.{key}={column!r} is not a column of '{root}'; allowed: "
                              f"{', '.join(columns)}")
    labels = {split: np.asarray(saved[split][label_column], dtype=np.int64) for split in ("train", "test")}
    feature = saved["train"].features[label_column]
    names = list(getattr(feature, "names", None) or [str(k) for k in range(int(labels["train"].max()) + 1)])
    for split, values in labels.items():
        if values.size == 0 or values.min() < 0 or values.max() >= len(names):
            raise DataError(f"'{root}' split '{split}': labels must be integers in 0..{len(names) - 1} "
                            f"({len(names)} classes), found {values.min() if values.size else 'none'}.."
                            f"{values.max() if values.size else 'none'}")
    return {"root": root, "names": names, "labels": labels,
            "rows": {split: saved[split].select_columns([image_column]) for split in ("train", "test")},
            "files": [f["filename"] for split in ("train", "test") for f in saved[split].cache_files]}


def row_pixels(rows: Any, row: int, column: str, size: tuple[int, int] | None, channels: int) -> np.ndarray:
    """Row ``row`` of a Dataset's image column as uint8 ``[C, H, W]`` (a Pillow image or integers in 0..255)."""
    # Pillow: see streaming.image_pixels (imported where images are decoded)
    from PIL import Image

    value = rows[int(row)][column]
    if not isinstance(value, Image.Image):
        array = np.asarray(value)  # an Array or Sequence feature: nested lists of ints unless formatted as numpy
        pixels_ok = array.dtype.kind in "iu" and array.size > 0 and 0 <= array.min() and array.max() <= 255
        if not pixels_ok or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3)):
            raise DataError(f"column '{column}' row {row} is a {array.dtype} array of shape {list(array.shape)}; "
                            "allowed: a datasets.Image feature or integers in 0..255 shaped [H, W] or [H, W, 1|3]")
        array = array.astype(np.uint8)
        value = Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array)
    return image_pixels(value, size, channels)


class HFImages(DecodedImages):
    """Rows of a Hugging Face Dataset's image column, decoded on demand (:class:`~kdlab.data.streaming.DecodedImages`).

    ``fingerprint()`` hashes the Arrow files' names, sizes and modification times (not their bytes, as for image
    files), the rows taken and their labels, the column and the decoding settings.
    """

    def __init__(self, rows: Any, indices: Sequence[int], column: str, files: Sequence[str], labels: np.ndarray,
                 size: tuple[int, int] | None, channels: int, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__(labels, size, channels, mean, std)
        self.rows, self.indices, self.column, self.files = rows, np.asarray(indices, dtype=np.int64), column, files

    def pixels(self, i: int) -> np.ndarray:
        """The raw uint8 ``[C, H, W]`` pixels of sample ``i``."""
        return row_pixels(self.rows, int(self.indices[i]), self.column, self.size, self.channels)

    def fingerprint(self) -> str:
        """SHA-256 over the Arrow files (name, size, mtime_ns), the rows, labels, column and decoding settings."""
        if self._fingerprint is None:
            digest = hashlib.sha256(f"{self.settings()}|{self.column}".encode())
            for name in self.files:
                stat = Path(name).stat()
                digest.update(f"{name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
            digest.update(self.indices.tobytes())
            digest.update(self.labels.tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint


def _parts(data_dir: Any, image_column: str, label_column: str, image_size: Any, channels: Any,
           mean: Any, std: Any) -> tuple[dict[str, Any], Any, tuple[int, int] | None, int, Any]:
    """Checked options (first: a bad option never waits for the data), the opened splits and a part builder."""
    size, channels = parse_image_size(image_size), parse_channels(channels)
    given = given_mean_std(mean, std, channels)
    opened = _open(data_dir, image_column, label_column)

    def part(split: str, rows: list[int] | None, mean: Sequence[float], std: Sequence[float]) -> HFImages:
        labels = opened["labels"][split]
        chosen = list(range(len(labels))) if rows is None else rows
        return HFImages(opened["rows"][split], chosen, image_column, opened["files"], labels[chosen], size,
                        channels, mean, std)

    return opened, part, size, channels, given


@DATASETS.register("hf_dataset")
def load_hf_dataset(data_dir: str | os.PathLike | None = None, download: bool = False, image_column: str = "image",
                    label_column: str = "label", image_size: Any = None, channels: int = 3,
                    mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> RawDataset:
    """The saved ``train`` and ``test`` splits decoded into memory as uint8 ``[N, C, H, W]`` (the module docstring);
    with ``mean``/``std`` normalised here exactly as the streamed form does, as :func:`load_image_folder` does."""
    opened, part, _, _, given = _parts(data_dir, image_column, label_column, image_size, channels, mean, std)
    x = {}
    for split in ("train", "test"):
        images = part(split, None, [0.0], [1.0])
        first = images.pixels(0)
        x[split] = np.empty((len(images), *first.shape), dtype=np.uint8)
        for i in range(len(images)):
            pixels = first if i == 0 else images.pixels(i)
            if pixels.shape != first.shape:
                raise DataError(f"'{opened['root']}' split '{split}' row {i} is {list(pixels.shape)} but row 0 is "
                                f"{list(first.shape)}; give data.options.image_size to resize every image")
            x[split][i] = pixels
    if x["test"].shape[1:] != x["train"].shape[1:]:
        raise DataError(f"test images are {list(x['test'].shape[1:])} but training images "
                        f"{list(x['train'].shape[1:])}; give data.options.image_size")
    y, names, shape = opened["labels"], opened["names"], tuple(x["train"].shape[1:])
    if given is None:
        return RawDataset(x["train"], y["train"], x["test"], y["test"], names, shape)
    scale = DecodedImages(np.zeros(0), None, len(given[0]), *given)
    return RawDataset(scale.normalise(torch.from_numpy(x["train"])), y["train"],
                      scale.normalise(torch.from_numpy(x["test"])), y["test"], names, shape, max_value=None,
                      normalize=False)


@STREAMING_SOURCES.register("hf_dataset")
def open_hf_dataset(data_dir: str | os.PathLike | None = None, *, val_size: float | int = 0.1, seed: int = 0,
                    train_subset: int | None = None, image_column: str = "image", label_column: str = "label",
                    image_size: Any = None, channels: int = 3, mean: Sequence[float] | None = None,
                    std: Sequence[float] | None = None) -> StreamedSplits:
    """The saved dataset as streamed splits: the same samples in the same splits as :func:`load_hf_dataset` through
    ``load_dataset`` (seeded stratified validation split, then the stratified ``train_subset``)."""
    opened, part, size, channels, given = _parts(data_dir, image_column, label_column, image_size, channels, mean,
                                                 std)
    train_rows = opened["rows"]["train"]
    return streamed_splits("hf_dataset", opened["labels"]["train"], opened["names"], part,
                           lambda i: row_pixels(train_rows, i, image_column, size, channels), val_size=val_size,
                           seed=seed, train_subset=train_subset, channels=channels, given=given,
                           options={"image_column": image_column, "label_column": label_column,
                                    "image_size": image_size, "channels": channels})
