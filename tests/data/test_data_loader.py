import pytest
import torch

from kdlab.data import ArrayDataset, Batch, TensorLoader, build_augment
from kdlab.errors import ConfigError


def dataset(n=103, images=False):
    x = torch.arange(n, dtype=torch.float32)
    x = x.reshape(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous() if images else x.reshape(n, 1).repeat(1, 3)
    return ArrayDataset(x, torch.arange(n) % 7)


def indices(loader, epoch=0):
    loader.set_epoch(epoch)
    return torch.cat([b.index for b in loader])


def test_each_index_once_per_epoch_and_rows_match():
    ds = dataset()
    loader = TensorLoader(ds, 10, shuffle=True, seed=1)
    assert len(loader) == 11
    batches = list(loader)
    assert all(isinstance(b, Batch) for b in batches)
    assert [len(b.index) for b in batches] == [10] * 10 + [3]
    assert torch.equal(torch.sort(torch.cat([b.index for b in batches])).values, torch.arange(103))
    for b in batches:
        assert torch.equal(b.x, ds.x[b.index]) and torch.equal(b.y, ds.y[b.index])


def test_order_is_a_function_of_seed_and_epoch():
    ds = dataset()
    a = indices(TensorLoader(ds, 16, shuffle=True, seed=3), epoch=2)
    assert torch.equal(a, indices(TensorLoader(ds, 16, shuffle=True, seed=3), epoch=2))
    assert not torch.equal(a, indices(TensorLoader(ds, 16, shuffle=True, seed=3), epoch=3))
    assert not torch.equal(a, indices(TensorLoader(ds, 16, shuffle=True, seed=4), epoch=2))
    assert not torch.equal(a, torch.arange(103))
    assert torch.equal(indices(TensorLoader(ds, 16)), torch.arange(103))


def test_resumed_loader_replays_the_epoch_including_augmentation():
    ds = dataset(40, images=True)
    augment = build_augment(crop_padding=1, hflip=True)
    first = TensorLoader(ds, 8, shuffle=True, seed=5, augment=augment)
    for epoch in range(3):
        first.set_epoch(epoch)
        run = list(first)
    resumed = TensorLoader(ds, 8, shuffle=True, seed=5, augment=augment)
    resumed.set_epoch(2)
    for a, b in zip(run, resumed):
        assert torch.equal(a.index, b.index) and torch.equal(a.x, b.x)
    assert resumed.augment_spec == augment.spec()
    first.set_epoch(1)
    assert not torch.equal(next(iter(first)).x, run[0].x)


def test_augmentation_changes_inputs_but_not_labels():
    ds = dataset(32, images=True)
    loader = TensorLoader(ds, 32, augment=build_augment(crop_padding=2))
    batch = next(iter(loader))
    assert batch.x.shape == (32, 1, 4, 4) and torch.equal(batch.y, ds.y)
    assert not torch.equal(batch.x, ds.x)  # some crops are off-centre and show the zero padding
    assert TensorLoader(ds, 4).augment_spec is None


def test_drop_last():
    loader = TensorLoader(dataset(), 10, shuffle=True, drop_last=True)
    assert len(loader) == 10
    assert [len(b.index) for b in loader] == [10] * 10


def test_ddp_shards_are_disjoint_and_cover_when_divisible():
    ds = dataset(100)
    shards = [indices(TensorLoader(ds, 8, shuffle=True, seed=2, rank=r, world_size=4), epoch=1) for r in range(4)]
    assert [len(s) for s in shards] == [25] * 4
    assert torch.equal(torch.sort(torch.cat(shards)).values, torch.arange(100))
    # Strided shards of the single-process permutation of the same (seed, epoch).
    whole = indices(TensorLoader(ds, 8, shuffle=True, seed=2), epoch=1)
    assert torch.equal(shards[1], whole[1::4])


def test_ddp_pads_by_wrapping_so_ranks_have_equal_length():
    ds = dataset(103)
    loaders = [TensorLoader(ds, 5, shuffle=True, seed=0, rank=r, world_size=4) for r in range(4)]
    shards = [indices(loader) for loader in loaders]
    assert [len(s) for s in shards] == [26] * 4 and len({len(loader) for loader in loaders}) == 1
    joined = torch.cat(shards)
    assert torch.equal(torch.unique(joined), torch.arange(103))
    whole = indices(TensorLoader(ds, 5, shuffle=True, seed=0))
    assert joined.tolist().count(int(whole[0])) == 2  # the one padded slot repeats the first sample


@pytest.mark.parametrize("kwargs, key", [({"batch_size": 0}, "batch_size"), ({"world_size": 0}, "world_size"),
                                         ({"rank": 2, "world_size": 2}, "rank")])
def test_bad_arguments(kwargs, key):
    args = {"batch_size": 4, **kwargs}
    with pytest.raises(ConfigError, match=key):
        TensorLoader(dataset(), **args)


def test_empty_dataset():
    empty = ArrayDataset(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64))
    assert len(TensorLoader(empty, 4)) == 0 and list(TensorLoader(empty, 4)) == []
    assert list(TensorLoader(empty, 4, world_size=2, rank=1)) == []


def test_a_tensor_dataset_gives_the_array_datasets_batches_and_bad_ones_are_refused():
    from torch.utils.data import TensorDataset

    ds = dataset()
    labels = ds.y.to(torch.int32)  # any integer labels; the loader gives int64 as for an ArrayDataset
    a = list(TensorLoader(ds, 10, shuffle=True, seed=4))
    b = list(TensorLoader(TensorDataset(ds.x, labels), 10, shuffle=True, seed=4))
    assert len(a) == len(b) == 11
    for u, v in zip(a, b):
        assert torch.equal(u.x, v.x) and torch.equal(u.index, v.index)
        assert v.y.dtype == torch.int64 and torch.equal(u.y, v.y)
    with pytest.raises(ConfigError, match=r"TensorDataset\(torch.float32 \[103, 3\]\) is not allowed"):
        TensorLoader(TensorDataset(ds.x), 10)
    with pytest.raises(ConfigError, match=r"torch.float32 \[103\]\) is not allowed.*integer labels"):
        TensorLoader(TensorDataset(ds.x, ds.y.float()), 10)
    with pytest.raises(ConfigError, match="type list cannot be held by a TensorLoader"):
        TensorLoader([(ds.x[0], ds.y[0])], 10)
