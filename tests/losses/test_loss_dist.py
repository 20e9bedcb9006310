"""dist: DIST (Huang et al., NeurIPS 2022), relation losses from Pearson correlations, by hand with python math."""

import math

import pytest
import torch

from kdlab.errors import ConfigError
from kdlab.losses import build, pearson_rows

EPS = 1e-8  # kdlab's documented eps: denominator sqrt(sum a'^2 * sum b'^2 + eps^2)


def softmax(row, t=1.0):
    top = max(v / t for v in row)
    exps = [math.exp(v / t - top) for v in row]
    return [e / sum(exps) for e in exps]


def pearson(a, b):
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    da, db = [v - ma for v in a], [v - mb for v in b]
    cov = sum(x * y for x, y in zip(da, db))
    return cov / math.sqrt(sum(x * x for x in da) * sum(y * y for y in db) + EPS * EPS)


def ce(row, y):
    return -math.log(softmax(row)[y])


def test_pearson_on_known_vectors():
    a = torch.tensor([[1.0, 2.0, 3.0]] * 3, dtype=torch.float64)
    b = torch.tensor([[2.0, 4.0, 6.0], [3.0, 2.0, 1.0], [1.0, 3.0, 2.0]], dtype=torch.float64)
    # perfectly linear, perfectly reversed, and (1,2,3) vs (1,3,2): cov = 1, variances 2 and 2 -> 0.5
    assert pearson_rows(a, b).tolist() == pytest.approx([1.0, -1.0, 0.5], rel=1e-12)
    # shift and positive scale do not change a correlation
    assert pearson_rows(a, 5.0 * b - 3.0).tolist() == pytest.approx([1.0, -1.0, 0.5], rel=1e-12)


def test_two_by_three_by_hand():
    z_s = [[1.0, 0.0, -1.0], [0.5, 1.5, 0.0]]
    z_t = [[2.0, 1.0, 0.5], [-1.0, 2.0, 1.0]]
    y = [0, 1]
    t, beta, gamma, ce_weight = 2.0, 1.5, 0.5, 0.8
    y_s = [softmax(r, t) for r in z_s]
    y_t = [softmax(r, t) for r in z_t]
    inter = t * t * sum(1 - pearson(y_s[i], y_t[i]) for i in range(2)) / 2
    columns = [([y_s[0][j], y_s[1][j]], [y_t[0][j], y_t[1][j]]) for j in range(3)]
    intra = t * t * sum(1 - pearson(a, b) for a, b in columns) / 3
    ce_term = (ce(z_s[0], 0) + ce(z_s[1], 1)) / 2
    hand = ce_weight * ce_term + beta * inter + gamma * intra

    loss_fn = build("dist", beta=beta, gamma=gamma, temperature=t, ce_weight=ce_weight)
    s, tt = torch.tensor(z_s, dtype=torch.float64), torch.tensor(z_t, dtype=torch.float64)
    loss, parts = loss_fn.compute(s, tt, torch.tensor(y))
    assert loss.item() == pytest.approx(hand, rel=1e-12)
    assert {k: v.item() for k, v in parts.items()} == {
        "ce": pytest.approx(ce_term, rel=1e-12),
        "inter": pytest.approx(inter, rel=1e-12),
        "intra": pytest.approx(intra, rel=1e-12),
    }
    # with two samples each column correlation is +-1, so intra only counts columns ordered the other way
    # (up to the eps, which moves a correlation by ~eps^2 / (2 S^2), S the squared spread of a column)
    assert intra == pytest.approx(t * t * 2 * sum(pearson(a, b) < 0 for a, b in columns) / 3, rel=1e-9, abs=1e-9)
    assert 0 < inter < 2 * t * t


def test_equal_logits_give_zero_relation_terms():
    g = torch.Generator().manual_seed(5)
    z = torch.randn(6, 5, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, 5, (6,), generator=g)
    loss_fn = build("dist", temperature=4.0)
    loss, parts = loss_fn.compute(z, z.clone(), y)
    # 0 up to the eps: pearson(a, a) = S / sqrt(S^2 + eps^2) = 1 - eps^2 / (2 S^2) for the squared spread S
    assert parts["inter"].item() == pytest.approx(0.0, abs=1e-9)
    assert parts["intra"].item() == pytest.approx(0.0, abs=1e-9)
    assert loss.item() == pytest.approx(build("ce")(z, None, y).item(), rel=1e-9)


def test_a_sharper_student_with_the_same_ranking_scores_better_than_kd_would_suggest():
    # DIST asks for relations, not values: scaling the student's logits keeps the ranking, so the inter-class
    # term stays small while the KL of kd grows. (A property the paper motivates, checked loosely.)
    t = torch.tensor([[3.0, 1.0, 0.0, -1.0]], dtype=torch.float64)
    s = 3.0 * t
    y = torch.tensor([0])
    dist = build("dist", temperature=1.0)
    dist_parts = dist.compute(s, t, y).parts
    kd = build("kd", temperature=1.0, alpha=1.0)
    kd_parts = kd.compute(s, t, y).parts
    assert dist_parts["inter"].item() < 0.1 < kd_parts["kd"].item()


@pytest.mark.parametrize(
    "student",
    [
        [[1e4, -1e4, 0.0], [-1e4, 0.0, 1e4]],  # saturated softmax
        [[0.0, 0.0, 0.0], [5.0, 5.0, 5.0]],  # uniform predictions: rows without spread (the eps case)
    ],
)
def test_huge_or_flat_logits_stay_finite(student):
    s = torch.tensor(student, requires_grad=True)
    t = torch.tensor([[-1e4, 1e4, 0.0], [0.0, 1e4, -1e4]])
    loss_fn = build("dist")
    loss = loss_fn(s, t, torch.tensor([0, 2]))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(s.grad).all()


def test_batch_of_one_is_finite_and_intra_is_the_constant_t_squared():
    s = torch.tensor([[0.2, -0.3, 1.0]], requires_grad=True)
    t = torch.tensor([[1.0, 0.0, 2.0]])
    loss_fn = build("dist", temperature=4.0)
    loss, parts = loss_fn.compute(s, t, torch.tensor([2]))
    loss.backward()
    assert torch.isfinite(s.grad).all()
    assert parts["intra"].item() == pytest.approx(16.0, rel=1e-6)  # no spread across a batch of one


def test_bad_hyperparameters():
    with pytest.raises(ConfigError) as err:
        build("dist", gamma=-0.5)
    assert str(err.value) == "loss 'dist': gamma=-0.5 is not allowed; must be >= 0"
    with pytest.raises(ConfigError, match="temperature=-1 is not allowed; must be > 0"):
        build("dist", temperature=-1)
    with pytest.raises(ConfigError, match="ce_weight=inf"):
        build("dist", ce_weight=float("inf"))
