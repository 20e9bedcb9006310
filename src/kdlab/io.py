"""Atomic artefact writes: a temp file in the same directory, fsync, then rename.

A reader (or a crash) never sees a half-written file: it sees the old file or the new one. Files end with the mode an
ordinary ``open()`` would give them (0666 minus the umask), not the owner-only mode of their private temp file.
Safetensors files are written byte-reproducibly: their JSON header is serialised with sorted keys, so two identical
runs give identical weight files. Weights are read only as safetensors and state files only with
``torch.load(weights_only=True)``; anything else (a pickle renamed ``.safetensors``, a truncated file) is refused with
a :class:`~kdlab.errors.ConfigError` naming the file, before a byte of it is deserialised.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save as safetensors_bytes

from .errors import ConfigError

PICKLE_HINT = ("kdlab reads weights only as safetensors and never unpickles them; convert a checkpoint you trust "
               "with safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors')")


def atomic_write(path: str | os.PathLike, writer: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``writer(fileobj)`` on a temp file next to ``path`` and rename it into place.

    An ``OSError`` (disk full, read-only filesystem) removes the temp file and is re-raised with ``filename`` set to
    ``path`` when the system call did not name a file (a failed ``write`` names none).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _naming(exc, path.parent) from None
    try:
        with os.fdopen(fd, mode) as f:
            writer(f)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise _naming(exc, path) from None
        raise
    return path


def _naming(exc: OSError, path: Path) -> OSError:
    if exc.filename is None:
        exc.filename = str(path)
    return exc


def current_umask() -> int:
    """The process umask, read from /proc (setting it to read it back would race with other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_output_dir(path: str | os.PathLike, need_bytes: int = 0, what: str = "--out") -> None:
    """Raise ConfigError unless directory ``path`` exists or can be created, is writable and has ``need_bytes`` free.

    Nothing is created: the nearest existing ancestor is checked when ``path`` does not exist yet.
    """
    path = Path(path)
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        culprit = "it" if probe == path else f"'{probe}'"
        raise ConfigError(f"{what} '{path}' cannot be a directory: {culprit} is a file; choose another {what}")
    try:
        stats = os.statvfs(probe)
    except OSError:
        stats = None
    if stats is not None and stats.f_flag & os.ST_RDONLY:
        raise ConfigError(f"{what} '{path}' is on a read-only filesystem ('{probe}'); choose another {what}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} '{path}' is not writable: no permission to write in '{probe}'; choose another "
                          f"{what} or fix its permissions")
    if stats is not None and need_bytes > 0:
        free = stats.f_bavail * stats.f_frsize
        if free < need_bytes:
            raise ConfigError(f"{what} '{path}' has {free:,} bytes free and the run needs at least {need_bytes:,} "
                              f"(its first checkpoint); free space or choose another {what}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Write tensors as safetensors, atomically and byte-reproducibly. Tensors are made contiguous and detached.

    The safetensors library serialises ``metadata`` in hash-map order, which differs between processes; the header is
    re-serialised here with sorted keys (and padded with spaces to a multiple of 8 bytes, as the format allows), so the
    same tensors and metadata always give the same bytes. The tensor data section is left as the library wrote it.
    """
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    raw = safetensors_bytes(clean, metadata=metadata)
    n = int.from_bytes(raw[:8], "little")
    header = json.dumps(json.loads(raw[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)

    def write(f: Any) -> None:
        f.write(len(header).to_bytes(8, "little"))
        f.write(header)
        f.write(memoryview(raw)[8 + n:])

    return atomic_write(path, write)


def check_safetensors(path: str | os.PathLike) -> Path:
    """Raise ConfigError (naming the file and what it is instead) unless ``path`` looks like a safetensors file.

    Only the first bytes are read: a pickle or a ``torch.save`` zip archive renamed ``.safetensors`` is refused here,
    never deserialised.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"'{path}' is a directory, not a .safetensors weights file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise ConfigError(f"weights file '{path}' cannot be read: {exc.strerror or exc}") from None
    header_len = int.from_bytes(head[:8], "little")
    if size >= 10 and head[8:9] == b"{" and 8 + header_len <= size:
        return path  # the safetensors layout: an 8-byte header length, then a JSON header that fits in the file
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise ConfigError(f"'{path}' is a Python pickle, not a safetensors file; it was not loaded. {PICKLE_HINT}")
    if head[:4] == b"PK\x03\x04":
        raise ConfigError(f"'{path}' is a zip archive (a torch.save checkpoint), not a safetensors file; it was not "
                          f"loaded. {PICKLE_HINT}")
    if size < 10:
        raise ConfigError(f"weights file '{path}' is truncated ({size} bytes); it is not a usable safetensors file")
    raise ConfigError(f"weights file '{path}' is not a valid safetensors file (truncated, or another format: its "
                      f"header claims {header_len:,} bytes of a {size:,}-byte file)")


def _unreadable(path: str | os.PathLike, exc: Exception) -> ConfigError:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ConfigError(f"weights file '{path}' is corrupt or truncated ({detail}); replace it (or delete the run "
                       "directory it belongs to and train again)")


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a file that is not one (or is damaged) is a ConfigError naming it."""
    check_safetensors(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None


def read_safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (``{}`` when it has none); ConfigError when it is not one."""
    check_safetensors(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Save optimiser/scheduler/RNG state (tensors, numbers, strings, lists, dicts only)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Load a state file without unpickling arbitrary objects (``weights_only=True``).

    A damaged file, or one holding objects other than tensors and plain data, is a ConfigError naming it.
    """
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"state file '{path}' cannot be loaded as weights-only data ({detail}); it was not "
                          "unpickled. Delete the run directory it belongs to and train again") from None
