"""Reader and writer for the IDX array format (the container of MNIST and Fashion-MNIST).

Layout (Y. LeCun, "THE MNIST DATABASE", http://yann.lecun.com/exdb/mnist/): two zero bytes, a dtype code
byte, a byte with the number of dimensions ``ndim``, ``ndim`` big-endian uint32 sizes, then the values
big-endian in C order. Files may be gzip-compressed; that is detected from the content, not the name.
"""

from __future__ import annotations

import gzip as gziplib  # aliased: write_idx has a parameter named ``gzip``
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_write_bytes

GZIP_MAGIC = b"\x1f\x8b"

# IDX dtype code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx_bytes(path: str | os.PathLike) -> bytes:
    """Return the uncompressed IDX payload of ``path`` (gunzipped when it starts with the gzip magic 1f 8b)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from e
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gziplib.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"IDX file {path} is gzip-compressed but truncated or corrupt: {e}") from e


def parse_idx(payload: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode an uncompressed IDX payload into a native-endian numpy array; ``source`` names it in errors."""
    if len(payload) < 4:
        raise DataError(f"{source}: too short for an IDX header ({len(payload)} bytes, expected at least 4)")
    zero0, zero1, code, ndim = payload[0], payload[1], payload[2], payload[3]
    if zero0 != 0 or zero1 != 0:
        raise DataError(
            f"{source}: bad IDX magic {payload[:4].hex()} (expected the first two bytes to be 00 00, "
            f"then a dtype code in {_codes()} and the number of dimensions)"
        )
    if code not in IDX_DTYPES:
        raise DataError(f"{source}: unknown IDX dtype code 0x{code:02x}; allowed: {_codes()}")
    header_len = 4 + 4 * ndim
    if len(payload) < header_len:
        raise DataError(
            f"{source}: truncated IDX header ({len(payload)} bytes, expected {header_len} for {ndim} dimensions)"
        )
    shape = struct.unpack(f">{ndim}I", payload[4:header_len])
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(payload) - header_len
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(
            f"{source}: IDX data {what}: {actual} bytes after the header, expected {expected} "
            f"for shape {tuple(shape)} of {dtype.name}"
        )
    data = np.frombuffer(payload, dtype=dtype, offset=header_len).reshape(shape)
    # astype always copies: the result is writable and native-endian, as torch.from_numpy needs.
    return data.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or gzip) into a native-endian numpy array."""
    return parse_idx(read_idx_bytes(path), source=str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """Encode ``array`` as an uncompressed IDX payload."""
    array = np.asarray(array)
    code = next((c for c, dt in IDX_DTYPES.items() if dt.newbyteorder("=") == array.dtype.newbyteorder("=")), None)
    if code is None:
        allowed = ", ".join(dt.newbyteorder("=").name for dt in IDX_DTYPES.values())
        raise DataError(f"array dtype {array.dtype} cannot be stored as IDX; allowed: {allowed}")
    if array.ndim > 255:
        raise DataError(f"array has {array.ndim} dimensions; IDX allows at most 255")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, gzip: bool = True) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed by default), atomically."""
    payload = encode_idx(array)
    if gzip:
        buf = io.BytesIO()
        # mtime=0 makes the compressed bytes a pure function of the array.
        with gziplib.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
            f.write(payload)
        payload = buf.getvalue()
    return atomic_write_bytes(path, payload)


def _codes() -> str:
    return ", ".join(f"0x{c:02x} ({dt.newbyteorder('=').name})" for c, dt in IDX_DTYPES.items())

