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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from ..registry import Registry
from .base import DATASETS, RawDataset
from .seeding import generator_for
from .splits import check_train_subset, resolve_val_size, stratified_split

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

# datasets that can be streamed from disk (data.streaming: true): name -> opener(data_dir, val_size, seed,
# train_subset, **options) -> FolderSplits
STREAMING_SOURCES: Registry = Registry("streaming dataset")


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


def _size(image_size: Any) -> tuple[int, int] | None:
    if image_size is None:
        return None
    values = [image_size, image_size] if isinstance(image_size, int) and not isinstance(image_size, bool) \
        else list(image_size) if isinstance(image_size, (list, tuple)) else []
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096 for v in values):
        raise ConfigError(f"data.options.image_size={image_size!r} is not allowed; give an int or [H, W] in 1..4096")
    return int(values[0]), int(values[1])


def _channels(channels: Any) -> int:
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ConfigError(f"data.options.channels={channels!r} is not allowed; allowed: 1 (grayscale), 3 (RGB)")
    return int(channels)


def decode_image(path: Path, size: tuple[int, int] | None, channels: int) -> np.ndarray:
    """One image as uint8 ``[C, H, W]``: converted to RGB or grayscale, resized (bilinear) to ``size`` if given."""
    # Pillow is a dependency of matplotlib (so always installed); imported here, on purpose, because only the image
    # folder source decodes images and the import costs ~50 ms
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB" if channels == 3 else "L")
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            pixels = np.array(image, dtype=np.uint8)  # a writable copy: torch tensors are made from it
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"image '{path}' cannot be decoded: {exc}") from None
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


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
    size, channels = _size(image_size), _channels(channels)  # options first: a bad option never waits for a scan
    given = _given_stats(mean, std, channels)
    train, test = _scan(data_dir)
    x_train = _decode_all(train, size, channels)
    x_test = _decode_all(test, size, channels)
    if x_test.shape[1:] != x_train.shape[1:]:
        raise DataError(f"test images are {list(x_test.shape[1:])} but training images {list(x_train.shape[1:])}; "
                        "give data.options.image_size")
    names, shape = list(train.class_names), tuple(x_train.shape[1:])
    if given is None:
        return RawDataset(x_train, train.labels, x_test, test.labels, names, shape)
    scale = ImageFiles(train.root, (), np.zeros(0), size, channels, *given)
    return RawDataset(scale.normalise(torch.from_numpy(x_train)), train.labels,
                      scale.normalise(torch.from_numpy(x_test)), test.labels, names, shape, max_value=None,
                      normalize=False)


