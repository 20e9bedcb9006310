"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny Images")
read from the official *binary* distribution (never the pickled Python version).

Record layouts (https://www.cs.toronto.edu/~kriz/cifar.html):
CIFAR-10: 1 label byte, then 3072 pixel bytes (1024 red, 1024 green, 1024 blue, each 32x32 row-major).
CIFAR-100: 1 coarse label byte, 1 fine label byte, then the same 3072 pixel bytes.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import DATASETS, RawDataset
from .download import download_file, safe_extract_tar
from .paths import default_data_dir
from .verify import file_md5

IMAGE_BYTES = 3 * 32 * 32


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant's files live and how its records are laid out."""

    subdir: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_bytes: int
    url: str
    md5: str


CIFAR10 = CifarLayout(
    subdir="cifar-10-batches-bin",
    train_files=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    test_files=("test_batch.bin",),
    label_bytes=1,
    url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    md5="c32a1d4ab5d03f1284b67883e8d87530",
)
CIFAR100 = CifarLayout(
    subdir="cifar-100-binary",
    train_files=("train.bin",),
    test_files=("test.bin",),
    label_bytes=2,
    url="https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
    md5="03b5dce01913d631647c71ecec9e9cb8",
)


def read_cifar_records(path: Path, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read one binary batch file: returns uint8 images [N,3,32,32] and uint8 labels [N, label_bytes]."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise DataError(f"cannot read CIFAR batch {path}: {e}") from e
    record = label_bytes + IMAGE_BYTES
    if raw.size % record:
        raise DataError(
            f"{path}: size {raw.size} bytes is not a multiple of the {record}-byte record "
            f"({label_bytes} label byte(s) + {IMAGE_BYTES} pixel bytes); the file is truncated or not this format"
        )
    records = raw.reshape(-1, record)
    # Channel planes are stored one after another, so this reshape is exactly [N, C, H, W].
    images = records[:, label_bytes:].reshape(-1, 3, 32, 32)
    return images, records[:, :label_bytes]


def read_label_names(path: Path) -> list[str]:
    """Read class names, one per line, skipping blank lines."""
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as e:
        raise DataError(f"cannot read class names from {path}: {e}") from e


def resolve_cifar_dir(data_dir: Path, layout: CifarLayout, required: tuple[str, ...]) -> Path | None:
    """Return the batches directory if ``data_dir`` is it or is its parent (holding ``layout.subdir``)."""
    for directory in (data_dir / layout.subdir, data_dir):
        if all((directory / name).is_file() for name in required):
            return directory
    return None


def download_cifar(layout: CifarLayout, data_dir: Path) -> None:
    """Download the official binary archive into ``data_dir``, check its MD5 and extract it safely."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kdlab-cifar-", dir=data_dir) as tmp:
        archive = download_file(layout.url, Path(tmp) / Path(layout.url).name)
        actual = file_md5(archive)
        if actual != layout.md5:
            raise DataError(f"checksum mismatch for {layout.url}: expected MD5 {layout.md5}, got {actual}")
        safe_extract_tar(archive, data_dir)


def load_cifar(layout: CifarLayout, names_file: str, data_dir: str | os.PathLike | None, download: bool,
               label_column: int) -> RawDataset:
    """Read a CIFAR variant from ``data_dir`` (downloading it first if absent and ``download``)."""
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    required = layout.train_files + layout.test_files + (names_file,)
    directory = resolve_cifar_dir(root, layout, required)
    if directory is None and download:
        download_cifar(layout, root)
        directory = resolve_cifar_dir(root, layout, required)
    if directory is None:
        raise DataError(
            f"CIFAR binary files not found in {root} or {root / layout.subdir} (need {', '.join(required)}). "
            f"Download {layout.url} (MD5 {layout.md5}), extract it into a directory and pass --data-dir DIR, "
            f"or allow downloading"
        )
    class_names = read_label_names(directory / names_file)
    x_train, y_train = _read_part(directory, layout.train_files, layout.label_bytes, label_column, len(class_names))
    x_test, y_test = _read_part(directory, layout.test_files, layout.label_bytes, label_column, len(class_names))
    return RawDataset(x_train, y_train, x_test, y_test, class_names, (3, 32, 32), max_value=255.0)


@DATASETS.register("cifar10")
def load_cifar10(data_dir: str | os.PathLike | None = None, download: bool = True) -> RawDataset:
    """CIFAR-10 as raw arrays: 50000 train / 10000 test uint8 images [N,3,32,32], 10 classes."""
    return load_cifar(CIFAR10, "batches.meta.txt", data_dir, download, label_column=0)


@DATASETS.register("cifar100")
def load_cifar100(data_dir: str | os.PathLike | None = None, download: bool = True,
                  coarse: bool = False) -> RawDataset:
    """CIFAR-100 as raw arrays: 50000 train / 10000 test images [N,3,32,32]; 100 fine classes, or the
    20 coarse superclasses with ``coarse=True``."""
    names = "coarse_label_names.txt" if coarse else "fine_label_names.txt"
    return load_cifar(CIFAR100, names, data_dir, download, label_column=0 if coarse else 1)


def _read_part(directory: Path, files: tuple[str, ...], label_bytes: int, label_column: int,
               num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in files:
        x, y = read_cifar_records(directory / name, label_bytes)
        y = y[:, label_column].astype(np.int64)
        if y.size and int(y.max()) >= num_classes:
            raise DataError(f"{directory / name}: label {int(y.max())} but only {num_classes} class names")
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)
