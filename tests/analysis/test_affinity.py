"""Class affinity, rank correlations and consistency against values computed by hand."""

from __future__ import annotations

import json
import math
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import torch

from kdlab.analysis import (
    AffinityAccumulator,
    affinity_consistency,
    class_affinity,
    consistency_matrix,
    kendall_tau_b,
    plot_affinity_heatmap,
    plot_consistency_matrix,
    spearman_correlation,
)
from kdlab.analysis.affinity import average_ranks

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def structured_logits(seed: int, n_per_class: int = 30, num_classes: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """A toy "model": each class has fixed affinities W[i] to the others plus per-sample noise."""
    g = torch.Generator().manual_seed(seed)
    w = 2.0 * torch.randn(num_classes, num_classes, generator=g)
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    z = w[y] + 4.0 * torch.nn.functional.one_hot(y, num_classes) + 0.3 * torch.randn(len(y), num_classes, generator=g)
    return z.double(), y


# ---------------------------------------------------------------------------------------------
# affinity matrix
# ---------------------------------------------------------------------------------------------


def test_affinity_of_a_hand_built_three_class_example() -> None:
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.8, 0.1, 0.1], [0.2, 0.5, 0.3]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1])
    a = class_affinity(probs.log(), y)
    # class 0: mean p = [0.7, 0.2, 0.1] -> off-diagonal [0.2, 0.1] / 0.3; class 1: [0.2, 0.3] / 0.5
    assert a[0].tolist() == pytest.approx([0.0, 2 / 3, 1 / 3], rel=1e-12)
    assert a[1].tolist() == pytest.approx([0.4, 0.0, 0.6], rel=1e-12)
    assert torch.isnan(a[2]).all()  # class 2 has no samples
    assert a.dtype == torch.float64 and a.shape == (3, 3)


def test_affinity_at_temperature_two() -> None:
    probs = torch.tensor([[0.2, 0.5, 0.3], [0.25, 0.25, 0.5]], dtype=torch.float64)
    y = torch.tensor([1, 2])
    a = class_affinity(probs.log(), y, temperature=2.0)
    # one sample per class: softmax(log p / 2) is proportional to sqrt(p); the normaliser cancels
    r0, r2 = math.sqrt(0.2), math.sqrt(0.3)
    assert a[1].tolist() == pytest.approx([r0 / (r0 + r2), 0.0, r2 / (r0 + r2)], rel=1e-12)
    assert a[2].tolist() == pytest.approx([0.5, 0.5, 0.0], rel=1e-12)


def test_affinity_streams_and_survives_1e4_logits() -> None:
    z, y = structured_logits(1)
    whole = class_affinity(z, y)
    acc = AffinityAccumulator(6)
    for chunk_z, chunk_y in zip(z.split(17), y.split(17)):
        acc.update(chunk_z, chunk_y)
    assert torch.allclose(acc.compute(), whole, rtol=1e-12, atol=0)
    assert torch.allclose(whole.sum(dim=1), torch.ones(6, dtype=torch.float64))
    assert (whole.diagonal() == 0).all()

    # non-GT probabilities underflow to 0 in float64 here; the log-space sums keep the row exact:
    # off-diagonal logits -1e4 and -2e4 relative to the GT -> the row is softmax([-1e4, -2e4]) = [1, 0]
    big = torch.tensor([[1e4, 0.0, -1e4]], dtype=torch.float32)
    a = class_affinity(big, torch.tensor([0]), num_classes=3)
    assert torch.isfinite(a[0]).all()
    assert a[0].tolist() == [0.0, 1.0, 0.0]


def test_affinity_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        AffinityAccumulator(0)
    with pytest.raises(ValueError, match="temperature must be a positive finite number"):
        AffinityAccumulator(3, temperature=0.0)
    with pytest.raises(ValueError, match="num_classes=4 columns, got 3"):
        class_affinity(torch.zeros(2, 3), torch.tensor([0, 1]), num_classes=4)
    with pytest.raises(ValueError, match="targets must be None"):
        class_affinity([(torch.zeros(2, 3), torch.tensor([0, 1]))], torch.tensor([0, 1]))


# ---------------------------------------------------------------------------------------------
# rank correlations
# ---------------------------------------------------------------------------------------------


def test_average_ranks_share_ties() -> None:
    assert average_ranks([10, 20, 20, 30]).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert average_ranks([3, 1, 1, 2, 5]).tolist() == [4.0, 1.5, 1.5, 3.0, 5.0]


