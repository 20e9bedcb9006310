"""fit and the Distiller take any iterable of batches: a torch DataLoader over a map-style or an iterable Dataset,
plain (inputs, targets) pairs, HF-style mapping batches. Resume equivalence per kind of loader, as documented in
kdlab.data.epochs: exact for seeded samplers (and a shuffling DataLoader without its own generator), epoch-granular
otherwise."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from kdlab.batch import split_batch
from kdlab.config import OptimConfig, ScheduleConfig, TrainConfig
from kdlab.distill import Distiller
from kdlab.errors import KdlabError
from kdlab.io import load_tensors
from kdlab.losses import build
from kdlab.train import fit

TRAIN = TrainConfig(epochs=3, batch_size=16, progress=False, seed=0)
OPTIM = OptimConfig(lr=0.1)
SCHEDULE = ScheduleConfig(name="cosine")


class Interrupt(Exception):
    pass


def _data(n=96):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return x, y


def _objective(seed=0, teacher=None):
    torch.manual_seed(seed)
    student = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))
    return Distiller(student, build("kd" if teacher is not None else "ce"), teacher=teacher)


class Indexed(Dataset):
    """A map-style dataset yielding (x, y, i)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i], i


class Stream(IterableDataset):
    """An iterable dataset: a fixed order each pass (no index)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        yield from zip(self.x, self.y)


class EpochSampler(torch.utils.data.Sampler):
    """A sampler whose order is a function of (seed, epoch), like DistributedSampler."""

    def __init__(self, n, seed):
        self.n, self.seed, self.epoch, self.calls = n, seed, 0, []

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.calls.append(epoch)

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1000 + self.epoch))
                    .tolist())

    def __len__(self):
        return self.n


def _fit(objective, loader, run_dir, interrupt_at=None, **kwargs):
    def stop(record):
        if record["epoch"] == interrupt_at:
            raise Interrupt

    return fit(objective, loader, None, run_dir, train=TRAIN, optim=OPTIM, schedule=SCHEDULE,
               on_epoch_end=stop if interrupt_at else None, **kwargs)


def _weights(run_dir):
    return load_tensors(run_dir / "checkpoints" / "last.safetensors")


def _resume_matches(make_loader, tmp_path, exact: bool):
    full = _fit(_objective(), make_loader(), tmp_path / "full")
    with pytest.raises(Interrupt):
        _fit(_objective(), make_loader(), tmp_path / "cut", interrupt_at=1)
    first = (tmp_path / "cut" / "metrics.jsonl").read_text()
    # a new process would rebuild everything: a fresh objective and loader, then resume from the checkpoint
    torch.manual_seed(123)  # whatever the global random state is now, resume restores the checkpointed one
    resumed = _fit(_objective(), make_loader(), tmp_path / "cut")
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert resumed["history"][0] == json.loads(first)  # epoch 1 was not trained again
    assert resumed["history"][0]["train_loss"] == full["history"][0]["train_loss"]
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    same = all(torch.equal(a[k], b[k]) for k in a)
    assert same == exact


def test_a_shuffling_dataloader_over_a_map_style_dataset_resumes_exactly(tmp_path):
    x, y = _data()
    _resume_matches(lambda: DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True), tmp_path, exact=True)


def test_a_sampler_with_set_epoch_is_told_the_epoch_and_resumes_exactly(tmp_path):
    x, y = _data()
    sampler = EpochSampler(len(y), seed=5)
    _resume_matches(lambda: DataLoader(Indexed(x, y), batch_size=16, sampler=sampler), tmp_path, exact=True)
    assert sampler.calls == [0, 1, 2, 0, 1, 2]  # the full run; the cut run (epoch 1), then its resumption


def test_a_dataloader_with_its_own_generator_resumes_epoch_granular(tmp_path):
    """Its generator's state is not checkpointed: the resumed run re-draws the order of its epoch 2 from a fresh
    generator (epoch 1's order), so it finishes every epoch but not with the uninterrupted run's weights."""
    x, y = _data()
    _resume_matches(lambda: DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True,
                                       generator=torch.Generator().manual_seed(0)), tmp_path, exact=False)


def test_an_iterable_dataset_needs_steps_per_epoch_and_resumes_after_the_last_epoch(tmp_path):
    x, y = _data()
    loader = DataLoader(Stream(x, y), batch_size=16)
    with pytest.raises(KdlabError, match="steps_per_epoch"):
        _fit(_objective(), loader, tmp_path / "no_steps")
    full = _fit(_objective(), loader, tmp_path / "full", steps_per_epoch=4)  # 4 of its 6 batches per epoch
    assert len(full["history"]) == 3
    with pytest.raises(Interrupt):
        _fit(_objective(), loader, tmp_path / "cut", interrupt_at=2, steps_per_epoch=4)
    resumed = _fit(_objective(), loader, tmp_path / "cut", steps_per_epoch=4)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    metrics = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    # a fixed order every pass: here even the iterable resumes exactly (the guarantee is only epoch-granular)
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pairs_without_index_train_with_a_live_teacher_and_refuse_a_cache(tmp_path):
    x, y = _data()
    torch.manual_seed(1)
    teacher = nn.Sequential(nn.Linear(6, 3))
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    result = _fit(_objective(teacher=teacher), loader, tmp_path / "live")
    assert {"train_kd", "train_ce"} <= set(result["history"][-1])
    cached = Distiller(nn.Linear(6, 3), build("kd"), teacher_logits=torch.zeros(96, 3))
    with pytest.raises(ValueError, match="no index"):
        _fit(cached, loader, tmp_path / "cached")


def test_split_batch_reads_every_batch_shape():
    x, y, i = torch.zeros(2, 3), torch.tensor([0, 1]), torch.tensor([4, 5])
    assert split_batch((x, y)) == (x, y, None)
    assert split_batch([x, y, i]) == (x, y, i)
    inputs, targets, index = split_batch({"input_ids": x, "attention_mask": x, "labels": y, "index": i})
    assert set(inputs) == {"input_ids", "attention_mask"} and targets is y and index is i
    inputs, targets, index = split_batch({"pixel_values": x, "label": y})
    assert set(inputs) == {"pixel_values"} and targets is y and index is None
    with pytest.raises(TypeError, match="labels"):
        split_batch({"input_ids": x})
    with pytest.raises(TypeError, match="of length 4"):
        split_batch((x, y, i, i))
