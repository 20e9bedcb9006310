import numpy as np
import torch

from kdlab.data import load_dataset
from kdlab.data.digits import load_digits_dataset


def test_raw_digits_shapes_values_and_stratified_test_split():
    raw = load_digits_dataset()
    assert raw.x_train.shape == (1438, 1, 8, 8) and raw.x_test.shape == (359, 1, 8, 8)
    assert raw.x_train.dtype == np.uint8 and int(raw.x_train.max()) == 16 and raw.max_value == 16
    assert raw.class_names == [str(d) for d in range(10)]
    all_counts = np.bincount(np.concatenate([raw.y_train, raw.y_test]), minlength=10)
    test_counts = np.bincount(raw.y_test, minlength=10)
    assert np.all(np.abs(test_counts - 0.2 * all_counts) < 1)  # each class keeps its 20 %


def test_digits_test_split_is_fixed_and_disjoint():
    a, b = load_digits_dataset(), load_digits_dataset()
    np.testing.assert_array_equal(a.x_test, b.x_test)
    other = load_digits_dataset(split_seed=1)
    assert not np.array_equal(a.y_test, other.y_test)
    train_rows = {row.tobytes() for row in a.x_train.reshape(len(a.x_train), -1)}
    test_rows = [row.tobytes() for row in a.x_test.reshape(len(a.x_test), -1)]
    # sklearn's digits has a few duplicate images; almost none may appear on both sides.
    assert sum(r in train_rows for r in test_rows) < 5


def test_load_dataset_digits_sizes():
    splits = load_dataset("digits", val_size=0.25)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1078, 360, 359)
    assert splits.train.x.shape[1:] == (1, 8, 8) and splits.train.x.dtype == torch.float32
    assert splits.num_classes == 10 and splits.in_shape == (1, 8, 8)
    assert torch.equal(load_dataset("digits", seed=5).test.y, splits.test.y)  # seed moves only train/val
