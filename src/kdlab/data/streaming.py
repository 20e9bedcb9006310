"""Datasets streamed from disk (``data.streaming: true``): the registry of streaming sources, the map-style dataset of
images decoded on demand that each source yields, and the seeded splits they share.

A source (the image folder, a Hugging Face ``datasets`` directory) only says how to read sample i's pixels and how to
fingerprint its files; :func:`streamed_splits` then draws the same seeded stratified validation split and train
subset as :func:`~kdlab.data.load.load_dataset` does in memory, and the per-channel statistics come from one streamed
pass over the training part (or ``options.mean``/``options.std``), so a streamed run and an in-memory run of the
same data hold the same samples in the same splits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError
from ..registry import Registry
from .seeding import generator_for
from .splits import check_train_subset, resolve_val_size, stratified_split

# datasets that can be streamed from disk (data.streaming: true): name -> opener(data_dir, val_size, seed,
# train_subset, **options) -> StreamedSplits
STREAMING_SOURCES: Registry = Registry("streaming dataset")


def parse_image_size(image_size: Any) -> tuple[int, int] | None:
    """``data.options.image_size`` (an int or ``[H, W]``, each in 1..4096, or None) as ``(H, W)`` or None."""
    if image_size is None:
        return None
    values = [image_size, image_size] if isinstance(image_size, int) and not isinstance(image_size, bool) \
        else list(image_size) if isinstance(image_size, (list, tuple)) else []
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096 for v in values):
        raise ConfigError(f"data.options.image_size={image_size!r} is not allowed; give an int or [H, W] in 1..4096")
    return int(values[0]), int(values[1])


def parse_channels(channels: Any) -> int:
    """``data.options.channels``: 1 (grayscale) or 3 (RGB)."""
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ConfigError(f"data.options.channels={channels!r} is not allowed; allowed: 1 (grayscale), 3 (RGB)")
    return int(channels)


def given_mean_std(mean: Any, std: Any, channels: int) -> tuple[list[float], list[float]] | None:
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


def image_pixels(image: Any, size: tuple[int, int] | None, channels: int) -> np.ndarray:
    """A Pillow image as uint8 ``[C, H, W]``: converted to RGB or grayscale, resized (bilinear) to ``size`` if given."""
    # Pillow is a dependency of matplotlib (so always installed); imported here, on purpose, because only the image
    # sources decode images and the import costs ~50 ms
    from PIL import Image

    image = image.convert("RGB" if channels == 3 else "L")
    if size is not None and image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    pixels = np.array(image, dtype=np.uint8)  # a writable copy: torch tensors are made from it
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


class DecodedImages(Dataset):
    """A map-style dataset of images decoded on demand: item i is ``(x float32 [C, H, W] normalised, y int64, i)``.

    A source implements :meth:`pixels` (sample i's uint8 ``[C, H, W]``) and :meth:`fingerprint` (a key of the data
    for the teacher-output cache); only the samples being batched are ever in memory.
    """

    def __init__(self, labels: np.ndarray, size: tuple[int, int] | None, channels: int, mean: Sequence[float],
                 std: Sequence[float]) -> None:
        self.labels = np.asarray(labels, dtype=np.int64)
        self.size, self.channels = size, channels
        self.mean = torch.tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def pixels(self, i: int) -> np.ndarray:
        """The raw uint8 ``[C, H, W]`` pixels of sample ``i``."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A hex key of the samples, labels and decoding settings (the teacher-output cache's key)."""
        raise NotImplementedError

    def settings(self) -> str:
        """The decoding settings as text, for fingerprints: size, channels, normalisation."""
        return repr((self.size, self.channels, self.mean.flatten().tolist(), self.std.flatten().tolist()))

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


@dataclass(eq=False)
class StreamedSplits:
    """Train/validation/test :class:`DecodedImages` of one streamed source, with what a model needs to know about
    them (the streamed counterpart of :class:`~kdlab.data.base.DataSplits`)."""

    name: str
    train: DecodedImages
    val: DecodedImages
    test: DecodedImages
    num_classes: int
    in_shape: tuple[int, ...]
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    options: dict[str, Any] = field(default_factory=dict)


def streamed_mean_std(images: Iterable[np.ndarray], channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of pixels / 255 over uint8 ``[C, H, W]`` images, read one at a time
    (float64 sums of x and x^2: std = sqrt(E[x^2] - E[x]^2)); a channel without spread gets std 1, as in memory."""
    total = np.zeros(channels, dtype=np.float64)
    squares = np.zeros(channels, dtype=np.float64)
    count = 0
    for pixels in images:
        x = pixels.astype(np.float64).reshape(channels, -1) / 255.0
        total += x.sum(axis=1)
        squares += (x * x).sum(axis=1)
        count += x.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
    return tuple(float(m) for m in mean), tuple(float(s) if s > 0 else 1.0 for s in std)


def streamed_splits(name: str, train_labels: np.ndarray, class_names: Sequence[str],
                    part: Callable[[str, list[int] | None, Sequence[float], Sequence[float]], DecodedImages],
                    train_pixels: Callable[[int], np.ndarray], *, val_size: float | int, seed: int,
                    train_subset: int | None, channels: int, given: tuple[list[float], list[float]] | None,
                    options: dict[str, Any]) -> StreamedSplits:
    """The splits of a streamed source, as :func:`~kdlab.data.load.load_dataset` draws them in memory: a seeded
    stratified validation split of the training set, then the stratified ``train_subset`` of the rest.

    ``part(split, rows, mean, std)`` builds the dataset of ``rows`` of the source's ``"train"`` or ``"test"`` split
    (``None``: every row); ``train_pixels(row)`` decodes one training row, for the statistics when not ``given``.
    """
    labels = torch.from_numpy(np.asarray(train_labels, dtype=np.int64))
    n_val = resolve_val_size(val_size, len(labels))
    train_idx, val_idx = stratified_split(labels, n_val, generator_for(seed, "val-split"))
    check_train_subset(train_subset, len(train_idx), len(class_names))
    if given is None:
        mean, std = streamed_mean_std((train_pixels(i) for i in train_idx.tolist()), channels)
    else:
        mean, std = tuple(given[0]), tuple(given[1])
    if train_subset is not None and train_subset < len(train_idx):
        _, picked = stratified_split(labels[train_idx], train_subset, generator_for(seed, "train-subset"),
                                     min_per_class=1)
        train_idx = train_idx[picked]
    train = part("train", train_idx.tolist(), mean, std)
    return StreamedSplits(name=name, train=train, val=part("train", val_idx.tolist(), mean, std),
                          test=part("test", None, mean, std), num_classes=len(class_names),
                          in_shape=tuple(train.pixels(0).shape), class_names=list(class_names), mean=mean, std=std,
                          options={"val_size": val_size, "seed": seed, "train_subset": train_subset, **options})


def open_streaming(name: str, **kwargs: Any) -> StreamedSplits:
    """Open the streaming source ``name`` (``data.streaming: true``)."""
    return STREAMING_SOURCES.get(name)(**kwargs)
