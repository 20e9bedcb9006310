"""The on-disk (memory-mapped) teacher-output cache and the top-k cache: equal to the in-memory cache, reused, and
the top-k approximation within its documented bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdlab.data import load_dataset, open_streaming
from kdlab.distill import Distiller
from kdlab.distill.cache import MappedLogits, TopKLogits, cached_teacher_logits, disk_teacher_logits, topk_rows
from kdlab.losses import build
from kdlab.models import create_model


def _teacher():
    torch.manual_seed(0)
    return create_model("cnn", 3, (1, 8, 8), width=0.25, depth=1).eval()


def test_disk_cache_equals_the_in_memory_cache_and_is_reused(image_folder, tmp_path):
    stats = dict(mean=[0.5], std=[0.25], channels=1)
    memory = load_dataset("image_folder", data_dir=image_folder, val_size=0, channels=1)
    streamed = open_streaming("image_folder", data_dir=image_folder, val_size=0, **stats)
    teacher = _teacher()
    # the same normalisation in both, so both feed the teacher the same inputs
    x = (memory.train.x * torch.tensor(memory.std).view(1, -1, 1, 1) + torch.tensor(memory.mean).view(1, -1, 1, 1)
         - 0.5) / 0.25
    dense = cached_teacher_logits(teacher, x, "fp", cache_dir=tmp_path / "mem", batch_size=5)
    mapped = disk_teacher_logits(teacher, streamed.train, streamed.train.fingerprint(), cache_dir=tmp_path / "disk",
                                 batch_size=5)
    assert isinstance(mapped, MappedLogits) and len(mapped) == 18
    torch.testing.assert_close(mapped[torch.arange(18)], dense, rtol=1e-5, atol=1e-5)
    (entry,) = (tmp_path / "disk").glob("*.npy.d")
    assert isinstance(np.load(entry / "logits.npy", mmap_mode="r"), np.memmap)
    built = (entry / "logits.npy").stat().st_mtime_ns
    again = disk_teacher_logits(teacher, streamed.train, streamed.train.fingerprint(), cache_dir=tmp_path / "disk")
    assert (entry / "logits.npy").stat().st_mtime_ns == built and torch.equal(again[torch.tensor([3, 1])],
                                                                            mapped[torch.tensor([3, 1])])
    # top-k on disk equals top-k of the in-memory logits, row for row
    topk = disk_teacher_logits(teacher, streamed.train, streamed.train.fingerprint(), cache_dir=tmp_path / "disk",
                               topk=2)
    assert isinstance(topk, TopKLogits) and len(list((tmp_path / "disk").glob("*.npy.d"))) == 2
    torch.testing.assert_close(topk[torch.arange(18)], TopKLogits.from_logits(dense, 2)[torch.arange(18)],
                               rtol=1e-5, atol=1e-5)


def test_a_distiller_reads_a_memory_mapped_cache_like_a_tensor(image_folder, tmp_path):
    streamed = open_streaming("image_folder", data_dir=image_folder, val_size=0, channels=1)
    teacher = _teacher()
    mapped = disk_teacher_logits(teacher, streamed.train, streamed.train.fingerprint(), cache_dir=tmp_path)
    dense = mapped[torch.arange(len(mapped))]
    student = create_model("mlp", 3, (1, 8, 8), width=8, depth=1)
    x, y, index = (torch.stack(t) for t in zip(*(streamed.train[i] for i in (4, 9, 2))))
    a = Distiller(student, build("kd"), teacher_logits=mapped)(x, y, index)
    b = Distiller(student, build("kd"), teacher_logits=dense)(x, y, index)
    assert torch.equal(a.loss, b.loss)
    with pytest.raises(ValueError, match="no index"):
        Distiller(student, build("kd"), teacher_logits=mapped)(x, y, None)


def test_topk_keeps_the_top_probabilities_and_the_tail_mass_exactly():
    z = torch.tensor([[4.0, 1.0, 0.0, -1.0, 2.0]])
    table = TopKLogits.from_logits(z, 2)
    rebuilt = table[torch.tensor([0])]
    fill = math.log((math.exp(1.0) + math.exp(0.0) + math.exp(-1.0)) / 3)  # log-mean-exp of the tail
    torch.testing.assert_close(rebuilt, torch.tensor([[4.0, fill, fill, fill, 2.0]]))
    p, q = z.softmax(1), rebuilt.softmax(1)
    torch.testing.assert_close(q[0, [0, 4]], p[0, [0, 4]])                   # top-k probabilities exact
    torch.testing.assert_close(q[0, 1:4].sum(), p[0, 1:4].sum())             # tail mass exact
    # at another temperature the top-k ratio is kept
    p4, q4 = (z / 4).softmax(1), (rebuilt / 4).softmax(1)
    torch.testing.assert_close(q4[0, 0] / q4[0, 4], p4[0, 0] / p4[0, 4])


@pytest.mark.parametrize("k", [1, 5, 20])
def test_topk_error_is_within_the_documented_bounds(k):
    torch.manual_seed(k)
    num_classes = 100
    logits = torch.randn(500, num_classes) * 3  # peaked and flat rows alike
    rebuilt = TopKLogits.from_logits(logits, k)[torch.arange(500)].double()
    p, q = logits.double().softmax(1), rebuilt.softmax(1)
    _, top = logits.topk(k, dim=1)
    tail = 1 - p.gather(1, top).sum(1)                                       # r, the tail mass
    tv = 0.5 * (p - q).abs().sum(1)
    kl = (p * (p.log() - q.log())).sum(1)
    # float32 storage: the bounds hold up to the precision of the stored logits
    assert (tv <= tail + 1e-6).all()
    assert (kl <= tail * math.log(num_classes - k) + 1e-6).all()
    assert (kl >= -1e-6).all() and tv.max() > 0                              # a real approximation, not a copy


def test_topk_with_k_at_least_the_class_count_is_exact():
    z = torch.randn(4, 3)
    values, positions, _ = topk_rows(z, 7)
    assert values.shape == (4, 3)
    torch.testing.assert_close(TopKLogits.from_logits(z, 7)[torch.arange(4)], z)
