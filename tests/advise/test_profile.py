"""Teacher profiling: the weighted affinity matrix on hand numbers, agreement intervals, the nasty-teacher flag."""

from __future__ import annotations

import math

import torch

from kdlab.advise.profile import affinity_agreement, affinity_from_probabilities, nasty_rule
from kdlab.analysis.affinity import AffinityAccumulator
from kdlab.analysis.verdict import decide


def test_affinity_from_probabilities_by_hand():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.5, 0.1, 0.4], [0.3, 0.6, 0.1]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])
    a = affinity_from_probabilities(probs, labels, 3)
    # class 0: mean probs (0.6, 0.15, 0.25) -> off-diagonal (0.15, 0.25) / 0.4
    assert torch.allclose(a[0], torch.tensor([0.0, 0.375, 0.625], dtype=torch.float64))
    # class 1: (0.3, 0.1) / 0.4
    assert torch.allclose(a[1], torch.tensor([0.75, 0.0, 0.25], dtype=torch.float64))
    assert torch.isnan(a[2]).all()  # no sample of class 2
    # weights: the second sample counted twice -> class-0 means (1.7/3, 0.4/3, 0.9/3) -> (0.4, 0.9) / 1.3
    w = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    aw = affinity_from_probabilities(probs, labels, 3, w)
    assert torch.allclose(aw[0, 1:], torch.tensor([0.4 / 1.3, 0.9 / 1.3], dtype=torch.float64))


def test_affinity_from_probabilities_matches_the_accumulator():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(60, 4, generator=g)
    labels = torch.arange(60) % 4
    acc = AffinityAccumulator(4)
    acc.update(logits, labels)
    ours = affinity_from_probabilities(torch.softmax(logits.double(), -1), labels, 4)
    # float32 logits through softmax: agreement to float32 precision
    assert torch.allclose(ours, acc.compute().double(), rtol=1e-5, atol=1e-6)


def _probs_with_affinity(order: list[list[int]], n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples whose wrong-class mass follows ``order[c]`` (most to least) with a little noise."""
    g = torch.Generator().manual_seed(seed)
    c = len(order)
    rows, labels = [], []
    for cls in range(c):
        base = torch.zeros(c, dtype=torch.float64)
        for rank, j in enumerate(order[cls]):
            base[j] = 0.1 * (len(order[cls]) - rank)
        base[cls] = 5.0
        for _ in range(n_per_class):
            rows.append(torch.softmax(base + 0.05 * torch.randn(c, generator=g, dtype=torch.float64), -1))
            labels.append(cls)
    return torch.stack(rows), torch.tensor(labels)


def test_agreement_and_nasty_flag_true_false_and_null():
    c = 5
    normal = [[j for j in range(c) if j != i] for i in range(c)]
    reversed_ = [list(reversed(o)) for o in normal]
    ref, labels = _probs_with_affinity(normal, 30, 0)
    same, _ = _probs_with_affinity(normal, 30, 1)
    nasty, _ = _probs_with_affinity(reversed_, 30, 2)
    rule = nasty_rule(0.5)
    agree = affinity_agreement(same, ref, labels, c, num_bootstrap=100)
    assert agree["spearman"] > 0.9 and agree["low"] > 0.5
    assert decide(rule, agree["low"], agree["high"]) is False
    against = affinity_agreement(nasty, ref, labels, c, num_bootstrap=100)
    assert against["spearman"] < -0.9 and against["high"] < 0.5
    assert decide(rule, against["low"], against["high"]) is True
    # an interval that straddles the floor leaves the flag undecided
    assert decide(rule, 0.3, 0.7) is None
    assert decide(rule, math.nan, math.nan) is None
