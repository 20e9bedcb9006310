import pytest
import torch

from kdlab.data import DATASETS, GaussianMixture, load_dataset
from kdlab.data.seeding import generator_for
from kdlab.errors import ConfigError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def test_registered_sources():
    assert {"cifar10", "cifar100", "digits", "fashion_mnist", "gaussian_mixture"} <= set(DATASETS.names())


def test_same_seed_same_splits_different_seed_different(digits):
    again = load_dataset("digits", seed=0)
    assert again.fingerprint() == digits.fingerprint()
    assert torch.equal(again.train.x, digits.train.x) and torch.equal(again.val.y, digits.val.y)
    other = load_dataset("digits", seed=1)
    assert other.fingerprint() != digits.fingerprint()
    assert other.val.fingerprint() != digits.val.fingerprint()
    assert len(other.val) == len(digits.val)


def test_validation_split_is_stratified(digits):
    n_train_official = len(digits.train) + len(digits.val)
    assert len(digits.val) == round(0.1 * n_train_official)
    all_y = torch.cat([digits.train.y, digits.val.y])
    expected = 0.1 * torch.bincount(all_y, minlength=10).double()
    assert torch.all((torch.bincount(digits.val.y, minlength=10) - expected).abs() < 1)


def test_val_size_as_count_and_zero():
    assert len(load_dataset("digits", val_size=100).val) == 100
    empty = load_dataset("digits", val_size=0)
    assert len(empty.val) == 0 and empty.val.x.shape == (0, 1, 8, 8) and len(empty.train) == 1438


def test_train_part_is_standardised(digits):
    x = digits.train.x.double()
    assert abs(float(x.mean())) < 1e-6 and abs(float(x.std(correction=0)) - 1) < 1e-6
    # The stored statistics are those of the [0, 1]-scaled training part.
    unscaled = digits.train.x.double() * digits.std[0] + digits.mean[0]
    assert float(unscaled.min()) > -1e-6 and abs(float(unscaled.max()) - 1) < 1e-6
    # Validation and test use the training statistics, so their mean is near but not exactly 0.
    assert 0 < abs(float(digits.test.x.double().mean())) < 0.2


def test_train_subset_is_stratified_and_shares_normalisation(digits):
    small = load_dataset("digits", seed=0, train_subset=50)
    assert len(small.train) == 50
    counts = torch.bincount(small.train.y, minlength=10)
    assert counts.min() >= 4 and counts.max() <= 6
    # Same val/test tensors and statistics as without the subset: teacher and student see the same inputs.
    assert small.mean == digits.mean and small.std == digits.std
    assert small.val.fingerprint() == digits.val.fingerprint()
    assert small.test.fingerprint() == digits.test.fingerprint()
    full_rows = {row.numpy().tobytes() for row in digits.train.x}
    assert all(row.numpy().tobytes() in full_rows for row in small.train.x)
    assert load_dataset("digits", seed=0, train_subset=50).train.fingerprint() == small.train.fingerprint()
    assert load_dataset("digits", seed=1, train_subset=50).train.fingerprint() != small.train.fingerprint()


@pytest.mark.parametrize("val_size", [-0.1, 1.0, 1438, -5])
def test_bad_val_size(val_size):
    with pytest.raises(ConfigError, match=rf"val_size={val_size!r}.*allowed"):
        load_dataset("digits", val_size=val_size)


@pytest.mark.parametrize("train_subset", [9, 0, 1295, 10_000, 2.5])
def test_bad_train_subset(train_subset):
    with pytest.raises(ConfigError, match=rf"train_subset={train_subset!r}.*\[10, 1294\]"):
        load_dataset("digits", train_subset=train_subset)


def test_unknown_option_names_it_and_the_allowed_ones():
    with pytest.raises(ConfigError, match="has no option 'test_sise'.*Did you mean 'test_size'.*split_seed") as err:
        load_dataset("digits", test_sise=0.3)
    assert "data_dir" not in str(err.value)


def test_unknown_dataset_name():
    with pytest.raises(ConfigError, match="unknown dataset 'fashion_mnst'. Did you mean 'fashion_mnist'"):
        load_dataset("fashion_mnst")


def test_hyphenated_name_is_accepted():
    assert load_dataset("gaussian-mixture", n_train=40, n_test=8, val_size=0).name == "gaussian_mixture"


def test_gaussian_mixture_is_not_normalised_and_exposes_the_mixture():
    splits = load_dataset("gaussian_mixture", num_classes=3, dim=5, n_train=300, n_test=60, val_size=30)
    mixture = splits.source_info["mixture"]
    assert isinstance(mixture, GaussianMixture) and mixture.num_classes == 3 and mixture.dim == 5
    assert splits.in_shape == (5,) and splits.train.x.shape == (270, 5) and splits.test.x.shape == (60, 5)
    assert splits.mean == (0.0,) * 5 and splits.std == (1.0,) * 5
    raw = torch.cat([splits.train.x, splits.val.x])
    expected_x, _ = mixture.sample(300, generator_for(0, "gmm-train"))
    assert {r.numpy().tobytes() for r in raw} == {r.numpy().tobytes() for r in expected_x}  # values untouched


def test_gaussian_mixture_seed_options():
    a = load_dataset("gaussian_mixture", mixture_seed=1, n_train=100, n_test=10, val_size=0)
    b = load_dataset("gaussian_mixture", mixture_seed=2, n_train=100, n_test=10, val_size=0)
    assert not torch.equal(a.source_info["mixture"].means, b.source_info["mixture"].means)
    assert torch.equal(a.test.x, load_dataset("gaussian_mixture", mixture_seed=1, n_train=100, n_test=10).test.x)


def test_summary_is_json_able(digits):
    import json

    summary = json.loads(json.dumps(digits.summary()))
    assert summary["num_train"] == len(digits.train) and summary["fingerprint"] == digits.fingerprint()


def test_subset_and_fingerprint_of_array_dataset(digits):
    part = digits.train.subset([3, 1, 2])
    assert torch.equal(part.y, digits.train.y[[3, 1, 2]])
    assert part.fingerprint() == digits.train.subset(torch.tensor([3, 1, 2])).fingerprint()
    assert part.fingerprint() != digits.train.subset([1, 2, 3]).fingerprint()
    mask = torch.zeros(len(digits.train), dtype=torch.bool)
    mask[[1, 2, 3]] = True
    assert digits.train.subset(mask).fingerprint() == digits.train.subset([1, 2, 3]).fingerprint()
