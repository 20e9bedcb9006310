"""The Fashion-MNIST source chain, on tiny fake IDX files; no test here touches the network or apt."""

import gzip
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from kdlab.data import fashion_mnist as fm
from kdlab.data import load_dataset, locate_fashion_mnist, read_idx, write_idx
from kdlab.data import verify
from kdlab.errors import DataError

N_TRAIN, N_TEST = 30, 10


def write_fake_fashion(directory: Path, seed: int = 0) -> dict[str, str]:
    """Write the four files (3 train / 1 test image per class) and return their payload SHA-256s."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.repeat(np.arange(10, dtype=np.uint8), N_TRAIN // 10),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(10, dtype=np.uint8),
    }
    sums = {}
    for stem, array in arrays.items():
        path = write_idx(directory / f"{stem}.gz", array)
        sums[stem] = hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()
    return sums


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """Make the network sources fail fast unless a test replaces them, and point the defaults at tmp."""
    def no_download(url, dest, timeout=0):
        raise DataError(f"network disabled in tests ({url})")

    monkeypatch.setattr(fm, "download_file", no_download)
    monkeypatch.setattr(fm.shutil, "which", lambda name: None)
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "no-debian" / "usr/share/datasets/fashion-mnist")
    monkeypatch.setenv("KDLAB_DATA", str(tmp_path / "cache"))


@pytest.fixture
def good(tmp_path, monkeypatch) -> Path:
    """A directory with a fake copy; the expected checksums are patched to match it."""
    directory = tmp_path / "good"
    monkeypatch.setattr(fm, "EXPECTED_SHA256", write_fake_fashion(directory))
    return directory


def test_explicit_dir_found(good):
    assert locate_fashion_mnist(good, download=False) == good


def test_fashion_mnist_subdir_found(good, tmp_path):
    parent = tmp_path / "parent"
    shutil.copytree(good, parent / "fashion-mnist")
    assert locate_fashion_mnist(parent, download=False) == parent / "fashion-mnist"


def test_env_var_is_the_default_data_dir(good, monkeypatch):
    monkeypatch.setenv("KDLAB_DATA", str(good))
    assert locate_fashion_mnist(download=False) == good


def test_recompressed_and_uncompressed_copies_verify(good, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    for stem in fm.FILE_STEMS:
        payload = gzip.decompress((good / f"{stem}.gz").read_bytes())
        if stem.startswith("train"):
            (other / f"{stem}.gz").write_bytes(gzip.compress(payload, compresslevel=1, mtime=12345))
        else:
            (other / stem).write_bytes(payload)
    assert (other / "train-images-idx3-ubyte.gz").read_bytes() != (good / "train-images-idx3-ubyte.gz").read_bytes()
    assert locate_fashion_mnist(other, download=False) == other


def test_checksum_mismatch_names_file_and_hashes_then_next_source(good, tmp_path, monkeypatch):
    bad = tmp_path / "bad"
    write_fake_fashion(bad, seed=1)  # same names, other pixels
    debian = tmp_path / "deb" / "usr/share/datasets/fashion-mnist"
    shutil.copytree(good, debian)
    monkeypatch.setattr(fm, "DEBIAN_DIR", debian)
    assert locate_fashion_mnist(bad, download=False) == debian

    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "missing")
    with pytest.raises(DataError) as err:
        locate_fashion_mnist(bad, download=False)
    message = str(err.value)
    actual = hashlib.sha256(gzip.decompress((bad / "train-images-idx3-ubyte.gz").read_bytes())).hexdigest()
    assert "checksum mismatch" in message
    assert str(bad / "train-images-idx3-ubyte.gz") in message
    assert fm.EXPECTED_SHA256["train-images-idx3-ubyte"] in message and actual in message
    assert "installed Debian package copy" in message  # the next source was tried too


def test_all_sources_failed_lists_every_source_and_the_remedy(tmp_path):
    with pytest.raises(DataError) as err:
        locate_fashion_mnist(tmp_path / "empty", download=True)
    message = str(err.value)
    for i, source in enumerate(fm.SOURCES, 1):
        assert f"{i}. {source.name}" in message
    assert "apt-get or dpkg is not on PATH" in message
    assert "network disabled in tests" in message
    assert "train-images-idx3-ubyte.gz" in message and "KDLAB_DATA" in message and "--data-dir" in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_download_false_skips_network_sources(tmp_path, monkeypatch):
    def must_not_run(data_dir):
        raise AssertionError("a network source ran with download=False")

    sources = [fm.SOURCES[0], fm.Source("net", must_not_run, downloads=True)]
    with pytest.raises(DataError, match=r"2\. net: skipped \(download=False\)"):
        locate_fashion_mnist(tmp_path / "empty", download=False, sources=sources)


def test_official_urls_source_installs_verified_files(good, tmp_path, monkeypatch):
    requested = []

    def fake_download(url, dest, timeout=0):
        requested.append(url)
        shutil.copyfile(good / url.rsplit("/", 1)[1], dest)
        return Path(dest)

    monkeypatch.setattr(fm, "download_file", fake_download)
    target = locate_fashion_mnist(tmp_path / "cache")
    assert target == tmp_path / "cache" / "fashion-mnist"
    assert sorted(requested) == sorted(fm.BASE_URL + f"{s}.gz" for s in fm.FILE_STEMS)
    for stem in fm.FILE_STEMS:
        assert (target / f"{stem}.gz").read_bytes() == (good / f"{stem}.gz").read_bytes()
        assert stat.S_IMODE((target / f"{stem}.gz").stat().st_mode) & 0o044  # readable by others per umask
    # Found by the data-directory source next time, without downloading.
    requested.clear()
    assert locate_fashion_mnist(tmp_path / "cache") == target and requested == []


def test_corrupt_download_is_not_installed(good, tmp_path, monkeypatch):
    def corrupt_download(url, dest, timeout=0):
        data = bytearray(gzip.decompress((good / url.rsplit("/", 1)[1]).read_bytes()))
        data[-1] ^= 0xFF
        Path(dest).write_bytes(bytes(data))
        return Path(dest)

    monkeypatch.setattr(fm, "download_file", corrupt_download)
    with pytest.raises(DataError, match="official download.*checksum mismatch"):
        locate_fashion_mnist(tmp_path / "cache")
    assert not (tmp_path / "cache" / "fashion-mnist").exists()


def test_apt_source_with_fake_apt_get_and_dpkg(good, tmp_path, monkeypatch):
    """The apt route end to end with stand-in executables: download a .deb, unpack it, copy the files."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\nfor a; do last="$a"; done; [ "$last" = {fm.DEBIAN_PACKAGE} ] '
                                     f'&& touch "${{last}}_1.0_all.deb"\n')
    (bin_dir / "dpkg").write_text(f'#!/bin/sh\n[ "$1" = -x ] || exit 2\nmkdir -p "$3/{fm.DEBIAN_PACKAGE_PATH}"\n'
                                  f'cp "{good}"/*.gz "$3/{fm.DEBIAN_PACKAGE_PATH}/"\n')
    for tool in ("apt-get", "dpkg"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setattr(fm.shutil, "which", lambda name: str(bin_dir / name) if name in ("apt-get", "dpkg") else None)
    # Only the apt source, so the (absent) system copy cannot interfere.
    sources = [s for s in fm.SOURCES if s.find is fm.from_apt_download]
    target = locate_fashion_mnist(tmp_path / "cache", sources=sources)
    assert target == tmp_path / "cache" / "fashion-mnist"
    assert sorted(p.name for p in target.glob("*.gz")) == sorted(f"{s}.gz" for s in fm.FILE_STEMS)


def test_apt_failure_is_reported_with_its_output(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text("#!/bin/sh\necho 'E: Unable to locate package' >&2\nexit 100\n")
    (bin_dir / "apt-get").chmod(0o755)
    monkeypatch.setattr(fm.shutil, "which", lambda name: str(bin_dir / "apt-get") if name in ("apt-get", "dpkg") else None)
    sources = [s for s in fm.SOURCES if s.find is fm.from_apt_download]
    with pytest.raises(DataError, match="status 100: E: Unable to locate package"):
        locate_fashion_mnist(tmp_path / "cache", sources=sources)


def test_verification_is_cached_in_a_stamp(good, monkeypatch):
    monkeypatch.setattr(verify, "ALWAYS_HASH_BYTES", 0)  # the fake files are tiny; treat them as large ones
    locate_fashion_mnist(good, download=False)
    assert (good / verify.STAMP_NAME).is_file()
    verify._VERIFIED_HERE.clear()  # only the stamp file may spare the hashing now
    calls = []
    real = verify.payload_sha256
    monkeypatch.setattr(verify, "payload_sha256", lambda p: calls.append(Path(p).name) or real(p))
    locate_fashion_mnist(good, download=False)
    assert calls == []
    path = good / "t10k-labels-idx1-ubyte.gz"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    locate_fashion_mnist(good, download=False)
    assert calls == ["t10k-labels-idx1-ubyte.gz"]


@pytest.mark.parametrize("always_hash_bytes", [1 << 20, 0], ids=["small-files-hashed", "large-files-stamped"])
def test_relabelled_file_with_preserved_size_and_mtime_is_caught(good, monkeypatch, always_hash_bytes):
    """The issue's attack: labels changed, size and mtime kept. Small files are re-hashed on every use; for large ones
    the stamp also records ctime and inode, which an edit cannot keep."""
    monkeypatch.setattr(verify, "ALWAYS_HASH_BYTES", always_hash_bytes)
    gz = good / "train-labels-idx1-ubyte.gz"
    path = good / "train-labels-idx1-ubyte"  # uncompressed, so an in-place edit keeps the size exactly
    path.write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    locate_fashion_mnist(good, download=False)
    verify._VERIFIED_HERE.clear()
    st = path.stat()
    labels = bytearray(path.read_bytes())
    assert labels[8] != labels[8 + 3]  # IDX labels start after an 8-byte header; 3 samples per class
    labels[8], labels[8 + 3] = labels[8 + 3], labels[8]
    path.write_bytes(bytes(labels))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    with pytest.raises(DataError, match="checksum mismatch for .*train-labels-idx1-ubyte"):
        locate_fashion_mnist(good, download=False)


def test_an_old_size_and_mtime_stamp_is_not_trusted(good, monkeypatch):
    monkeypatch.setattr(verify, "ALWAYS_HASH_BYTES", 0)
    stamp = {"version": 1, "files": {p.name: {"size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns,
                                              "sha256": fm.EXPECTED_SHA256[p.name[:-3]]} for p in good.glob("*.gz")}}
    (good / verify.STAMP_NAME).write_text(json.dumps(stamp))
    verify._VERIFIED_HERE.clear()
    calls = []
    real = verify.payload_sha256
    monkeypatch.setattr(verify, "payload_sha256", lambda p: calls.append(Path(p).name) or real(p))
    locate_fashion_mnist(good, download=False)
    assert sorted(calls) == sorted(f"{s}.gz" for s in fm.FILE_STEMS)


def test_corrupt_copy_in_kdlab_data_is_warned_about_even_when_a_good_copy_is_used(good, tmp_path, monkeypatch,
                                                                                 caplog):
    bad = tmp_path / "kdlab-data"
    write_fake_fashion(bad, seed=1)  # a complete copy with other pixels: every image file fails its checksum
    monkeypatch.setenv("KDLAB_DATA", str(bad))
    debian = tmp_path / "deb" / "usr/share/datasets/fashion-mnist"
    shutil.copytree(good, debian)
    monkeypatch.setattr(fm, "DEBIAN_DIR", debian)
    with caplog.at_level("WARNING", logger="kdlab"):
        assert locate_fashion_mnist(download=False) == debian
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    path = next(p for p in bad.glob("*.gz") if str(p) in warnings[0])
    actual = hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()
    expected = fm.EXPECTED_SHA256[path.name[:-3]]
    assert "corrupt copy of Fashion-MNIST" in warnings[0] and expected in warnings[0] and actual in warnings[0]
    assert expected != actual


def test_load_dataset_reads_the_fake_copy(good):
    splits = load_dataset("fashion_mnist", data_dir=good, download=False, val_size=10)
    assert splits.num_classes == 10 and splits.in_shape == (1, 28, 28)
    assert splits.class_names[0] == "T-shirt/top" and splits.class_names[9] == "Ankle boot"
    assert (len(splits.train), len(splits.val), len(splits.test)) == (20, 10, 10)
    assert torch.bincount(splits.val.y, minlength=10).tolist() == [1] * 10
    raw_test = read_idx(good / "t10k-images-idx3-ubyte.gz").astype(np.float64) / 255.0
    expected = (raw_test - splits.mean[0]) / splits.std[0]
    np.testing.assert_allclose(splits.test.x[:, 0].numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.undo()  # the real sources and the real default data dir
    try:
        directory = locate_fashion_mnist()
    except DataError as e:
        pytest.skip(f"no Fashion-MNIST source is available on this machine: {e}")
    raw = fm.load_fashion_mnist(directory, download=False)
    assert raw.x_train.shape == (60000, 1, 28, 28) and raw.x_test.shape == (10000, 1, 28, 28)
    assert len(raw.class_names) == 10
    assert np.bincount(raw.y_train, minlength=10).tolist() == [6000] * 10
    assert np.bincount(raw.y_test, minlength=10).tolist() == [1000] * 10
