"""The Hugging Face ``datasets`` source (data.name: hf_dataset): a DatasetDict saved to disk holds the same images as
an image folder, so both sources must give the same splits, pixels and statistics, in memory and streamed, and a
streamed run of one must train exactly as the other."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from kdlab.config import parse_config
from kdlab.data import load_dataset, open_streaming
from kdlab.errors import ConfigError, DataError
from kdlab.io import load_tensors
from kdlab.recipe import run
from kdlab.validate import check_components

pytestmark = pytest.mark.skipif(importlib.util.find_spec("datasets") is None,
                                reason="datasets (kdlab[datasets]) not installed")


def _save_as_hf(image_folder, out, as_arrays=False):
    """The image folder's train/ and test/ as a DatasetDict (same rows in the same order: class, then file name)."""
    import datasets
    from PIL import Image

    from kdlab.data.image_folder import scan_image_folder

    train = scan_image_folder(image_folder / "train")
    parts = {"train": train, "test": scan_image_folder(image_folder / "test", train.class_names)}
    image = datasets.Sequence(datasets.Sequence(datasets.Value("uint8"))) if as_arrays else datasets.Image()
    features = datasets.Features({"picture": image, "y": datasets.ClassLabel(names=list(train.class_names))})
    columns = {}
    for split, found in parts.items():
        pictures = [Image.open(found.root / name).copy() for name in found.files]
        columns[split] = datasets.Dataset.from_dict(
            {"picture": [np.array(p) for p in pictures] if as_arrays else pictures, "y": found.labels.tolist()},
            features=features)
    datasets.DatasetDict(columns).save_to_disk(str(out))
    return out


OPTIONS = {"image_column": "picture", "label_column": "y", "channels": 1}


@pytest.mark.parametrize("as_arrays", [False, True])
def test_the_saved_dataset_equals_the_image_folder_in_memory_and_streamed(image_folder, tmp_path, as_arrays):
    saved = _save_as_hf(image_folder, tmp_path / "hf", as_arrays)
    folder = open_streaming("image_folder", data_dir=image_folder, val_size=3, seed=2, train_subset=12, channels=1)
    hf = open_streaming("hf_dataset", data_dir=saved, val_size=3, seed=2, train_subset=12, **OPTIONS)
    assert hf.class_names == folder.class_names == ["class0", "class1", "class2"]
    assert hf.in_shape == (1, 8, 8) and hf.num_classes == 3
    assert hf.mean == folder.mean and hf.std == folder.std  # same pixels, same float64 sums
    for split in ("train", "val", "test"):
        a, b = getattr(folder, split), getattr(hf, split)
        assert len(a) == len(b) and torch.equal(a.y, b.y)
        torch.testing.assert_close(torch.stack([b[i][0] for i in range(len(b))]),
                                   torch.stack([a[i][0] for i in range(len(a))]), rtol=0, atol=0)
    assert len(hf.train) == 12 and len(hf.val) == 3
    memory = load_dataset("hf_dataset", data_dir=saved, val_size=3, seed=2, **OPTIONS)
    reference = load_dataset("image_folder", data_dir=image_folder, val_size=3, seed=2, channels=1)
    torch.testing.assert_close(memory.train.x, reference.train.x, rtol=0, atol=0)
    torch.testing.assert_close(memory.test.x, reference.test.x, rtol=0, atol=0)


def test_fingerprints_follow_the_rows_and_the_settings(image_folder, tmp_path):
    saved = _save_as_hf(image_folder, tmp_path / "hf")
    a = open_streaming("hf_dataset", data_dir=saved, val_size=3, seed=0, **OPTIONS)
    b = open_streaming("hf_dataset", data_dir=saved, val_size=3, seed=0, **OPTIONS)
    other_seed = open_streaming("hf_dataset", data_dir=saved, val_size=3, seed=1, **OPTIONS)
    other_stats = open_streaming("hf_dataset", data_dir=saved, val_size=3, seed=0, mean=[0.5], std=[0.2], **OPTIONS)
    assert a.train.fingerprint() == b.train.fingerprint()
    assert len({a.train.fingerprint(), a.val.fingerprint(), other_seed.train.fingerprint(),
                other_stats.train.fingerprint()}) == 4


def test_bad_layouts_and_columns_are_refused(image_folder, tmp_path, monkeypatch):
    import datasets

    saved = _save_as_hf(image_folder, tmp_path / "hf")
    with pytest.raises(ConfigError, match=r"image_column='image' is not a column .*allowed: picture, y"):
        open_streaming("hf_dataset", data_dir=saved, channels=1)
    with pytest.raises(ConfigError, match="needs data.data_dir"):
        open_streaming("hf_dataset", **OPTIONS)
    with pytest.raises(DataError, match="does not exist"):
        open_streaming("hf_dataset", data_dir=tmp_path / "nowhere", **OPTIONS)
    datasets.load_from_disk(str(saved))["train"].save_to_disk(str(tmp_path / "single"))
    with pytest.raises(DataError, match=r"a single Dataset.*'train' and 'test'"):
        open_streaming("hf_dataset", data_dir=tmp_path / "single", **OPTIONS)
    # the extra is required while the config is checked, naming the install command
    cfg = parse_config({"data": {"name": "hf_dataset", "data_dir": str(saved), "options": OPTIONS},
                        "model": {"name": "mlp"}})
    check_components(cfg)
    real_import = importlib.import_module

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ModuleNotFoundError("No module named 'datasets'", name="datasets")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", no_datasets)
    with pytest.raises(ConfigError, match=r"data.name: hf_dataset needs .*pip install 'kdlab\[datasets\]'"):
        check_components(cfg)


def test_a_streamed_run_with_a_decoding_worker_equals_the_image_folder_run(image_folder, tmp_path):
    """The recipe on the saved dataset, streamed with one decoding worker (the Dataset is sent to a worker process),
    gives the image folder's in-memory weights; a KD student then reads its teacher from the memory-mapped cache."""
    saved = _save_as_hf(image_folder, tmp_path / "hf")
    stats = {"mean": [0.45], "std": [0.3]}
    base = {"model": {"name": "cnn", "width": 0.25, "depth": 1},
            "train": {"epochs": 2, "batch_size": 5, "seed": 1, "progress": False}}
    folder = run(parse_config({**base, "data": {"name": "image_folder", "data_dir": str(image_folder),
                                                "val_size": 3, "options": {"channels": 1, **stats}}}),
                 tmp_path / "folder")
    data = {"name": "hf_dataset", "data_dir": str(saved), "val_size": 3, "streaming": True, "num_workers": 1,
            "options": {**OPTIONS, **stats}}
    hf = run(parse_config({**base, "data": data}), tmp_path / "hf_run")
    a = load_tensors(tmp_path / "folder" / "checkpoints" / "last.safetensors")
    b = load_tensors(tmp_path / "hf_run" / "checkpoints" / "last.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert hf["test_accuracy"] == folder["test_accuracy"]
    kd = {**base, "data": data, "teacher": {"run": str(tmp_path / "hf_run")}, "loss": {"name": "kd"},
          "model": {"name": "mlp", "width": 8, "depth": 1}}
    run(parse_config(kd), tmp_path / "kd", teacher_cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy.d"))) == 1
