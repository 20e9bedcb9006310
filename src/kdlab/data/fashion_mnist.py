"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747): find, fetch, verify and read it.

The files are looked for in a list of sources, in order (``SOURCES``; each entry is one small function,
so tests can replace the list). Every candidate is checked against the SHA-256 of its decompressed
payload, so a recompressed copy (Debian's) is accepted and a corrupt one is rejected.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import DataError
from ..io import atomic_write
from .base import DATASETS, RawDataset
from .download import download_file
from .idx import read_idx
from .paths import default_data_dir
from .verify import ChecksumMismatch, verify_payloads

log = logging.getLogger("kdlab")

SUBDIR = "fashion-mnist"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
# Where the package keeps the files, relative to the root of the system (or of `dpkg -x`'s target).
DEBIAN_PACKAGE_PATH = "usr/share/datasets/fashion-mnist"
# Where `apt-get install dataset-fashion-mnist` puts the files; a module constant so tests can move it.
DEBIAN_DIR = Path("/") / DEBIAN_PACKAGE_PATH
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
APT_TIMEOUT_S = 600.0
URL_TIMEOUT_S = 60.0

# SHA-256 of the decompressed IDX payloads (payload sizes in bytes: 47040016, 60008, 7840016, 10008).
EXPECTED_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FILE_STEMS: tuple[str, ...] = tuple(EXPECTED_SHA256)

CLASS_NAMES: list[str] = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]


@dataclass(frozen=True)
class Source:
    """One place the files may come from: ``find(data_dir)`` returns the directory holding all four
    files or raises DataError saying why not; ``downloads`` marks sources that use the network."""

    name: str
    find: Callable[[Path], Path]
    downloads: bool = False


def find_files(directory: Path) -> dict[str, Path]:
    """Map each file stem present in ``directory`` to its path, preferring ``<stem>.gz`` over ``<stem>``."""
    found = {}
    for stem in FILE_STEMS:
        for candidate in (directory / f"{stem}.gz", directory / stem):
            if candidate.is_file():
                found[stem] = candidate
                break
    return found


def from_data_dir(data_dir: Path) -> Path:
    """Source a: the files directly in the data directory or in its ``fashion-mnist/`` subdirectory.

    A complete copy that fails verification does not hide a good one in the other place.
    """
    candidates = [data_dir, data_dir / SUBDIR]
    problems = []
    for directory in candidates:
        found = find_files(directory)
        if not found:
            problems.append(f"no Fashion-MNIST files in {directory}")
            continue
        if len(found) < len(FILE_STEMS):
            missing = [f"{s}.gz" for s in FILE_STEMS if s not in found]
            problems.append(f"{directory} is missing {', '.join(missing)}")
            continue
        try:
            _verify(directory)
            return directory
        except DataError as e:
            _warn_if_corrupt(e)
            problems.append(str(e))
    raise DataError("; ".join(problems))


def from_debian_install(data_dir: Path) -> Path:
    """Source b: the copy installed by the Debian package ``dataset-fashion-mnist`` (``DEBIAN_DIR``)."""
    directory = DEBIAN_DIR
    if not directory.is_dir():
        raise DataError(f"{directory} does not exist (package {DEBIAN_PACKAGE} not installed)")
    missing = [f"{s}.gz" for s in FILE_STEMS if s not in find_files(directory)]
    if missing:
        raise DataError(f"{directory} lacks {', '.join(missing)}")
    return directory


def from_apt_download(data_dir: Path) -> Path:
    """Source c: ``apt-get download`` the Debian package and unpack it with ``dpkg -x`` (no root needed)."""
    apt_get, dpkg = shutil.which("apt-get"), shutil.which("dpkg")
    if not apt_get or not dpkg:
        raise DataError("apt-get or dpkg is not on PATH")
    with tempfile.TemporaryDirectory(prefix="kdlab-apt-") as tmp:
        # Bounded network waits so an offline machine fails in seconds, not after apt's default retries.
        _run([apt_get, "-q", "-o", "Acquire::Retries=1", "-o", "Acquire::http::Timeout=30",
              "download", DEBIAN_PACKAGE], cwd=tmp)
        debs = sorted(Path(tmp).glob("*.deb"))
        if not debs:
            raise DataError(f"apt-get download {DEBIAN_PACKAGE} produced no .deb file")
        _run([dpkg, "-x", str(debs[0]), str(Path(tmp) / "x")], cwd=tmp)
        unpacked = Path(tmp) / "x" / DEBIAN_PACKAGE_PATH
        return _install_verified(unpacked, data_dir / SUBDIR)


def from_official_urls(data_dir: Path) -> Path:
    """Source d: download the four ``.gz`` files from ``BASE_URL`` with urllib."""
    with tempfile.TemporaryDirectory(prefix="kdlab-dl-") as tmp:
        for stem in FILE_STEMS:
            download_file(BASE_URL + f"{stem}.gz", Path(tmp) / f"{stem}.gz", timeout=URL_TIMEOUT_S)
        return _install_verified(Path(tmp), data_dir / SUBDIR)


