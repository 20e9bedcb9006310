import dataclasses
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from kdlab.data import cifar, load_dataset
from kdlab.data.download import safe_extract_tar
from kdlab.errors import DataError

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def records(labels: np.ndarray, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """Records of ``labels`` (rows of label bytes) followed by random pixel bytes; returns (file bytes, pixels)."""
    pixels = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    return np.concatenate([labels.astype(np.uint8), pixels], axis=1).tobytes(), pixels


def write_cifar10(root: Path, per_batch: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    """Five train batches and a test batch of ``per_batch`` records each; returns the labels and pixels written."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True)
    (d / "batches.meta.txt").write_text("\n".join(CIFAR10_NAMES) + "\n\n")
    out = {"train_labels": [], "train_pixels": []}
    for i in range(1, 6):
        labels = (np.arange(per_batch) + i) % 10
        data, pixels = records(labels[:, None], rng)
        (d / f"data_batch_{i}.bin").write_bytes(data)
        out["train_labels"].append(labels)
        out["train_pixels"].append(pixels)
    test_labels = np.arange(per_batch) % 10
    data, test_pixels = records(test_labels[:, None], rng)
    (d / "test_batch.bin").write_bytes(data)
    return {
        "train_labels": np.concatenate(out["train_labels"]),
        "train_pixels": np.concatenate(out["train_pixels"]),
        "test_labels": test_labels,
        "test_pixels": test_pixels,
    }


def test_cifar10_round_trip_and_pixel_layout(tmp_path):
    written = write_cifar10(tmp_path)
    raw = cifar.load_cifar10(tmp_path, download=False)
    assert raw.class_names == CIFAR10_NAMES
    assert raw.x_train.shape == (25, 3, 32, 32) and raw.x_test.shape == (5, 3, 32, 32)
    np.testing.assert_array_equal(raw.y_train, written["train_labels"])
    np.testing.assert_array_equal(raw.y_test, written["test_labels"])
    # Pixel (row 3, col 5) of record 7: red at byte 3*32+5, green 1024 later, blue 2048 later.
    flat = written["train_pixels"][7]
    assert raw.x_train[7, 0, 3, 5] == flat[3 * 32 + 5]
    assert raw.x_train[7, 1, 3, 5] == flat[1024 + 3 * 32 + 5]
    assert raw.x_train[7, 2, 3, 5] == flat[2048 + 3 * 32 + 5]
    # And every pixel: planes of 1024 bytes, row-major.
    n, ch, r, c = np.meshgrid(np.arange(25), np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    np.testing.assert_array_equal(raw.x_train, written["train_pixels"][n, ch * 1024 + r * 32 + c])


def test_cifar10_data_dir_may_be_the_batches_dir(tmp_path):
    write_cifar10(tmp_path)
    raw = cifar.load_cifar10(tmp_path / "cifar-10-batches-bin", download=False)
    assert raw.x_train.shape[0] == 25


def test_bad_record_size_names_the_file(tmp_path):
    write_cifar10(tmp_path)
    bad = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    bad.write_bytes(bad.read_bytes()[:-1])
    with pytest.raises(DataError, match="not a multiple of the 3073-byte record") as err:
        cifar.load_cifar10(tmp_path, download=False)
    assert str(bad) in str(err.value)


def test_label_beyond_class_names_is_an_error(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-bin" / "batches.meta.txt").write_text("\n".join(CIFAR10_NAMES[:5]))
    with pytest.raises(DataError, match="only 5 class names"):
        cifar.load_cifar10(tmp_path, download=False)


def test_missing_files_without_download_explains_how_to_get_them(tmp_path):
    with pytest.raises(DataError) as err:
        cifar.load_cifar10(tmp_path, download=False)
    assert cifar.CIFAR10.url in str(err.value) and "data_batch_1.bin" in str(err.value)


def write_cifar100(root: Path, n_train: int = 6, n_test: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    d = root / "cifar-100-binary"
    d.mkdir(parents=True)
    (d / "fine_label_names.txt").write_text("\n".join(f"fine{i}" for i in range(100)))
    (d / "coarse_label_names.txt").write_text("\n".join(f"coarse{i}" for i in range(20)))
    out = {}
    for part, n in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, n)
        coarse = fine // 5
        data, pixels = records(np.stack([coarse, fine], axis=1), rng)
        (d / f"{part}.bin").write_bytes(data)
        out[part] = (coarse, fine, pixels)
    return out


def test_cifar100_fine_and_coarse_labels(tmp_path):
    written = write_cifar100(tmp_path)
    coarse_train, fine_train, pixels = written["train"]
    fine = cifar.load_cifar100(tmp_path, download=False)
    assert len(fine.class_names) == 100 and fine.class_names[42] == "fine42"
    np.testing.assert_array_equal(fine.y_train, fine_train)
    np.testing.assert_array_equal(fine.y_test, written["test"][1])
    assert fine.x_train[2, 2, 31, 0] == pixels[2][2048 + 31 * 32]  # blue plane, last row, first column
    coarse = cifar.load_cifar100(tmp_path / "cifar-100-binary", download=False, coarse=True)
    assert len(coarse.class_names) == 20
    np.testing.assert_array_equal(coarse.y_train, coarse_train)
    np.testing.assert_array_equal(coarse.x_train, fine.x_train)


def test_cifar100_bad_record_size(tmp_path):
    write_cifar100(tmp_path)
    bad = tmp_path / "cifar-100-binary" / "test.bin"
    bad.write_bytes(bad.read_bytes() + b"\x01\x02")
    with pytest.raises(DataError, match="3074-byte record") as err:
        cifar.load_cifar100(tmp_path, download=False)
    assert str(bad) in str(err.value)


def test_load_dataset_normalises_each_channel(tmp_path):
    write_cifar10(tmp_path, per_batch=10)
    splits = load_dataset("cifar10", data_dir=tmp_path, download=False, val_size=10)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (40, 10, 10)
    assert splits.in_shape == (3, 32, 32) and len(splits.mean) == 3
    x = splits.train.x.double()
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2, 3), correction=0), torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0)
    assert len(set(splits.mean)) == 3  # computed per channel, not shared


def test_load_dataset_cifar100_coarse_option(tmp_path):
    write_cifar100(tmp_path, n_train=40, n_test=4)
    splits = load_dataset("cifar100", data_dir=tmp_path, download=False, val_size=0, coarse=True)
    assert splits.num_classes == 20 and int(splits.train.y.max()) < 20


def tar_with(tmp_path: Path, name: str, kind: bytes = tarfile.REGTYPE) -> Path:
    path = tmp_path / "a.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("ok/file.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        member = tarfile.TarInfo(name)
        member.type = kind
        if kind == tarfile.SYMTYPE:
            member.linkname = "/etc/passwd"
        else:
            member.size = 4
        tar.addfile(member, io.BytesIO(b"evil") if kind == tarfile.REGTYPE else None)
    return path


@pytest.mark.parametrize("name", ["../evil.txt", "ok/../../evil.txt", "/tmp/kdlab-evil.txt"])
def test_extraction_refuses_escaping_members(tmp_path, name):
    dest = tmp_path / "out"
    with pytest.raises(DataError, match="absolute path or '..'"):
        safe_extract_tar(tar_with(tmp_path, name), dest)
    assert not dest.exists()  # refused before writing anything


def test_extraction_refuses_links(tmp_path):
    with pytest.raises(DataError, match="link or special file"):
        safe_extract_tar(tar_with(tmp_path, "ok/link", tarfile.SYMTYPE), tmp_path / "out")


def test_extraction_writes_regular_files(tmp_path):
    written = safe_extract_tar(tar_with(tmp_path, "ok/second.txt"), tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == ["ok/file.txt", "ok/second.txt"]
    assert (tmp_path / "out" / "ok" / "second.txt").read_bytes() == b"evil"


def cifar10_archive(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    write_cifar10(src)
    archive = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    return archive


def test_download_verifies_md5_and_extracts(tmp_path, monkeypatch):
    archive = cifar10_archive(tmp_path)
    monkeypatch.setattr(cifar, "download_file", lambda url, dest, timeout=0: Path(dest).write_bytes(archive.read_bytes()) and Path(dest))
    layout = dataclasses.replace(cifar.CIFAR10, md5=cifar.file_md5(archive))
    cifar.download_cifar(layout, tmp_path / "data")
    assert (tmp_path / "data" / "cifar-10-batches-bin" / "test_batch.bin").is_file()


def test_download_md5_mismatch(tmp_path, monkeypatch):
    archive = cifar10_archive(tmp_path)
    monkeypatch.setattr(cifar, "download_file", lambda url, dest, timeout=0: Path(dest).write_bytes(archive.read_bytes()) and Path(dest))
    with pytest.raises(DataError, match=f"expected MD5 {cifar.CIFAR10.md5}, got {cifar.file_md5(archive)}"):
        cifar.download_cifar(cifar.CIFAR10, tmp_path / "data")
    assert not (tmp_path / "data" / "cifar-10-batches-bin").exists()
