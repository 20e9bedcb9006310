"""ce: plain cross-entropy, with and without label smoothing, against hand computations."""

import math

import pytest
import torch

from kdlab.losses import build


def log_softmax(row):
    top = max(row)
    log_norm = top + math.log(sum(math.exp(v - top) for v in row))
    return [v - log_norm for v in row]


def test_ce_by_hand_and_teacher_is_ignored():
    z = [[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]]
    y = [0, 1]
    hand = -(log_softmax(z[0])[0] + log_softmax(z[1])[1]) / 2
    loss_fn = build("ce")
    assert loss_fn.requires_teacher is False
    s = torch.tensor(z, dtype=torch.float64)
    without = loss_fn(s, None, torch.tensor(y))
    with_teacher = loss_fn(s, torch.randn(2, 3, dtype=torch.float64), torch.tensor(y))
    assert without.item() == pytest.approx(hand, rel=1e-12)
    assert with_teacher.item() == without.item()
    parts = loss_fn.compute(s, None, torch.tensor(y)).parts
    assert {k: v.item() for k, v in parts.items()} == {"ce": pytest.approx(hand, rel=1e-12)}


def test_label_smoothing_by_hand():
    z, y, eps = [1.0, 2.0, 0.0, -1.0], 2, 0.2
    logp = log_softmax(z)
    # target (1 - eps) * onehot + eps / K
    hand = -sum(((1 - eps) * (c == y) + eps / len(z)) * lp for c, lp in enumerate(logp))
    loss = build("ce", label_smoothing=eps)(torch.tensor([z], dtype=torch.float64), None, torch.tensor([y]))
    assert loss.item() == pytest.approx(hand, rel=1e-12)
