"""tllm: KD on distillable samples, CE on undistillable ones, each sample weighted 1/N; empty set == kd exactly."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.errors import ConfigError
from kdlab.losses import build


def _batch(n: int = 6, k: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(n, k, generator=g, dtype=torch.float64)
    teacher = torch.randn(n, k, generator=g, dtype=torch.float64) * 3
    return student, teacher


def test_empty_set_equals_kd_exactly_value_and_gradient():
    student, teacher = _batch()
    targets = torch.tensor([0, 1, 2, 3, 0, 1])
    kd, tllm = build("kd", temperature=3.0, alpha=0.7), build("tllm", temperature=3.0, alpha=0.7)
    s1, s2 = student.clone().requires_grad_(), student.clone().requires_grad_()
    (a, kd_parts), (b, tllm_parts) = kd.compute(s1, teacher, targets), tllm.compute(s2, teacher, targets)
    a.backward()
    b.backward()
    assert a.item() == b.item()
    assert torch.equal(s1.grad, s2.grad)
    assert tllm_parts["kd"].item() == kd_parts["kd"].item() and tllm_parts["ce"].item() == kd_parts["ce"].item()
    assert tllm_parts["distillable_fraction"].item() == 1.0


def test_a_batch_of_only_undistillable_samples_is_plain_ce():
    student, teacher = _batch()
    targets = torch.tensor([2, 2, 3, 3, 2, 3])
    tllm = build("tllm", temperature=4.0, alpha=0.9, undistillable_classes=[3, 2])
    assert tllm.undistillable_classes == [2, 3]  # stored sorted
    loss, parts = tllm.compute(student, teacher, targets)
    assert loss.item() == build("ce")(student, None, targets).item()
    assert parts["kd"].item() == 0.0 and parts["distillable_fraction"].item() == 0.0


def test_a_batch_of_only_distillable_samples_is_kd():
    student, teacher = _batch()
    targets = torch.tensor([0, 1, 0, 1, 1, 0])
    tllm = build("tllm", temperature=2.0, alpha=0.5, undistillable_classes=[2, 3])
    kd = build("kd", temperature=2.0, alpha=0.5)
    assert tllm(student, teacher, targets).item() == kd(student, teacher, targets).item()


def test_mixed_batch_weights_each_sample_one_over_n():
    student, teacher = _batch()
    targets = torch.tensor([0, 3, 1, 3, 2, 0])  # samples 1 and 3 are undistillable
    t, alpha = 4.0, 0.9
    value = build("tllm", temperature=t, alpha=alpha, undistillable_classes=[3])(student, teacher, targets)
    # by hand, per sample: KD objective for distillable ones, CE for undistillable ones, then the mean over 6
    per_sample = []
    for i in range(6):
        log_p_s = torch.log_softmax(student[i], 0)
        ce = -log_p_s[targets[i]].item()
        if targets[i] == 3:
            per_sample.append(ce)
            continue
        p_t = torch.softmax(teacher[i] / t, 0)
        q_s = torch.softmax(student[i] / t, 0)
        kl = sum(p_t[c].item() * math.log(p_t[c].item() / q_s[c].item()) for c in range(4))
        per_sample.append((1 - alpha) * ce + alpha * t * t * kl)
    assert value.item() == pytest.approx(sum(per_sample) / 6, rel=1e-12)
    # and the group form: (4/6) KD(distillable) + (2/6) CE(undistillable)
    d, u = targets != 3, targets == 3
    kd = build("kd", temperature=t, alpha=alpha)(student[d], teacher[d], targets[d])
    ce = build("ce")(student[u], None, targets[u])
    assert value.item() == pytest.approx(4 / 6 * kd.item() + 2 / 6 * ce.item(), rel=1e-12)


def test_the_teacher_does_not_reach_undistillable_samples():
    student, teacher = _batch()
    targets = torch.tensor([0, 3, 1, 3, 2, 0])
    tllm = build("tllm", undistillable_classes=[3])
    other = teacher.clone()
    other[targets == 3] = torch.tensor([50.0, -50.0, 0.0, 7.0], dtype=torch.float64)  # any teacher on class 3
    assert tllm(student, teacher, targets).item() == tllm(student, other, targets).item()
    other[0, 0] += 1.0  # but a distillable sample's teacher matters
    assert tllm(student, teacher, targets).item() != tllm(student, other, targets).item()


@pytest.mark.parametrize("value", [[1, 1], [-1], [1.0], [True], "3", 3])
def test_bad_class_lists_are_config_errors_naming_the_key(value):
    with pytest.raises(ConfigError) as err:
        build("tllm", undistillable_classes=value)
    assert str(err.value) == (f"loss 'tllm': undistillable_classes={value!r} is not allowed; must be a list of "
                              "distinct class indices >= 0")


def test_a_class_beyond_the_logits_is_refused_at_the_first_batch():
    student, teacher = _batch(k=4)
    with pytest.raises(ValueError, match="undistillable_classes=\\[4\\]"):
        build("tllm", undistillable_classes=[4])(student, teacher, torch.zeros(6, dtype=torch.long))