def _given_stats(mean: Any, std: Any, channels: int) -> tuple[list[float], list[float]] | None:
    """``(mean, std)`` from ``data.options`` as lists of floats (one per channel, std > 0), or None when not given."""
    if (mean is None) != (std is None):
        raise ConfigError("data.options: give both mean and std (one value per channel), or neither")
    if mean is None:
        return None
    for key, values in (("mean", mean), ("std", std)):
        if (not isinstance(values, (list, tuple)) or len(values) != channels
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
            raise ConfigError(f"data.options.{key}={values!r} is not allowed; give {channels} numbers (one per "
                              "channel)")
    if not all(v > 0 for v in std):
        raise ConfigError(f"data.options.std={list(std)} is not allowed; every std must be > 0")
    return [float(v) for v in mean], [float(v) for v in std]


def _scan(data_dir: str | os.PathLike | None) -> tuple[ImageList, ImageList]:
    if data_dir is None:
        raise ConfigError("data.name='image_folder' needs data.data_dir: a directory with train/<class>/ and "
                          "test/<class>/ image folders")
    root = Path(data_dir).expanduser()
    train = scan_image_folder(root / "train")
    return train, scan_image_folder(root / "test", train.class_names)


class ImageFiles(Dataset):
    """A map-style dataset of image files: item i is ``(x float32 [C, H, W] normalised, y int64, i)``.

    Decoding happens in ``__getitem__``, so only the samples being batched are in memory. ``fingerprint()`` hashes
    the relative paths, sizes and modification times of the files (not their bytes: reading every file to key the
    teacher-output cache would cost a whole epoch), with the labels, image size, channels and normalisation.
    """

    def __init__(self, root: Path, files: Sequence[str], labels: np.ndarray, size: tuple[int, int] | None,
                 channels: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.root, self.files, self.labels = root, tuple(files), np.asarray(labels, dtype=np.int64)
        self.size, self.channels = size, channels
        self.mean = torch.tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.files)

    def pixels(self, i: int) -> np.ndarray:
        """The raw uint8 ``[C, H, W]`` pixels of sample ``i``."""
        return decode_image(self.root / self.files[i], self.size, self.channels)

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 pixels ``[..., C, H, W]`` -> float32 ``(x / 255 - mean_c) / std_c``: the in-memory path's arithmetic
        (scale to [0, 1] in float32, then standardise), so both forms give the same values for the same statistics."""
        return (pixels.to(torch.float32).div_(255.0) - self.mean) / self.std

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.normalise(torch.from_numpy(self.pixels(int(i)))), torch.tensor(self.labels[i]), \
            torch.tensor(int(i))

    @property
    def y(self) -> torch.Tensor:
        """Every label (held in memory: 8 bytes per sample)."""
        return torch.from_numpy(self.labels)

    def head(self, n: int) -> torch.Tensor:
        """The inputs of the first ``n`` samples as one batch (a real batch to set up feature taps with)."""
        return torch.stack([self[i][0] for i in range(min(n, len(self)))])

    def fingerprint(self) -> str:
        """SHA-256 over (relative path, size, mtime_ns, label) of every file and the decoding settings; cached."""
        if self._fingerprint is None:
            digest = hashlib.sha256(repr((self.size, self.channels, self.mean.flatten().tolist(),
                                          self.std.flatten().tolist())).encode())
            for name, label in zip(self.files, self.labels.tolist()):
                stat = (self.root / name).stat()
                digest.update(f"{name}|{stat.st_size}|{stat.st_mtime_ns}|{label}\n".encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint


@dataclass(eq=False)
class FolderSplits:
    """Train/validation/test :class:`ImageFiles` of one image folder, with what a model needs to know about them
    (the streamed counterpart of :class:`~kdlab.data.base.DataSplits`)."""

    name: str
    train: ImageFiles
    val: ImageFiles
    test: ImageFiles
    num_classes: int
    in_shape: tuple[int, ...]
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    options: dict[str, Any] = field(default_factory=dict)


def streamed_mean_std(root: Path, files: Sequence[str], size: tuple[int, int] | None,
                      channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of pixels / 255 over ``files``, decoded one at a time (float64 sums of
    x and x^2: std = sqrt(E[x^2] - E[x]^2)); a channel without spread gets std 1, as in memory."""
    total = np.zeros(channels, dtype=np.float64)
    squares = np.zeros(channels, dtype=np.float64)
    count = 0
    for name in files:
        x = decode_image(root / name, size, channels).astype(np.float64).reshape(channels, -1) / 255.0
        total += x.sum(axis=1)
        squares += (x * x).sum(axis=1)
        count += x.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
    return tuple(float(m) for m in mean), tuple(float(s) if s > 0 else 1.0 for s in std)


@STREAMING_SOURCES.register("image_folder")
def open_image_folder(data_dir: str | os.PathLike | None = None, *, val_size: float | int = 0.1, seed: int = 0,
                      train_subset: int | None = None, image_size: Any = None, channels: int = 3,
                      mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> FolderSplits:
    """The image folder as streamed splits: the same samples in the same splits as :func:`load_image_folder` through
    ``load_dataset`` (seeded stratified validation split, then the stratified ``train_subset``)."""
    size, channels = _size(image_size), _channels(channels)
    given = _given_stats(mean, std, channels)
    train, test = _scan(data_dir)
    labels = torch.from_numpy(train.labels)
    num_classes = len(train.class_names)
    n_val = resolve_val_size(val_size, len(labels))
    train_idx, val_idx = stratified_split(labels, n_val, generator_for(seed, "val-split"))
    check_train_subset(train_subset, len(train_idx), num_classes)
    if given is None:
        mean, std = streamed_mean_std(train.root, [train.files[i] for i in train_idx.tolist()], size, channels)
    else:
        mean, std = given
    if train_subset is not None and train_subset < len(train_idx):
        _, picked = stratified_split(labels[train_idx], train_subset, generator_for(seed, "train-subset"),
                                     min_per_class=1)
        train_idx = train_idx[picked]

    def part(images: ImageList, index: torch.Tensor | None) -> ImageFiles:
        chosen = range(len(images.files)) if index is None else index.tolist()
        return ImageFiles(images.root, [images.files[i] for i in chosen], images.labels[list(chosen)], size,
                          channels, mean, std)  # type: ignore[arg-type]

    first = part(train, train_idx[:1])
    in_shape = tuple(first.pixels(0).shape)
    return FolderSplits(name="image_folder", train=part(train, train_idx), val=part(train, val_idx),
                        test=part(test, None), num_classes=num_classes, in_shape=in_shape,
                        class_names=list(train.class_names), mean=tuple(mean), std=tuple(std),  # type: ignore[arg-type]
                        options={"val_size": val_size, "seed": seed, "train_subset": train_subset,
                                 "image_size": image_size, "channels": channels})


def open_streaming(name: str, **kwargs: Any) -> FolderSplits:
    """Open the streaming source ``name`` (``data.streaming: true``)."""
    return STREAMING_SOURCES.get(name)(**kwargs)