def test_spearman_and_kendall_by_hand_with_ties() -> None:
    # x ties once: ranks [1, 2.5, 2.5, 4] vs [1, 3, 2, 4] -> 4.5 / sqrt(4.5 * 5); 5 concordant of 6 pairs, 1 x-tie
    assert spearman_correlation([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9), rel=1e-12)
    assert kendall_tau_b([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(5 / math.sqrt(5 * 6), rel=1e-12)
    # y ties once: ranks [4, 1.5, 1.5, 3, 5] -> 3.5 / sqrt(10 * 9.5); 6 concordant, 3 discordant, 1 y-tie
    assert spearman_correlation([1, 2, 3, 4, 5], [3, 1, 1, 2, 5]) == pytest.approx(3.5 / math.sqrt(95), rel=1e-12)
    assert kendall_tau_b([1, 2, 3, 4, 5], [3, 1, 1, 2, 5]) == pytest.approx(3 / math.sqrt(10 * 9), rel=1e-12)
    assert spearman_correlation([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau_b(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    assert math.isnan(spearman_correlation([1, 1, 1], [1, 2, 3]))
    assert math.isnan(kendall_tau_b([1, 2, 3], [5, 5, 5]))


def brute_force_tau_b(x: list[float], y: list[float]) -> float:
    """Reference tau-b by visiting every pair."""
    concordant = discordant = tied_x = tied_y = 0
    for i, j in combinations(range(len(x)), 2):
        dx, dy = x[i] - x[j], y[i] - y[j]
        tied_x += dx == 0
        tied_y += dy == 0
        if dx * dy > 0:
            concordant += 1
        elif dx * dy < 0:
            discordant += 1
    n0 = len(x) * (len(x) - 1) // 2
    return (concordant - discordant) / math.sqrt((n0 - tied_x) * (n0 - tied_y))


@pytest.mark.parametrize("n", [2, 3, 7, 64, 129, 300])
def test_kendall_matches_pair_counting_with_many_ties(n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.integers(0, 6, n).astype(float).tolist()
    y = (np.array(x) * 0.5 + rng.integers(0, 4, n)).tolist()
    if len(set(x)) == 1 or len(set(y)) == 1:
        x[0], y[0] = -1.0, -1.0
    assert kendall_tau_b(x, y) == pytest.approx(brute_force_tau_b(x, y), rel=1e-12, abs=1e-15)


def brute_force_spearman(x: list[float], y: list[float]) -> float:
    """Reference rho: rank = #smaller + (#equal + 1) / 2, then Pearson."""
    def ranks(v: list[float]) -> list[float]:
        return [sum(w < u for w in v) + (sum(w == u for w in v) + 1) / 2 for u in v]

    r, s = ranks(x), ranks(y)
    mr, ms = sum(r) / len(r), sum(s) / len(s)
    num = sum((a - mr) * (b - ms) for a, b in zip(r, s))
    return num / math.sqrt(sum((a - mr) ** 2 for a in r) * sum((b - ms) ** 2 for b in s))


def test_per_row_correlations_match_pair_counting_on_a_tied_matrix() -> None:
    # values rounded to one decimal so rows have ties; 9 classes -> 8 entries per row, 72 flattened
    rng = np.random.default_rng(7)
    a = torch.tensor(np.round(rng.uniform(0, 1, (9, 9)), 1))
    b = torch.tensor(np.round(a.numpy() + rng.uniform(-0.3, 0.3, (9, 9)), 1))
    out = affinity_consistency(a, b, top_k=2)
    off = [[j for j in range(9) if j != i] for i in range(9)]
    for i in range(9):
        xa = [float(a[i, j]) for j in off[i]]
        xb = [float(b[i, j]) for j in off[i]]
        assert out["kendall_per_row"][i] == pytest.approx(brute_force_tau_b(xa, xb), rel=1e-12)
        assert out["spearman_per_row"][i] == pytest.approx(brute_force_spearman(xa, xb), rel=1e-12)
    flat_a = [float(a[i, j]) for i in range(9) for j in off[i]]
    flat_b = [float(b[i, j]) for i in range(9) for j in off[i]]
    assert out["kendall"] == pytest.approx(brute_force_tau_b(flat_a, flat_b), rel=1e-12)
    assert out["spearman"] == pytest.approx(brute_force_spearman(flat_a, flat_b), rel=1e-12)


def test_rank_correlations_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="same length, got 3 and 2"):
        spearman_correlation([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="x must hold finite values"):
        kendall_tau_b([1, float("nan"), 3], [1, 2, 3])


# ---------------------------------------------------------------------------------------------
# consistency
# ---------------------------------------------------------------------------------------------


def test_affinity_consistency_by_hand() -> None:
    a = torch.tensor([[0.0, 0.7, 0.3], [0.2, 0.0, 0.8], [0.5, 0.5, 0.0]])
    b = torch.tensor([[0.0, 0.6, 0.4], [0.9, 0.0, 0.1], [0.1, 0.9, 0.0]])
    out = affinity_consistency(a, b, top_k=1)
    # off-diagonal A = [.7,.3,.2,.8,.5,.5], B = [.6,.4,.9,.1,.1,.9]:
    # ranks A [5,2,1,6,3.5,3.5], B [4,3,5.5,1.5,1.5,5.5] -> -8.5 / sqrt(17 * 16.5)
    assert out["spearman"] == pytest.approx(-8.5 / math.sqrt(17 * 16.5), rel=1e-6)
    # 3 concordant, 9 discordant, 1 pair tied in A, 2 in B, of 15 pairs
    assert out["kendall"] == pytest.approx(-6 / math.sqrt(14 * 13), rel=1e-6)
    assert out["spearman_per_row"] == [pytest.approx(1.0), pytest.approx(-1.0), None]  # row 2 of A is constant
    assert out["kendall_per_row"] == [pytest.approx(1.0), pytest.approx(-1.0), None]
    # top-1: row 0 {1} vs {1}; row 1 {2} vs {0}; row 2 tie -> lower index {0} vs {1}
    assert out["topk_overlap"] == pytest.approx(1 / 3)
    assert out["rows_used"] == 3
    json.dumps(out, allow_nan=False)


def test_rows_of_empty_classes_are_left_out() -> None:
    a = torch.tensor([[0.0, 0.7, 0.3], [0.2, 0.0, 0.8], [math.nan, math.nan, math.nan]])
    b = torch.tensor([[0.0, 0.6, 0.4], [0.9, 0.0, 0.1], [0.1, 0.9, 0.0]])
    out = affinity_consistency(a, b, top_k=1)
    assert out["rows_used"] == 2
    assert out["spearman_per_row"][2] is None and out["kendall_per_row"][2] is None
    assert out["topk_overlap"] == pytest.approx(0.5)
    # A [.7,.3,.2,.8] ranks [3,2,1,4]; B [.6,.4,.9,.1] ranks [3,2,4,1]; deviations from 2.5:
    # [.5,-.5,-1.5,1.5] . [.5,-.5,1.5,-1.5] = -4, each sum of squares 5 -> -4 / 5
    assert out["spearman"] == pytest.approx(-4 / 5, rel=1e-6)


def test_self_consistency_is_exactly_one_and_a_class_permutation_lowers_it() -> None:
    z, y = structured_logits(2)
    a = class_affinity(z, y)
    same = affinity_consistency(a, a, top_k=3)
    assert same["spearman"] == 1.0 and same["kendall"] == 1.0 and same["topk_overlap"] == 1.0
    assert same["spearman_per_row"] == [1.0] * 6 and same["kendall_per_row"] == [1.0] * 6

    permutation = torch.tensor([3, 0, 5, 1, 2, 4])  # fixed, no fixed points
    shuffled = class_affinity(z[:, permutation], y)  # original labels
    other = affinity_consistency(a, shuffled, top_k=3)
    assert other["spearman"] < 0.9
    assert other["kendall"] < 0.9
    assert other["topk_overlap"] < 1.0


def test_consistency_matrix_is_symmetric_with_unit_diagonal() -> None:
    affinities = [class_affinity(*structured_logits(seed)) for seed in (3, 4, 5)]
    for stat in ("spearman", "kendall", "topk_overlap"):
        m = consistency_matrix(affinities, stat=stat)
        assert m.shape == (3, 3)
        assert torch.equal(m, m.T)
        assert m.diagonal().tolist() == [1.0, 1.0, 1.0]
        assert m[0, 2].item() == pytest.approx(affinity_consistency(affinities[0], affinities[2])[stat])


def test_consistency_rejects_bad_input() -> None:
    a = torch.eye(3)
    with pytest.raises(ValueError, match=r"top_k must be an integer in \[1, 2\] for 3 classes, got 3"):
        affinity_consistency(a, a, top_k=3)
    with pytest.raises(ValueError, match="A and B must have the same shape"):
        affinity_consistency(a, torch.eye(4))
    with pytest.raises(ValueError, match="B must be a square"):
        affinity_consistency(a, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="stat must be one of spearman, kendall, topk_overlap, got 'pearson'"):
        consistency_matrix([a, a], stat="pearson")
    with pytest.raises(ValueError, match="affinities must be a non-empty sequence"):
        consistency_matrix([])


# ---------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------


def test_plots_write_png_files_atomically(tmp_path: Path) -> None:
    a = class_affinity(*structured_logits(6))
    a[2] = math.nan  # an empty class must still plot
    heatmap = plot_affinity_heatmap(a, [f"class {i}" for i in range(6)], tmp_path / "sub" / "affinity.png", title="A")
    assert heatmap == tmp_path / "sub" / "affinity.png"
    data = heatmap.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000

    m = consistency_matrix([a, a.clone()], stat="kendall")
    matrix = plot_consistency_matrix(m, ["small", "large"], tmp_path / "consistency.png")
    assert matrix.read_bytes().startswith(PNG_MAGIC)
    leftovers = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert leftovers == ["affinity.png", "consistency.png"]  # no temp files left behind


def test_plots_reject_bad_input(tmp_path: Path) -> None:
    a = torch.eye(3)
    with pytest.raises(ValueError, match="class_names must be a sequence of 3 names, got 2"):
        plot_affinity_heatmap(a, ["a", "b"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="path must end with .png"):
        plot_affinity_heatmap(a, ["a", "b", "c"], tmp_path / "x.pdf")
    with pytest.raises(ValueError, match="M must be a square"):
        plot_consistency_matrix(torch.zeros(2, 3), ["a", "b"], tmp_path / "m.png")
