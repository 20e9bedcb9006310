"""Magnitude pruning (exact sparsity, masks survive training) and structured pruning (hand-counted sizes)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdlab.compress import (
    build_pruned,
    layer_sparsity,
    magnitude_prune,
    magnitude_prune_to_budget,
    nonzero_params,
    pruned_param_count,
    remove_pruning,
    sparsity,
    structured_prune,
    structured_prune_to_budget,
)
from kdlab.models import count_params, create_model, model_from_spec


def _set(layer: nn.Linear, weight: list[list[float]]) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))


def _seq() -> nn.Sequential:
    """Linear(4, 3) with |w| = 1..12, Linear(3, 3) with |w| = 0.5, 1.5, ..., 8.5, head Linear(3, 2)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    _set(model[0], [[1, -2, 3, -4], [5, -6, 7, -8], [9, -10, 11, -12]])
    _set(model[2], [[0.5, -1.5, 2.5], [-3.5, 4.5, -5.5], [6.5, -7.5, 8.5]])
    return model


def test_global_magnitude_prune_zeroes_the_smallest_weights():
    model = _seq()
    head_before = model[4].weight.detach().clone()
    report = magnitude_prune(model, 0.25)
    # 21 prunable weights (head excluded): round(0.25 * 21) = round(5.25) = 5 smallest |w|: 0.5, 1, 1.5, 2, 2.5
    assert report["zeros"] == 5 and report["weights"] == 21
    assert report["overall"] == pytest.approx(5 / 21)
    assert report["layers"]["0"]["zeros"] == 2 and report["layers"]["2"]["zeros"] == 3
    assert torch.equal(model[0].weight[0] == 0, torch.tensor([True, True, False, False]))
    assert torch.equal(model[2].weight[0] == 0, torch.tensor([True, True, True]))
    assert torch.equal(model[4].weight, head_before)  # the head is not pruned by default


def test_layer_scope_prunes_each_layer_by_its_own_count():
    model = _seq()
    report = magnitude_prune(model, 0.25, scope="layer")
    # layer 0: round(0.25 * 12) = 3 (|w| 1, 2, 3); layer 2: round(0.25 * 9) = round(2.25) = 2 (|w| 0.5, 1.5)
    assert report["layers"]["0"]["zeros"] == 3 and report["layers"]["2"]["zeros"] == 2
    assert torch.equal(model[0].weight[0] == 0, torch.tensor([True, True, True, False]))
    assert torch.equal(model[2].weight[0] == 0, torch.tensor([True, True, False]))


