"""Low-rank factorization: Eckart-Young error, exact full-rank convs, rank rules, model-level reports and budgets."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kdlab.compress import (
    build_lowrank,
    choose_rank,
    factorize_conv,
    factorize_linear,
    lowrank_model,
    lowrank_to_budget,
    structured_prune,
)
from kdlab.models import count_params, create_model, model_from_spec


def _orthonormal(n: int, generator: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return q


def _linear_with_singular_values(values: list[float], out_features: int, in_features: int) -> nn.Linear:
    """A float64 Linear whose weight is U diag(values) V^T, so its singular values are known by construction."""
    g = torch.Generator().manual_seed(0)
    u, v = _orthonormal(out_features, g), _orthonormal(in_features, g)
    k = len(values)
    layer = nn.Linear(in_features, out_features, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(u[:, :k] @ torch.diag(torch.tensor(values, dtype=torch.float64)) @ v[:, :k].T)
    return layer


@pytest.mark.parametrize("rank, discarded", [(1, [3, 2, 1, 0.5]), (2, [2, 1, 0.5]), (4, [0.5]), (5, [])])
def test_factorized_linear_error_is_the_norm_of_the_discarded_singular_values(rank, discarded):
    layer = _linear_with_singular_values([5, 3, 2, 1, 0.5], out_features=5, in_features=7)
    pair = factorize_linear(layer, rank)
    w_k = pair[1].weight @ pair[0].weight
    error = torch.linalg.norm(layer.weight - w_k).item()
    # Eckart-Young: ||W - W_k||_F = sqrt(sum of the discarded s_i^2); rank 2 -> sqrt(4 + 1 + 0.25)
    assert error == pytest.approx(math.sqrt(sum(s * s for s in discarded)), abs=1e-12)
    x = torch.randn(3, 7, dtype=torch.float64)
    assert torch.allclose(pair(x), x @ w_k.T + layer.bias)
    assert pair[0].bias is None and torch.equal(pair[1].bias, layer.bias)
    assert count_params(pair) == rank * (5 + 7) + 5


def test_factors_split_the_singular_values_evenly():
    layer = _linear_with_singular_values([4, 1], out_features=3, in_features=4)
    pair = factorize_linear(layer, 2)
    # both factors carry sqrt(s_i): singular values 2 and 1
    for factor in (pair[0].weight, pair[1].weight):
        assert torch.allclose(torch.linalg.svdvals(factor), torch.tensor([2.0, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("conv_args", [dict(stride=2, padding=1), dict(padding=2, dilation=2),
                                       dict(padding=1, padding_mode="reflect", bias=False)])
def test_factorized_conv_at_full_rank_equals_the_conv(conv_args):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, **conv_args)
    pair = factorize_conv(conv, rank=4)  # full rank: min(4, 3*3*3)
    x = torch.randn(2, 3, 9, 9)
    assert torch.allclose(pair(x), conv(x), atol=1e-5)
    bias = 4 if conv.bias is not None else 0
    # first conv 3 -> 4 (3x3, no bias) + 1x1 conv 4 -> 4 (+ bias)
    assert count_params(pair) == 3 * 4 * 9 + 4 * 4 + bias


def test_factorized_conv_at_low_rank_uses_the_truncated_weight():
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 6, 3, padding=1).double()
    pair = factorize_conv(conv, rank=2)
    matrix = conv.weight.reshape(6, -1)
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    truncated = (u[:, :2] * s[:2]) @ vh[:2]
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    expected = nn.functional.conv2d(x, truncated.reshape(6, 4, 3, 3), conv.bias, padding=1)
    assert torch.allclose(pair(x), expected)


def test_factorize_rejects_grouped_convs_and_bad_ranks():
    with pytest.raises(ValueError, match="groups=2"):
        factorize_conv(nn.Conv2d(4, 4, 3, groups=2), 2)
    with pytest.raises(ValueError, match=r"rank=6 .* \[1, 5\]"):
        factorize_linear(nn.Linear(7, 5), 6)
    with pytest.raises(ValueError, match="rank=0"):
        factorize_linear(nn.Linear(7, 5), 0)


def test_choose_rank_by_energy_and_budget():
    s = [4.0, 3.0, 2.0, 1.0]  # s^2 = 16, 9, 4, 1; total 30
    assert choose_rank(s, energy=0.5) == 1  # 16/30 = 0.533
    assert choose_rank(s, energy=0.6) == 2  # 25/30 = 0.833
    assert choose_rank(s, energy=25 / 30) == 2  # exactly on the boundary
    assert choose_rank(s, energy=0.9) == 3  # 29/30
    assert choose_rank(s, energy=1.0) == 4
    assert choose_rank([2.0, 0.0], energy=1.0) == 1  # the zero direction adds nothing
    # budget: (35 - 3) // 10 = 3 ranks fit; (12 - 3) // 10 = 0
    assert choose_rank(s, max_params=35, params_per_rank=10, fixed_params=3) == 3
    assert choose_rank(s, max_params=12, params_per_rank=10, fixed_params=3) == 0
    assert choose_rank(s, max_params=10**6, params_per_rank=10) == 4
    assert choose_rank(s, energy=0.5, max_params=35, params_per_rank=10, fixed_params=3) == 1
    with pytest.raises(ValueError, match="neither"):
        choose_rank(s)
    with pytest.raises(ValueError, match="energy=0"):
        choose_rank(s, energy=0)
    with pytest.raises(ValueError, match="params_per_rank=None"):
        choose_rank(s, max_params=10)


def _mlp() -> nn.Module:
    torch.manual_seed(2)
    return create_model("mlp", 10, (1, 8, 8), width=32, depth=2)


def test_lowrank_model_by_param_budget_matches_the_hand_count():
    model = _mlp()
    new, report = lowrank_model(model, param_budget=0.25)
    # hidden 64 -> 32: dense 2080, budget floor(520): (520 - 32) // 96 = rank 5 -> 5 * 96 + 32 = 512
    # hidden 32 -> 32: dense 1056, budget floor(264): (264 - 32) // 64 = rank 3 -> 3 * 64 + 32 = 224
    rows = {row["name"]: row for row in report["layers"]}
    assert (rows["hidden.0.0"]["rank"], rows["hidden.0.0"]["params_after"]) == (5, 512)
    assert (rows["hidden.1.0"]["rank"], rows["hidden.1.0"]["params_after"]) == (3, 224)
    assert rows["head"]["replaced"] is False and rows["head"]["params_after"] == 330
    assert report["params_before"] == count_params(model) == 2080 + 1056 + 330
    assert report["params_after"] == count_params(new) == 512 + 224 + 330
    assert 0 < rows["hidden.1.0"]["energy_kept"] < 1
    assert count_params(model) == 3466  # the input is untouched
    assert new.spec["ranks"] == {"hidden.0.0": 5, "hidden.1.0": 3} and new.spec["lowrank_from"] == model.spec
    rebuilt = model_from_spec(new.spec)
    rebuilt.load_state_dict(new.state_dict())
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(rebuilt(x), new(x))


def test_lowrank_model_only_replaces_when_it_saves_parameters():
    model = _mlp()
    new, report = lowrank_model(model, energy=1.0)
    # full rank 32 of a 32 x 64 matrix needs 32 * 96 > 2048 weights: nothing is worth replacing
    assert not any(row["replaced"] for row in report["layers"])
    assert new.spec == model.spec and count_params(new) == count_params(model)
    forced, report = lowrank_model(model, energy=1.0, min_params_saving=False, factorize_head=True)
    assert all(row["replaced"] for row in report["layers"])
    x = torch.randn(2, 1, 8, 8)
    assert torch.allclose(forced(x), model(x), atol=1e-5)  # full rank everywhere: the same function


def test_lowrank_model_keeps_what_the_energy_asks_for():
    _, report = lowrank_model(_mlp(), energy=0.5)
    for row in report["layers"]:
        if row["replaced"]:
            assert row["energy_kept"] >= 0.5


def test_lowrank_to_budget_on_mlp_and_cnn():
    model = _mlp()
    new, report = lowrank_to_budget(model, 2000)
    assert count_params(new) == report["params_after"] <= 2000
    assert report["target_params"] == 2000 and 0 < report["energy"] < 1
    # the energy is the largest that fits: any higher shared energy adds a rank somewhere and exceeds the budget
    _, above = lowrank_model(model, energy=report["energy"] + 1e-9)
    assert above["params_after"] > 2000
    torch.manual_seed(3)
    cnn = create_model("cnn", 10, (3, 8, 8), width=0.5, depth=2)
    small, cnn_report = lowrank_to_budget(cnn, count_params(cnn) // 2)
    assert count_params(small) == cnn_report["params_after"] <= count_params(cnn) // 2
    assert small(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    with pytest.raises(ValueError, match="target_params=100"):
        lowrank_to_budget(model, 100)


def test_lowrank_to_budget_above_the_model_size_changes_nothing():
    model = _mlp()
    new, report = lowrank_to_budget(model, 10**6)
    assert report["params_after"] == count_params(model) and report["energy"] == 1.0


def test_lowrank_model_trains_and_rebuilds_from_a_pruned_source():
    torch.manual_seed(4)
    pruned = structured_prune(create_model("cnn", 3, (1, 8, 8), width=0.5, depth=2), 0.5)
    new, _ = lowrank_model(pruned, param_budget=0.5)
    assert new.spec["lowrank_from"]["pruned_from"]["name"] == "cnn"
    rebuilt = build_lowrank(new.spec)
    assert rebuilt.state_dict().keys() == new.state_dict().keys()
    opt = torch.optim.SGD(new.parameters(), lr=0.05)
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    loss = nn.functional.cross_entropy(new(x), y)
    loss.backward()
    opt.step()
    assert all(p.grad is not None for p in new.parameters())
