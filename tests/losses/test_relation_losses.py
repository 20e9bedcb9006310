"""Relation losses (lsp, rkd_distance, rkd_angle, rkd, sp, pairwise) against values computed by hand with python
math on tiny hand-built batches; teacher and student embeddings deliberately have different widths."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from kdlab.errors import ConfigError
from kdlab.losses import build_feature_loss

RELATION_LOSSES = ("lsp", "rkd_distance", "rkd_angle", "rkd", "sp", "pairwise")


def tensor(values):
    return torch.tensor(values, dtype=torch.float64)


def dist(a, b):
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def huber(x):
    return 0.5 * x * x if abs(x) <= 1 else abs(x) - 0.5


def mean(values):
    values = list(values)
    return sum(values) / len(values)


def log_softmax(values):
    top = max(values)
    log_norm = top + math.log(sum(math.exp(v - top) for v in values))
    return [v - log_norm for v in values]


def psi_d(z):
    """{(i, j): ||z_i - z_j|| / mu} over ordered pairs i != j."""
    pairs = {(i, j): dist(z[i], z[j]) for i, j in itertools.permutations(range(len(z)), 2)}
    mu = mean(pairs.values())
    return {key: value / mu for key, value in pairs.items()}


def psi_a(z):
    """{(i, j, k): cos of the angle at z_j} over ordered distinct triples."""
    out = {}
    for i, j, k in itertools.permutations(range(len(z)), 3):
        e_ij = [a - b for a, b in zip(z[i], z[j])]
        e_kj = [a - b for a, b in zip(z[k], z[j])]
        out[(i, j, k)] = dot(e_ij, e_kj) / (math.sqrt(dot(e_ij, e_ij)) * math.sqrt(dot(e_kj, e_kj)))
    return out


def rkd_d_by_hand(s, t):
    ps, pt = psi_d(s), psi_d(t)
    return mean(huber(ps[key] - pt[key]) for key in ps)


def rkd_a_by_hand(s, t):
    ps, pt = psi_a(s), psi_a(t)
    return mean(huber(ps[key] - pt[key]) for key in ps)


# a right triangle 3-4-5 (student, 2-d) and an isosceles right triangle (teacher, 3-d)
S3 = [[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]]
T3 = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]


# -- rkd ----------------------------------------------------------------------------------------------------------

def test_rkd_distance_by_hand():
    # student distances 3, 4, 5 -> mu = 4 -> psi 0.75, 1, 1.25; teacher 1, sqrt2, 1 -> mu = (2 + sqrt2) / 3
    mu_t = (2 + math.sqrt(2)) / 3
    diffs = [0.75 - 1 / mu_t, 1.0 - math.sqrt(2) / mu_t, 1.25 - 1 / mu_t]   # pairs 01, 02, 12 (each twice)
    hand = 25 * mean(0.5 * d * d for d in diffs)
    assert hand == pytest.approx(0.888799, abs=1e-6)
    assert rkd_d_by_hand(S3, T3) * 25 == pytest.approx(hand, rel=1e-12)
    loss = build_feature_loss("rkd_distance")
    assert loss(tensor(S3), tensor(T3)).item() == pytest.approx(hand, rel=1e-10)


def test_rkd_distance_uses_the_linear_part_of_huber_for_large_differences():
    student = [[0.0], [0.1], [0.2], [100.0]]                                 # three close points, one far away
    teacher = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]               # a unit square
    diffs = [psi_d(student)[k] - psi_d(teacher)[k] for k in psi_d(student)]
    assert max(abs(d) for d in diffs) > 1                                    # the |x| - 1/2 branch is exercised
    value = build_feature_loss("rkd_distance", weight=1.0)(tensor(student), tensor(teacher)).item()
    assert value == pytest.approx(rkd_d_by_hand(student, teacher), rel=1e-10)


def test_rkd_angle_by_hand():
    # student cosines at vertices 0, 1, 2: 0, 9 / (3 * 5) = 0.6, 16 / (4 * 5) = 0.8; teacher: 1/sqrt2, 0, 1/sqrt2
    diffs = [0 - 1 / math.sqrt(2), 0.6 - 0.0, 0.8 - 1 / math.sqrt(2)]        # each vertex: two ordered triples
    hand = 50 * mean(0.5 * d * d for d in diffs)
    assert hand == pytest.approx(7.238576, abs=1e-6)
    assert rkd_a_by_hand(S3, T3) * 50 == pytest.approx(hand, rel=1e-12)
    assert build_feature_loss("rkd_angle")(tensor(S3), tensor(T3)).item() == pytest.approx(hand, rel=1e-10)


def test_rkd_combines_both_with_their_weights_on_a_larger_batch():
    gen = torch.Generator().manual_seed(3)
    student, teacher = torch.randn(5, 3, generator=gen, dtype=torch.float64), torch.randn(5, 4, generator=gen,
                                                                                        dtype=torch.float64)
    s, t = student.tolist(), teacher.tolist()
    loss = build_feature_loss("rkd", distance_weight=2.0, angle_weight=3.0)
    value, parts = loss.compute(student, teacher)
    assert value.item() == pytest.approx(2 * rkd_d_by_hand(s, t) + 3 * rkd_a_by_hand(s, t), rel=1e-9)
    assert {k: v.item() for k, v in parts.items()} == {"distance": pytest.approx(2 * rkd_d_by_hand(s, t), rel=1e-9),
                               "angle": pytest.approx(3 * rkd_a_by_hand(s, t), rel=1e-9)}


def test_rkd_small_batches():
    two_s, two_t = tensor(S3[:2]).requires_grad_(True), tensor(T3[:2])
    assert build_feature_loss("rkd_angle")(two_s, two_t).item() == 0.0          # no triangle in 2 samples
    # two points: both normalised distances are 1 -> the distance loss is 0 as well
    assert build_feature_loss("rkd")(two_s, two_t).item() == pytest.approx(0.0, abs=1e-12)
    one = tensor([[1.0, 2.0]]).requires_grad_(True)
    for name in RELATION_LOSSES:
        loss = build_feature_loss(name)
        value, parts = loss.compute(one, tensor([[3.0]]))
        value.backward()
        assert value.item() == pytest.approx(0.0, abs=1e-12) and torch.isfinite(one.grad).all()
        assert parts and {v.item() for v in parts.values()} == {0.0}


# -- sp -----------------------------------------------------------------------------------------------------------

def test_sp_by_hand():
    student = [[1.0, 0.0], [1.0, 1.0]]              # G = [[1, 1], [1, 2]] -> rows / sqrt2, / sqrt5
    teacher = [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]    # G = [[4, 0], [0, 1]] -> identity after row normalisation
    g_s = [[1 / math.sqrt(2), 1 / math.sqrt(2)], [1 / math.sqrt(5), 2 / math.sqrt(5)]]
    g_t = [[1.0, 0.0], [0.0, 1.0]]
    frob = sum((g_t[i][j] - g_s[i][j]) ** 2 for i in range(2) for j in range(2))
    assert frob == pytest.approx(0.796932, abs=1e-6)
    assert build_feature_loss("sp")(tensor(student), tensor(teacher)).item() == pytest.approx(
        3000 / 4 * frob, rel=1e-12)
    assert build_feature_loss("sp", gamma=1.0)(tensor(student), tensor(teacher)).item() == pytest.approx(frob / 4)


# -- pairwise -----------------------------------------------------------------------------------------------------

P_S = [[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]
P_T = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]]


def phi_by_hand(z, phi):
    def one(a, b):
        if phi == "distance":
            return dist(a, b)
        if phi == "cosine":
            return dot(a, b) / math.sqrt(dot(a, a) * dot(b, b))
        return dot(a, b)

    return [[one(z[i], z[j]) for j in range(len(z)) if j != i] for i in range(len(z))]


def pairwise_by_hand(s, t, phi, criterion):
    r_s, r_t = phi_by_hand(s, phi), phi_by_hand(t, phi)
    if criterion == "l1":
        return mean(abs(a - b) for rs, rt in zip(r_s, r_t) for a, b in zip(rs, rt))
    if criterion == "l2":
        return mean((a - b) ** 2 for rs, rt in zip(r_s, r_t) for a, b in zip(rs, rt))
    sign = -1.0 if phi == "distance" else 1.0
    rows = []
    for rs, rt in zip(r_s, r_t):
        log_p_t, log_p_s = log_softmax([sign * v for v in rt]), log_softmax([sign * v for v in rs])
        rows.append(-sum(math.exp(a) * b for a, b in zip(log_p_t, log_p_s)))
    return mean(rows)


def test_pairwise_default_cosine_l2_spelled_out():
    # cosines, student: 01 1/sqrt2, 02 0, 12 1/sqrt2; teacher: 01 0, 02 1/sqrt3, 12 1/sqrt3
    hand = (0.5 + 1 / 3 + (1 / math.sqrt(2) - 1 / math.sqrt(3)) ** 2) / 3
    assert hand == pytest.approx(0.283390, abs=1e-6)
    assert build_feature_loss("pairwise")(tensor(P_S), tensor(P_T)).item() == pytest.approx(hand, rel=1e-12)


@pytest.mark.parametrize("phi", ["distance", "cosine", "dot"])
@pytest.mark.parametrize("criterion", ["l1", "l2", "ce"])
def test_pairwise_every_phi_and_criterion(phi, criterion):
    loss = build_feature_loss("pairwise", phi=phi, criterion=criterion, weight=2.0)
    value = loss(tensor(P_S), tensor(P_T)).item()
    assert value == pytest.approx(2 * pairwise_by_hand(P_S, P_T, phi, criterion), rel=1e-10)


def test_pairwise_ce_on_identical_relations_is_the_teacher_entropy():
    value = build_feature_loss("pairwise", criterion="ce")(tensor(P_T), tensor(P_T)).item()
    assert value > 0 and value == pytest.approx(pairwise_by_hand(P_T, P_T, "cosine", "ce"), rel=1e-12)


def test_pairwise_bad_choice_is_refused_with_a_hint():
    with pytest.raises(ConfigError, match=r"loss 'pairwise': phi='cosin'.*distance, cosine, dot.*'cosine'"):
        build_feature_loss("pairwise", phi="cosin")
    with pytest.raises(ConfigError, match=r"criterion='kl'.*l1, l2, ce"):
        build_feature_loss("pairwise", criterion="kl")


# -- lsp ----------------------------------------------------------------------------------------------------------

L_T = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [3.0, 3.0, 0.0]]
L_S = [[0.0, 0.0], [2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]


def test_lsp_uses_the_teachers_neighbours_by_hand():
    # teacher squared distances: 01 1, 02 4, 03 18, 12 5, 13 13, 23 10 -> 2-NN sets
    # N(0) = {1, 2}, N(1) = {0, 2}, N(2) = {0, 1}, N(3) = {2, 1}
    # (the student's own 2-NN of sample 0 would be {2, 3}: the student must be read on the teacher's sets)
    neighbours = {0: [1, 2], 1: [0, 2], 2: [0, 1], 3: [2, 1]}
    tau = 2.0
    total = 0.0
    for i, sets in neighbours.items():
        log_t = log_softmax([-dist(L_T[i], L_T[j]) ** 2 / tau for j in sets])
        log_s = log_softmax([-dist(L_S[i], L_S[j]) ** 2 / tau for j in sets])
        total += sum(math.exp(a) * (a - b) for a, b in zip(log_t, log_s))
    hand = total / 4
    # row 0 spelled out: teacher logits (-0.5, -2) give p = (sigmoid(1.5), 1 - sigmoid(1.5)); the student's (-2, -0.5)
    # give the mirror image q = (1 - p0, p0), so KL = p0 ln(p0/(1-p0)) + (1-p0) ln((1-p0)/p0) = (2 p0 - 1) * 1.5
    p0 = 1 / (1 + math.exp(-1.5))
    log_t, log_s = log_softmax([-0.5, -2.0]), log_softmax([-2.0, -0.5])
    assert sum(math.exp(a) * (a - b) for a, b in zip(log_t, log_s)) == pytest.approx((2 * p0 - 1) * 1.5)
    loss = build_feature_loss("lsp", k=2, temperature=tau, weight=3.0)
    assert loss(tensor(L_S), tensor(L_T)).item() == pytest.approx(3 * hand, rel=1e-10)
    # k larger than N - 1 shrinks to N - 1
    three = build_feature_loss("lsp", k=4, temperature=tau)(tensor(L_S[:3]), tensor(L_T[:3])).item()
    assert three == pytest.approx(build_feature_loss("lsp", k=2, temperature=tau)(
        tensor(L_S[:3]), tensor(L_T[:3])).item(), rel=1e-12)


# -- shared properties --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", RELATION_LOSSES)
def test_same_relations_in_a_wider_scaled_space_give_zero(name):
    # the student is the teacher padded with zero coordinates and scaled by 3: every distance ratio, angle and
    # cosine is unchanged (lsp and distance/dot pairwise are scale-sensitive: they get the unscaled copy)
    teacher = tensor(L_T)
    padded = torch.cat([teacher, torch.zeros(4, 2, dtype=torch.float64)], dim=1)
    scale = 1.0 if name == "lsp" else 3.0
    assert build_feature_loss(name)(scale * padded, teacher).item() == pytest.approx(0.0, abs=1e-9)


def test_feature_maps_are_flattened_per_sample():
    maps = torch.randn(4, 2, 3, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    vectors = torch.randn(4, 5, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    for name in RELATION_LOSSES:
        loss = build_feature_loss(name)
        assert loss(maps, vectors).item() == pytest.approx(loss(maps.flatten(1), vectors).item(), rel=1e-12)
