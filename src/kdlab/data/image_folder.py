"""Images in class folders, decoded with Pillow (no torchvision): in memory, or streamed from disk.

Layout (``data.data_dir``)::

    ROOT/train/<class>/*.png|jpg|jpeg      the training set (the validation split is drawn from it, data.val_size)
    ROOT/test/<class>/*.png|jpg|jpeg       the test set; its class folders are a subset of the training set's

Classes are the training set's folder names in sorted order (label = position); files are taken in sorted order.
Options: ``image_size`` (an int or [H, W]: every image is resized to it with bilinear filtering; default: none, and
then every image must have the size of the first), ``channels`` (3: RGB, 1: grayscale; default 3).

``data.name: image_folder`` decodes every image into memory (:func:`load_image_folder`, then the usual splits,
normalisation and :class:`~kdlab.data.loader.TensorLoader`). With ``data.streaming: true`` nothing is held in memory
but the file list: :func:`open_image_folder` gives :class:`ImageFiles` datasets that decode a sample when it is asked
for, batched by :class:`~kdlab.data.dataset_loader.DatasetLoader`, so a dataset larger than memory trains with
memory bounded by a batch (and the decoding workers' batches). The splits are the same as in memory (same seeded
stratified validation split and train subset), and the per-channel mean and std come from one streamed pass over
the training part (float64 sums of x and x^2), or from ``options.mean``/``options.std`` when given.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .base import DATASETS, RawDataset
from .streaming import (STREAMING_SOURCES, DecodedImages, StreamedSplits, given_mean_std, image_pixels,
                        parse_channels, parse_image_size, streamed_splits)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class ImageList:
    """The files of one split and their labels."""

    root: Path
    files: tuple[str, ...]          # paths relative to root
    labels: np.ndarray              # int64 [N]
    class_names: tuple[str, ...]


def scan_image_folder(root: Path, class_names: Sequence[str] | None = None) -> ImageList:
    """The images under ``root/<class>/`` (sorted); ``class_names`` fixes the label of each folder (test sets)."""
    if not root.is_dir():
        raise DataError(f"image folder '{root}' does not exist; expected ROOT/train/<class>/*.png and "
                        "ROOT/test/<class>/*.png")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    names = tuple(class_names) if class_names is not None else tuple(folders)
    unknown = sorted(set(folders) - set(names))
    if unknown:
        raise DataError(f"'{root}' has class folders the training set does not have: {', '.join(unknown[:5])}")
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(names):
        folder = root / name
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                files.append(f"{name}/{path.name}")
                labels.append(label)
    if not files:
        raise DataError(f"image folder '{root}' holds no {'/'.join(IMAGE_SUFFIXES)} file in a class folder")
    return ImageList(root, tuple(files), np.asarray(labels, dtype=np.int64), names)


def decode_image(path: Path, size: tuple[int, int] | None, channels: int) -> np.ndarray:
    """One image file as uint8 ``[C, H, W]``: converted to RGB or grayscale, resized (bilinear) to ``size`` if given."""
    # Pillow is a dependency of matplotlib (so always installed); imported here, on purpose, because only the image
    # sources decode images and the import costs ~50 ms
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image_pixels(image, size, channels)
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"image '{path}' cannot be decoded: {exc}") from None


def _decode_all(images: ImageList, size: tuple[int, int] | None, channels: int) -> np.ndarray:
    first = decode_image(images.root / images.files[0], size, channels)
    out = np.empty((len(images.files), *first.shape), dtype=np.uint8)
    for i, name in enumerate(images.files):
        pixels = first if i == 0 else decode_image(images.root / name, size, channels)
        if pixels.shape != first.shape:
            raise DataError(f"image '{images.root / name}' is {list(pixels.shape)} but '{images.files[0]}' is "
                            f"{list(first.shape)}; give data.options.image_size to resize every image")
        out[i] = pixels
    return out


@DATASETS.register("image_folder")
def load_image_folder(data_dir: str | os.PathLike | None = None, download: bool = False, image_size: Any = None,
                      channels: int = 3, mean: Sequence[float] | None = None,
                      std: Sequence[float] | None = None) -> RawDataset:
    """ROOT/train and ROOT/test decoded into memory as uint8 ``[N, C, H, W]`` (the module docstring).

    Without ``mean``/``std`` the splits are normalised with the training part's statistics, as every in-memory
    source; with them, the images are normalised here with the given values exactly as :class:`ImageFiles` does
    (float32 ``(x / 255 - mean) / std``), so the in-memory and the streamed forms hold the same numbers.
    """
    # options first: a bad option never waits for a scan
    size, channels = parse_image_size(image_size), parse_channels(channels)
    given = given_mean_std(mean, std, channels)
    train, test = _scan(data_dir)
    x_train = _decode_all(train, size, channels)
    x_test = _decode_all(test, size, channels)
    if x_test.shape[1:] != x_train.shape[1:]:
        raise DataError(f"test images are {list(x_test.shape[1:])} but training images {list(x_train.shape[1:])}; "
                        "give data.options.image_size")
    names, shape = list(train.class_names), tuple(x_train.shape[1:])
    if given is None:
        return RawDataset(x_train, train.labels, x_test, test.labels, names, shape)
    scale = DecodedImages(np.zeros(0), size, channels, *given)
    return RawDataset(scale.normalise(torch.from_numpy(x_train)), train.labels,
                      scale.normalise(torch.from_numpy(x_test)), test.labels, names, shape, max_value=None,
                      normalize=False)


def _scan(data_dir: str | os.PathLike | None) -> tuple[ImageList, ImageList]:
    if data_dir is None:
        raise ConfigError("data.name='image_folder' needs data.data_dir: a directory with train/<class>/ and "
                          "test/<class>/ image folders")
    root = Path(data_dir).expanduser()
    train = scan_image_folder(root / "train")
    return train, scan_image_folder(root / "test", train.class_names)


class ImageFiles(DecodedImages):
    """The image files of one split, decoded on demand (:class:`~kdlab.data.streaming.DecodedImages`).

    ``fingerprint()`` hashes the relative paths, sizes and modification times of the files (not their bytes: reading
    every file to key the teacher-output cache would cost a whole epoch), with the labels, image size, channels and
    normalisation.
    """

    def __init__(self, root: Path, files: Sequence[str], labels: np.ndarray, size: tuple[int, int] | None,
                 channels: int, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__(labels, size, channels, mean, std)
        self.root, self.files = root, tuple(files)

    def pixels(self, i: int) -> np.ndarray:
        """The raw uint8 ``[C, H, W]`` pixels of sample ``i``."""
        return decode_image(self.root / self.files[i], self.size, self.channels)

    def fingerprint(self) -> str:
        """SHA-256 over (relative path, size, mtime_ns, label) of every file and the decoding settings; cached."""
        if self._fingerprint is None:
            digest = hashlib.sha256(self.settings().encode())
            for name, label in zip(self.files, self.labels.tolist()):
                stat = (self.root / name).stat()
                digest.update(f"{name}|{stat.st_size}|{stat.st_mtime_ns}|{label}\n".encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint


@STREAMING_SOURCES.register("image_folder")
def open_image_folder(data_dir: str | os.PathLike | None = None, *, val_size: float | int = 0.1, seed: int = 0,
                      train_subset: int | None = None, image_size: Any = None, channels: int = 3,
                      mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> StreamedSplits:
    """The image folder as streamed splits: the same samples in the same splits as :func:`load_image_folder` through
    ``load_dataset`` (seeded stratified validation split, then the stratified ``train_subset``)."""
    size, channels = parse_image_size(image_size), parse_channels(channels)
    given = given_mean_std(mean, std, channels)
    images = dict(zip(("train", "test"), _scan(data_dir)))

    def part(split: str, rows: list[int] | None, mean: Sequence[float], std: Sequence[float]) -> ImageFiles:
        found = images[split]
        chosen = range(len(found.files)) if rows is None else rows
        return ImageFiles(found.root, [found.files[i] for i in chosen], found.labels[list(chosen)], size, channels,
                          mean, std)

    train = images["train"]
    return streamed_splits("image_folder", train.labels, train.class_names, part,
                           lambda i: decode_image(train.root / train.files[i], size, channels), val_size=val_size,
                           seed=seed, train_subset=train_subset, channels=channels, given=given,
                           options={"image_size": image_size, "channels": channels})
