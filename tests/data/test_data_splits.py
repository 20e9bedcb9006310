import pytest
import torch

from kdlab.data.splits import allocate_per_class, resolve_val_size, stratified_split
from kdlab.errors import ConfigError


def test_allocation_sums_exactly_and_is_proportional():
    counts = torch.tensor([50, 30, 20])
    assert allocate_per_class(counts, 10).tolist() == [5, 3, 2]
    # 7 * (0.5, 0.3, 0.2) = (3.5, 2.1, 1.4): floors 3, 2, 1, the leftover goes to the largest remainder.
    assert allocate_per_class(counts, 7).tolist() == [4, 2, 1]
    assert allocate_per_class(counts, 100).tolist() == [50, 30, 20]
    assert allocate_per_class(counts, 0).tolist() == [0, 0, 0]


def test_allocation_minimum_per_class():
    counts = torch.tensor([97, 2, 1])
    assert allocate_per_class(counts, 3, min_per_class=1).tolist() == [1, 1, 1]
    quota = allocate_per_class(counts, 10, min_per_class=1)
    assert quota.tolist() == [8, 1, 1] and int(quota.sum()) == 10


def test_stratified_split_partitions_and_is_deterministic():
    y = torch.tensor([0] * 40 + [1] * 40 + [2] * 20)[torch.randperm(100, generator=torch.Generator().manual_seed(3))]
    kept, taken = stratified_split(y, 25, torch.Generator().manual_seed(0))
    assert len(taken) == 25 and len(kept) == 75
    assert torch.equal(torch.sort(torch.cat([kept, taken])).values, torch.arange(100))
    assert torch.equal(kept, torch.sort(kept).values)
    assert torch.bincount(y[taken]).tolist() == [10, 10, 5]
    again = stratified_split(y, 25, torch.Generator().manual_seed(0))[1]
    other = stratified_split(y, 25, torch.Generator().manual_seed(1))[1]
    assert torch.equal(taken, again) and not torch.equal(taken, other)


def test_labels_need_not_be_contiguous():
    y = torch.tensor([7, 7, 7, 7, 3, 3])
    _, taken = stratified_split(y, 3, torch.Generator().manual_seed(0))
    assert sorted(y[taken].tolist()) == [3, 7, 7]


@pytest.mark.parametrize("val_size, count", [(0.1, 10), (0.0, 0), (0, 0), (37, 37), (0.994, 99)])
def test_resolve_val_size(val_size, count):
    assert resolve_val_size(val_size, 100) == count


@pytest.mark.parametrize("val_size", [-0.1, 1.0, 1.5, 0.999, -1, 100, 250, "0.1", True, float("nan")])
def test_resolve_val_size_rejects(val_size):
    with pytest.raises(ConfigError, match="val_size"):
        resolve_val_size(val_size, 100)
