"""Checksums of dataset files, with a stamp file so a large verified file is not re-hashed on every run.

Threat model of the stamp (``.kdlab-verified.json`` next to the files). Files up to ``ALWAYS_HASH_BYTES`` (Fashion-
MNIST's label files, 10-60 KB) are hashed on every use: nothing is trusted for them. A larger file counts as verified
without hashing when its (size, mtime_ns, ctime_ns, inode) equal the ones recorded when it was last hashed against the
same expected digest. That catches accidental corruption and any ordinary edit, including one that keeps the size and
restores the modification time (``cp -p``, ``rsync -t``, ``touch -r``, ``tar x``, ``os.utime``): the kernel sets the
ctime to the current time on every change of content or metadata and no system call sets it back, and replacing the
file gives it a new inode. It does not protect against an adversary who can write the block device or filesystem
image behind the kernel, set the system clock back to the nanosecond before editing, or edit the stamp itself (who can
write the stamp can write the data), nor on filesystems that report synthetic inodes or ctimes (some FUSE and
network filesystems). Delete the stamp to force a full re-hash.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from pathlib import Path

from ..errors import DataError
from ..io import atomic_write_json
from .idx import GZIP_MAGIC

STAMP_NAME = ".kdlab-verified.json"
STAMP_VERSION = 2
# files up to this size are hashed on every use (a millisecond), whatever the stamp says
ALWAYS_HASH_BYTES = 1 << 20
_CHUNK = 1 << 20
# (path, size, mtime_ns, ctime_ns, inode, sha256) already verified in this process: read-only copies are hashed once.
_VERIFIED_HERE: set[tuple[str, int, int, int, int, str]] = set()


class ChecksumMismatch(DataError):
    """A file exists but its content is not the expected one."""


def payload_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex of the file's payload: the decompressed bytes for gzip files, else the bytes themselves.

    Hashing the payload rather than the ``.gz`` makes the check independent of how the file was
    recompressed (Debian's copy of Fashion-MNIST has different ``.gz`` bytes but the same payload).
    """
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as raw:
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if compressed else raw
        try:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
        except (EOFError, OSError, zlib.error) as e:
            raise DataError(f"{path} is gzip-compressed but truncated or corrupt: {e}") from e
    return digest.hexdigest()


def file_md5(path: str | os.PathLike) -> str:
    """MD5 hex of the raw file bytes (the checksum CIFAR publishes for its archives)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_payloads(expected: dict[Path, str]) -> None:
    """Check that each file's ``payload_sha256`` equals the expected hex digest; raise ChecksumMismatch if not.

    A file larger than ``ALWAYS_HASH_BYTES`` whose size, mtime, ctime, inode and expected digest match the stamp
    ``.kdlab-verified.json`` in its directory counts as verified without hashing (see the module docstring for what
    that trusts); verified files are added to the stamp when the directory is writable (a read-only directory is
    simply re-hashed next time).
    """
    by_dir: dict[Path, dict[Path, str]] = {}
    for path, sha in expected.items():
        by_dir.setdefault(Path(path).parent, {})[Path(path)] = sha
    for directory, files in by_dir.items():
        stamp = _read_stamp(directory)
        changed = False
        for path, sha in files.items():
            st = path.stat()
            entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
                     "inode": st.st_ino, "sha256": sha}
            key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, sha)
            trusted = st.st_size > ALWAYS_HASH_BYTES
            if trusted and (stamp.get(path.name) == entry or key in _VERIFIED_HERE):
                continue
            actual = payload_sha256(path)
            if actual != sha:
                raise ChecksumMismatch(
                    f"checksum mismatch for {path}: expected payload SHA-256 {sha}, got {actual}"
                )
            _VERIFIED_HERE.add(key)
            if trusted and stamp.get(path.name) != entry:
                stamp[path.name] = entry
                changed = True
        if changed:
            _write_stamp(directory, stamp)


def _read_stamp(directory: Path) -> dict[str, dict]:
    try:
        data = json.loads((directory / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != STAMP_VERSION:
        return {}  # an older stamp keyed on size and mtime alone is not trusted
    files = data.get("files")
    return dict(files) if isinstance(files, dict) else {}


def _write_stamp(directory: Path, files: dict[str, dict]) -> None:
    try:
        atomic_write_json(directory / STAMP_NAME, {"version": STAMP_VERSION, "files": files})
    except OSError:
        pass  # a read-only copy (e.g. /usr/share/datasets) is valid data; it is just hashed each time
