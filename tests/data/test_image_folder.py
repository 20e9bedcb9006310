"""The image-folder source: decoded in memory or streamed from disk, the same samples, splits and batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlab.data import DatasetLoader, TensorLoader, load_dataset, open_streaming
from kdlab.data.image_folder import decode_image, scan_image_folder
from kdlab.errors import ConfigError, DataError


def test_scan_labels_folders_in_sorted_order_and_decodes_pngs_exactly(image_folder):
    from PIL import Image

    images = scan_image_folder(image_folder / "train")
    assert images.class_names == ("class0", "class1", "class2")
    assert images.files[:2] == ("class0/img000.png", "class0/img001.png")
    assert images.labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    pixels = decode_image(image_folder / "train" / images.files[7], None, 1)
    written = np.asarray(Image.open(image_folder / "train" / images.files[7]))
    assert pixels.shape == (1, 8, 8) and np.array_equal(pixels[0], written)
    rgb = decode_image(image_folder / "train" / images.files[7], (4, 6), 3)
    assert rgb.shape == (3, 4, 6) and np.array_equal(rgb[0], rgb[2])  # grey converted to RGB: equal planes


def test_streamed_splits_equal_the_in_memory_splits(image_folder):
    kwargs = dict(data_dir=image_folder, val_size=3, seed=1, train_subset=9, channels=1)
    memory = load_dataset("image_folder", **kwargs)
    streamed = open_streaming("image_folder", **kwargs)
    assert (len(streamed.train), len(streamed.val), len(streamed.test)) == (9, 3, 6)
    assert streamed.in_shape == memory.in_shape == (1, 8, 8) and streamed.num_classes == 3
    # statistics: float64 sums in one streamed pass vs two passes in memory agree to float32 precision
    assert streamed.mean == pytest.approx(memory.mean, rel=1e-6) and streamed.std == pytest.approx(memory.std, rel=1e-6)
    for split in ("train", "val", "test"):
        m, s = getattr(memory, split), getattr(streamed, split)
        assert torch.equal(s.y, m.y), split
        x = torch.stack([s[i][0] for i in range(len(s))])
        torch.testing.assert_close(x, m.x, rtol=1e-5, atol=1e-5)


def test_dataset_loader_gives_the_tensor_loaders_batches_and_shards(image_folder):
    kwargs = dict(data_dir=image_folder, val_size=0, channels=1, mean=[0.5], std=[0.25])
    memory = load_dataset("image_folder", data_dir=image_folder, val_size=0, channels=1)
    streamed = open_streaming("image_folder", **kwargs)
    for rank in (0, 1):
        a = TensorLoader(memory.train, 4, shuffle=True, seed=3, rank=rank, world_size=2)
        b = DatasetLoader(streamed.train, 4, shuffle=True, seed=3, rank=rank, world_size=2)
        for epoch in (0, 1):
            a.set_epoch(epoch), b.set_epoch(epoch)
            got = [(batch.index.tolist(), batch.y.tolist()) for batch in b]
            assert got == [(batch.index.tolist(), batch.y.tolist()) for batch in a]
    # the two ranks' shards of an epoch cover the training set (9 + 9 = 18: no padding needed here)
    seen = [i for rank in (0, 1) for batch in DatasetLoader(streamed.train, 4, shuffle=True, seed=3, rank=rank,
                                                               world_size=2) for i in batch.index.tolist()]
    assert sorted(seen) == list(range(18))
    # a decoding worker process gives the same batches as decoding in this process
    one = [b.x for b in DatasetLoader(streamed.train, 5, shuffle=True, seed=2)]
    two = [b.x for b in DatasetLoader(streamed.train, 5, shuffle=True, seed=2, num_workers=1)]
    assert all(torch.equal(p, q) for p, q in zip(one, two)) and len(one) == len(two) == 4


def test_given_statistics_are_used_and_bad_layouts_are_refused(image_folder, tmp_path):
    streamed = open_streaming("image_folder", data_dir=image_folder, val_size=0, channels=1, mean=[0.5], std=[0.25])
    x, y, i = streamed.train[0]
    raw = torch.from_numpy(streamed.train.pixels(0)).float() / 255
    torch.testing.assert_close(x, (raw - 0.5) / 0.25) and (y.item(), i.item()) == (0, 0)
    with pytest.raises(ConfigError, match="both mean and std"):
        open_streaming("image_folder", data_dir=image_folder, channels=1, mean=[0.5])
    with pytest.raises(ConfigError, match="image_size"):
        open_streaming("image_folder", data_dir=image_folder, image_size=[0, 3])
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("image_folder", data_dir=tmp_path / "nothing")
    (image_folder / "test" / "class9").mkdir()
    with pytest.raises(DataError, match="class9"):
        load_dataset("image_folder", data_dir=image_folder)


def test_images_of_different_sizes_need_image_size(tmp_path):
    from PIL import Image

    for part in ("train", "test"):
        for c, size in ((0, (8, 8)), (1, (6, 10))):
            (tmp_path / part / f"c{c}").mkdir(parents=True)
            Image.new("L", size, color=100).save(tmp_path / part / f"c{c}" / "a.png")
    with pytest.raises(DataError, match="image_size"):
        load_dataset("image_folder", data_dir=tmp_path, val_size=0)
    data = load_dataset("image_folder", data_dir=tmp_path, val_size=0, image_size=[5, 7], channels=1)
    assert data.train.x.shape == (2, 1, 5, 7)


def test_a_streamed_run_equals_the_in_memory_run_and_distils_from_a_disk_cache(image_folder, tmp_path):
    """The recipe with data.streaming: the same batches and numbers as in memory (given statistics), so the same
    weights; a KD student then reads its teacher's outputs from the memory-mapped cache."""
    from kdlab.config import parse_config
    from kdlab.io import load_tensors
    from kdlab.recipe import run

    base = {"data": {"name": "image_folder", "data_dir": str(image_folder), "val_size": 3,
                     "options": {"channels": 1, "mean": [0.45], "std": [0.3]}},
            "model": {"name": "cnn", "width": 0.25, "depth": 1},
            "train": {"epochs": 2, "batch_size": 5, "seed": 1, "progress": False}}
    memory = run(parse_config(base), tmp_path / "memory")
    streamed = run(parse_config({**base, "data": {**base["data"], "streaming": True}}), tmp_path / "streamed")
    a = load_tensors(tmp_path / "memory" / "checkpoints" / "last.safetensors")
    b = load_tensors(tmp_path / "streamed" / "checkpoints" / "last.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert streamed["test_accuracy"] == memory["test_accuracy"]
    kd = {**base, "data": {**base["data"], "streaming": True}, "teacher": {"run": str(tmp_path / "memory")},
          "loss": {"name": "kd"}, "model": {"name": "mlp", "width": 8, "depth": 1}}
    run(parse_config(kd), tmp_path / "kd", teacher_cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy.d"))) == 1
    run(parse_config({**kd, "teacher": {**kd["teacher"], "cache_topk": 2}}), tmp_path / "kd_top2",
        teacher_cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy.d"))) == 2