@pytest.mark.parametrize("scope, expected", [("global", [896]), ("layer", [717, 179])])
def test_kdlab_mlp_reaches_the_requested_sparsity(scope, expected):
    torch.manual_seed(1)
    model = create_model("mlp", 10, (1, 8, 8), width=16, depth=2)
    report = magnitude_prune(model, 0.7, scope=scope)
    # prunable: 64*16 + 16*16 = 1280 weights; global round(896.0) = 896; per layer round(716.8) = 717, round(179.2)
    zeros = [s["zeros"] for s in report["layers"].values()]
    assert (sum(zeros) if scope == "global" else zeros) == (expected[0] if scope == "global" else expected)
    assert report["weights"] == 1280
    assert sparsity(model, include_head=False) == pytest.approx(report["overall"])
    assert layer_sparsity(model)["head"] == 0.0


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_pruned_model_trains_and_stays_sparse(optimizer):
    torch.manual_seed(2)
    model = create_model("cnn", 3, (1, 8, 8), width=0.25, depth=2)
    magnitude_prune(model, 0.5, scope="layer")
    masks = {name: (m.weight == 0).clone() for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    before = {name: m.weight.detach().clone() for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    params = list(model.parameters())
    opt = (torch.optim.SGD(params, lr=0.5, momentum=0.9, weight_decay=0.1) if optimizer == "sgd"
           else torch.optim.AdamW(params, lr=0.1, weight_decay=0.1))
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    for _ in range(2):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            assert bool((m.weight[masks[name]] == 0).all())  # pruned weights are still exactly 0
            assert not torch.equal(m.weight[~masks[name]], before[name][~masks[name]])  # the others trained
            assert m.parametrizations.weight.original.grad[masks[name]].abs().max() == 0


def test_remove_pruning_bakes_masks_and_restores_plain_keys():
    model = _seq()
    plain_keys = set(model.state_dict())
    magnitude_prune(model, 0.5)
    assert "0.parametrizations.weight.0.mask" in model.state_dict()
    remove_pruning(model)
    assert set(model.state_dict()) == plain_keys
    assert type(model[0]) is nn.Linear
    # round_half_up(0.5 * 21) = 11 zeros are kept after baking
    assert int((model[0].weight == 0).sum()) + int((model[2].weight == 0).sum()) == 11


def test_remove_pruning_on_a_deep_copy_leaves_the_original_pruned():
    import copy

    model = _seq()
    magnitude_prune(model, 0.5)
    twin = copy.deepcopy(model)
    remove_pruning(twin)
    assert type(twin[0]) is nn.Linear
    assert torch.equal(model[0].weight, twin[0].weight)  # the original still reads its masked weight
    assert "0.parametrizations.weight.0.mask" in model.state_dict()
    remove_pruning(model)
    assert type(model[0]) is nn.Linear


def test_checkpoint_of_pruned_model_restores_masks():
    source, target = _seq(), _seq()
    magnitude_prune(source, 0.5)
    magnitude_prune(target, 0.1)
    target.load_state_dict(source.state_dict())
    assert torch.equal(target[0].weight, source[0].weight)
    assert sparsity(target, include_head=False) == sparsity(source, include_head=False)


def test_magnitude_prune_to_budget_counts_nonzero_parameters():
    model = _seq()
    # 21 prunable weights; untouched non-zero values: biases 3 + 3 + 2 and head weights 6 (seeded, non-zero) = 14
    assert nonzero_params(model) == count_params(model) == 35
    report = magnitude_prune_to_budget(model, 20)
    assert report["nonzero_params"] == 20 == nonzero_params(model)
    assert report["zeros"] == 21 - 6
    assert count_params(model) == 35  # stored parameters do not shrink, only the non-zero ones
    with pytest.raises(ValueError, match="target_params=10"):
        magnitude_prune_to_budget(_seq(), 10)


@pytest.mark.parametrize("kwargs, match", [({"sparsity": 1.0}, "sparsity=1.0"), ({"sparsity": -0.1}, "sparsity"),
                                           ({"sparsity": 0.5, "scope": "net"}, "scope='net'"),
                                           ({"sparsity": 0.5, "include": (int,)}, "include")])
def test_magnitude_prune_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        magnitude_prune(_seq(), **kwargs)


# ------------------------------------------------------------------------------------------------
# structured pruning
# ------------------------------------------------------------------------------------------------


def test_structured_prune_tiny_mlp_param_count():
    model = create_model("mlp", 3, (4,), widths=[6, 4])
    assert count_params(model) == (4 * 6 + 6) + (6 * 4 + 4) + (4 * 3 + 3) == 73
    pruned = structured_prune(model, 0.5)
    # widths 6 -> 3 and 4 -> 2: (4*3 + 3) + (3*2 + 2) + (2*3 + 3) = 15 + 8 + 9
    assert count_params(pruned) == 32 == pruned_param_count(model, 0.5)
    assert pruned.spec["widths"] == [3, 2] and pruned.num_features == 2
    assert count_params(model) == 73  # the input is untouched
    rebuilt = create_model(**pruned.spec)  # a pruned mlp is a plain mlp
    rebuilt.load_state_dict(pruned.state_dict())
    x = torch.randn(5, 4)
    assert torch.equal(rebuilt(x), pruned(x))


def test_structured_prune_keeps_the_neurons_with_largest_l1_norm():
    model = create_model("mlp", 2, (2,), widths=[4])
    # row L1 norms 1, 5, 3, 4 -> keep_ratio 0.5 keeps units 1 and 3, in their original order
    _set(model.hidden[0][0], [[0.5, -0.5], [2.0, -3.0], [1.0, 2.0], [-4.0, 0.0]])
    pruned = structured_prune(model, 0.5)
    keep = [1, 3]
    assert torch.equal(pruned.hidden[0][0].weight, model.hidden[0][0].weight[keep])
    assert torch.equal(pruned.hidden[0][0].bias, model.hidden[0][0].bias[keep])
    assert torch.equal(pruned.head.weight, model.head.weight[:, keep])
    assert pruned.compression["kept"] == {"hidden.0.0": keep}


def test_structured_prune_tiny_cnn_param_count_and_rebuild():
    torch.manual_seed(3)
    model = create_model("cnn", 10, (1, 8, 8), width=0.25, depth=2)  # channels 8, 16
    pruned = structured_prune(model, 0.5)
    # conv 1 -> 4 (3x3, no bias) + BN 4; conv 4 -> 8 + BN 8; head 8 -> 10
    expected = (1 * 4 * 9 + 2 * 4) + (4 * 8 * 9 + 2 * 8) + (8 * 10 + 10)
    assert count_params(pruned) == expected == 438 == pruned_param_count(model, 0.5)
    assert pruned.spec["pruned_widths"] == [4, 8] and pruned.spec["pruned_from"] == model.spec
    rebuilt = model_from_spec(pruned.spec)
    rebuilt.load_state_dict(pruned.state_dict())
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(rebuilt.eval()(x), pruned.eval()(x))


def test_structured_prune_cnn_without_batch_norm_keeps_conv_biases():
    model = create_model("cnn", 10, (1, 8, 8), width=0.25, depth=1, convs_per_stage=2, batch_norm=False)
    pruned = structured_prune(model, 0.25)  # 8 channels -> 2 in both convs
    assert count_params(pruned) == (1 * 2 * 9 + 2) + (2 * 2 * 9 + 2) + (2 * 10 + 10) == 88


@pytest.mark.parametrize("name, capacity, shape", [("mlp", {"width": 8, "depth": 2, "dropout": 0.3}, (1, 4, 4)),
                                                    ("cnn", {"width": 0.25, "depth": 2}, (1, 8, 8))])
def test_keep_ratio_one_computes_the_same_function(name, capacity, shape):
    torch.manual_seed(4)
    model = create_model(name, 5, shape, **capacity).eval()
    pruned = structured_prune(model, 1.0).eval()
    x = torch.randn(3, *shape)
    assert torch.equal(pruned(x), model(x))
    assert count_params(pruned) == count_params(model)


def test_structured_pruned_model_trains():
    torch.manual_seed(5)
    pruned = structured_prune(create_model("cnn", 3, (1, 8, 8), width=0.25, depth=2), 0.5)
    opt = torch.optim.SGD(pruned.parameters(), lr=0.1)
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    losses = []
    for _ in range(3):
        loss = nn.functional.cross_entropy(pruned(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_structured_prune_of_a_magnitude_pruned_model_bakes_its_masks():
    model = create_model("mlp", 3, (4,), widths=[6])
    magnitude_prune(model, 0.5)
    pruned = structured_prune(model, 1.0)
    assert type(pruned.hidden[0][0]) is nn.Linear
    assert torch.equal(pruned.hidden[0][0].weight, model.hidden[0][0].weight)


def test_structured_prune_rejects_other_families():
    model = create_model("resnet8", 10, (3, 8, 8))
    with pytest.raises(NotImplementedError, match="'resnet8'"):
        structured_prune(model, 0.5)
    with pytest.raises(ValueError, match="keep_ratio=0"):
        structured_prune(create_model("mlp", 3, (4,), widths=[6]), 0)


def test_structured_prune_to_budget_lands_at_the_largest_fitting_width():
    torch.manual_seed(6)
    model = create_model("mlp", 10, (1, 8, 8), width=16, depth=2)
    # k units in both layers: (64k + k) + (k^2 + k) + (10k + 10) = k^2 + 76k + 10; k = 11 -> 967, k = 12 -> 1066
    pruned, report = structured_prune_to_budget(model, 1000)
    assert report["widths_after"] == [11, 11] and pruned.spec["widths"] == [11, 11]
    assert count_params(pruned) == report["params_after"] == 967
    assert report["params_before"] == 16**2 + 76 * 16 + 10
    with pytest.raises(ValueError, match="target_params=50"):
        structured_prune_to_budget(model, 50)  # one unit per layer: 1 + 76 + 10 = 87


def test_structured_prune_to_budget_on_cnn_fits():
    model = create_model("cnn", 10, (1, 8, 8), width=0.5, depth=2)
    pruned, report = structured_prune_to_budget(model, 2000)
    assert count_params(pruned) == report["params_after"] <= 2000
    assert build_pruned(pruned.spec).state_dict().keys() == pruned.state_dict().keys()