SOURCES: list[Source] = [
    Source("data directory", from_data_dir),
    Source("installed Debian package copy", from_debian_install),
    Source(f"apt-get download {DEBIAN_PACKAGE}", from_apt_download, downloads=True),
    Source(f"official download from {BASE_URL}", from_official_urls, downloads=True),
]


def locate_fashion_mnist(
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    sources: Sequence[Source] | None = None,
) -> Path:
    """Return a directory holding the four verified Fashion-MNIST files, trying each source in order.

    ``data_dir`` defaults to ``default_data_dir()``; download sources write into ``<data_dir>/fashion-mnist``.
    With ``download=False`` the network sources are skipped. A source whose files fail the checksum is
    recorded as failed and the next one is tried; if none works, one DataError lists them all.
    """
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    failures: list[str] = []
    for source in SOURCES if sources is None else sources:
        if source.downloads and not download:
            failures.append(f"{source.name}: skipped (download=False)")
            continue
        try:
            directory = source.find(root)
            _verify(directory)
            return directory
        except (DataError, OSError, subprocess.SubprocessError) as e:
            _warn_if_corrupt(e)
            failures.append(f"{source.name}: {e}")
    tried = "\n".join(f"  {i}. {f}" for i, f in enumerate(failures, 1))
    files = ", ".join(f"{s}.gz" for s in FILE_STEMS)
    raise DataError(
        f"Fashion-MNIST is not available (data dir {root}). Sources tried:\n{tried}\n"
        f"To provide it: put {files} in a directory and pass --data-dir DIR (or set KDLAB_DATA=DIR), "
        f"or install the Debian package: apt-get install {DEBIAN_PACKAGE}"
    )


def fetch_fashion_mnist(data_dir: str | os.PathLike | None = None) -> Path:
    """Make sure Fashion-MNIST is available (downloading it if needed) and return the directory holding it."""
    return locate_fashion_mnist(data_dir, download=True)


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(data_dir: str | os.PathLike | None = None, download: bool = True) -> RawDataset:
    """Fashion-MNIST as raw arrays: 60000 train / 10000 test uint8 images [N,1,28,28], 10 classes."""
    directory = locate_fashion_mnist(data_dir, download=download)
    files = find_files(directory)
    arrays = {stem: read_idx(path) for stem, path in files.items()}
    x_train, y_train = _images_and_labels(arrays, files, "train")
    x_test, y_test = _images_and_labels(arrays, files, "t10k")
    return RawDataset(x_train, y_train, x_test, y_test, list(CLASS_NAMES), (1, 28, 28), max_value=255.0)


def _images_and_labels(arrays: dict[str, np.ndarray], files: dict[str, Path], part: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = arrays[f"{part}-images-idx3-ubyte"], arrays[f"{part}-labels-idx1-ubyte"]
    image_file, label_file = files[f"{part}-images-idx3-ubyte"], files[f"{part}-labels-idx1-ubyte"]
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataError(f"{image_file}: expected uint8 images of shape [N, 28, 28], got {images.dtype} {images.shape}")
    if labels.shape != (images.shape[0],):
        raise DataError(f"{label_file}: expected {images.shape[0]} labels to match {image_file}, got shape {labels.shape}")
    if labels.size and int(labels.max()) >= len(CLASS_NAMES):
        raise DataError(f"{label_file}: label {int(labels.max())} out of range 0..{len(CLASS_NAMES) - 1}")
    return images[:, None, :, :], labels.astype(np.int64)


def _verify(directory: Path) -> None:
    files = find_files(directory)
    missing = [s for s in FILE_STEMS if s not in files]
    if missing:
        raise DataError(f"{directory} is missing {', '.join(missing)}")
    verify_payloads({files[s]: EXPECTED_SHA256[s] for s in FILE_STEMS})


def _warn_if_corrupt(error: BaseException) -> None:
    """A copy that exists but fails its checksum is worth a warning even when another copy is then used: it is
    someone's damaged (or tampered) data, and it would otherwise go unnoticed."""
    if isinstance(error, ChecksumMismatch):
        log.warning("warning: ignoring a corrupt copy of Fashion-MNIST: %s", error)


def _install_verified(source_dir: Path, target: Path) -> Path:
    """Verify the four files in ``source_dir``, then copy them into ``target`` (each copy atomic, mode per umask)."""
    _verify(source_dir)
    for path in find_files(source_dir).values():
        with open(path, "rb") as src:
            atomic_write(target / path.name, lambda f: shutil.copyfileobj(src, f, 1 << 20))
    return target


def _run(cmd: list[str], cwd: str) -> None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise DataError(f"'{' '.join(cmd)}' timed out after {APT_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise DataError(f"'{' '.join(cmd)}' exited with status {done.returncode}: {' | '.join(tail)}")
