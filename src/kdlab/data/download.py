"""Network downloads and safe archive extraction for dataset sources."""

from __future__ import annotations

import os
import shutil
import tarfile
import urllib.request
from pathlib import Path, PurePosixPath

from ..errors import DataError
from ..io import atomic_write

DEFAULT_TIMEOUT_S = 60.0


def download_file(url: str, dest: str | os.PathLike, timeout: float = DEFAULT_TIMEOUT_S) -> Path:
    """Download ``url`` to ``dest`` atomically (a partial download never appears at ``dest``).

    ``timeout`` bounds each blocking socket operation, not the whole transfer.
    """
    dest = Path(dest)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            atomic_write(dest, lambda f: shutil.copyfileobj(response, f, 1 << 20))
    except OSError as e:  # URLError, HTTPError, socket timeouts are all OSError
        raise DataError(f"download of {url} failed: {e}") from e
    return dest


def safe_extract_tar(archive: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Extract the regular files and directories of a tar archive into ``dest``; return the files written.

    Refuses the whole archive (before writing anything) if a member has an absolute path or a '..'
    component, or is a link or device: such members could write outside ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                parts = PurePosixPath(m.name).parts
                if m.name.startswith(("/", "\\")) or os.path.isabs(m.name) or ".." in parts:
                    raise DataError(f"refusing to extract {archive}: member '{m.name}' has an absolute path or '..'")
                if not (m.isfile() or m.isdir()):
                    raise DataError(f"refusing to extract {archive}: member '{m.name}' is a link or special file")
            written = []
            for m in members:
                target = dest.joinpath(*PurePosixPath(m.name).parts)
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                source = tar.extractfile(m)
                assert source is not None  # regular files always have a stream
                with source:
                    atomic_write(target, lambda f: shutil.copyfileobj(source, f, 1 << 20))
                written.append(target)
    except (tarfile.TarError, EOFError) as e:
        raise DataError(f"cannot read archive {archive}: {e}") from e
    return written
