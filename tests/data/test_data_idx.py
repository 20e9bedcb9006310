import gzip
import struct

import numpy as np
import pytest

from kdlab.data.idx import read_idx, write_idx
from kdlab.errors import DataError


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
def test_round_trip(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = write_idx(tmp_path / "a.idx", array, gzip=compress)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype)
    assert back.shape == (3, 4, 5)
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_header_is_big_endian_idx(tmp_path):
    array = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int16)
    raw = gzip.decompress(write_idx(tmp_path / "a", array).read_bytes())
    assert raw[:4] == bytes([0, 0, 0x0B, 2])
    assert struct.unpack(">II", raw[4:12]) == (2, 3)
    assert raw[12:14] == b"\x00\x01"  # the first value, big-endian


def test_gzip_detected_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    compressed_no_suffix = write_idx(tmp_path / "compressed.idx", array, gzip=True)
    plain_with_gz_suffix = write_idx(tmp_path / "plain.gz", array, gzip=False)
    assert compressed_no_suffix.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(compressed_no_suffix), array)
    np.testing.assert_array_equal(read_idx(plain_with_gz_suffix), array)


def test_bad_magic_names_file_and_expectation(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_bytes(bytes([1, 2, 8, 1]) + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DataError, match="bad IDX magic") as err:
        read_idx(path)
    assert str(path) in str(err.value)
    assert "00 00" in str(err.value)


def test_unknown_dtype_code(tmp_path):
    path = tmp_path / "code.idx"
    path.write_bytes(bytes([0, 0, 0x0A, 1]) + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DataError, match="0x0a"):
        read_idx(path)


def test_truncated_data(tmp_path):
    array = np.arange(100, dtype=np.uint8).reshape(10, 10)
    path = write_idx(tmp_path / "t.idx", array, gzip=False)
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataError, match="truncated") as err:
        read_idx(path)
    assert "93 bytes" in str(err.value) and "expected 100" in str(err.value)
    assert str(path) in str(err.value)


def test_truncated_header(tmp_path):
    path = tmp_path / "h.idx"
    path.write_bytes(bytes([0, 0, 8, 3]) + b"\x00\x00\x00\x02")
    with pytest.raises(DataError, match="truncated IDX header"):
        read_idx(path)


def test_trailing_bytes(tmp_path):
    path = write_idx(tmp_path / "t.idx", np.zeros(4, dtype=np.uint8), gzip=False)
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(DataError, match="trailing"):
        read_idx(path)


def test_truncated_gzip(tmp_path):
    path = write_idx(tmp_path / "t.gz", np.arange(1000, dtype=np.int32))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="gzip") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_unsupported_dtype_rejected(tmp_path):
    with pytest.raises(DataError, match="bool"):
        write_idx(tmp_path / "b", np.zeros(3, dtype=bool))
