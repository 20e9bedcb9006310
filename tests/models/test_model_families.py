"""Family-specific behaviour: stage shapes, dropout placement, shortcuts and initialisation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kdlab.models import count_params, create_model


def tap_shapes(model, x):
    shapes = {}
    handles = [model.get_submodule(path).register_forward_hook(
        lambda _m, _i, out, tap=tap: shapes.__setitem__(tap, tuple(out.shape))) for tap, path in model.feature_taps.items()]
    with torch.no_grad():
        model.eval()(x)
    for handle in handles:
        handle.remove()
    return shapes


def test_cnn_pools_while_the_spatial_size_allows():
    model = create_model("cnn", 10, (1, 8, 8), depth=5)
    assert tap_shapes(model, torch.zeros(2, 1, 8, 8)) == {
        "stage1": (2, 32, 4, 4), "stage2": (2, 64, 2, 2), "stage3": (2, 128, 1, 1),
        "stage4": (2, 256, 1, 1), "stage5": (2, 512, 1, 1), "pre_logits": (2, 512),
    }


def test_cnn_width_scales_channels_and_convs_per_stage_repeats_convs():
    model = create_model("cnn", 10, (3, 32, 32), width=0.5, depth=3, convs_per_stage=2)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 16, 32, 32, 64, 64]
    assert tap_shapes(model, torch.zeros(1, 3, 32, 32))["stage3"] == (1, 64, 4, 4)


def test_cnn_without_batch_norm_has_conv_biases_and_no_bn():
    model = create_model("cnn", 10, (1, 28, 28), batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("name", ["resnet", "wrn"])
def test_residual_stages_halve_28x28_twice(name):
    model = create_model(name, 10, (1, 28, 28))
    shapes = tap_shapes(model, torch.zeros(2, 1, 28, 28))
    assert shapes == {"stage1": (2, 16, 28, 28), "stage2": (2, 32, 14, 14), "stage3": (2, 64, 7, 7),
                      "pre_logits": (2, 64)}


def test_resnet_uses_projection_shortcuts_only_where_the_shape_changes():
    model = create_model("resnet", 10, (3, 32, 32), depth=20)
    projections = [name for name, m in model.named_modules()
                   if name.endswith("shortcut") and isinstance(m, nn.Sequential)]
    assert projections == ["stages.1.0.shortcut", "stages.2.0.shortcut"]


def test_wrn_widen_factor_multiplies_group_channels_not_the_stem():
    model = create_model("wrn", 10, (3, 32, 32), depth=16, widen_factor=4)
    assert model.stem.out_channels == 16
    assert model.num_features == 256
    # the first group changes 16 -> 64 channels, so it also needs a projection
    assert model.stages[0][0].shortcut is not None
    assert model.stages[0][1].shortcut is None


def test_wrn_projection_reads_the_preactivated_input():
    model = create_model("wrn", 10, (1, 8, 8), depth=10).eval()
    block = model.stages[1][0]
    seen = {}
    block.bn1.register_forward_hook(lambda _m, _i, out: seen.__setitem__("bn1", out))
    block.shortcut.register_forward_hook(lambda _m, inputs, _o: seen.__setitem__("shortcut_in", inputs[0]))
    with torch.no_grad():
        model(torch.randn(2, 1, 8, 8))
    torch.testing.assert_close(seen["shortcut_in"], torch.relu(seen["bn1"]))


def test_mlp_hidden_taps_and_widths_override():
    model = create_model("mlp", 10, (1, 28, 28), width=999, depth=7, widths=[64, 32, 16])
    assert list(model.feature_taps) == ["hidden1", "hidden2", "hidden3", "pre_logits"]
    assert [layer[0].out_features for layer in model.hidden] == [64, 32, 16]
    assert model.num_features == 16


@pytest.mark.parametrize("activation, module", [("relu", nn.ReLU), ("gelu", nn.GELU), ("tanh", nn.Tanh)])
def test_mlp_activation(activation, module):
    model = create_model("mlp", 10, (4,), width=8, depth=2, activation=activation)
    assert all(isinstance(layer[1], module) for layer in model.hidden)


def test_mlp_has_no_batch_norm():
    model = create_model("mlp", 10, (1, 28, 28), width=64, depth=3, dropout=0.2)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert not list(model.buffers())


def test_mlp_dropout_acts_in_training_only_and_never_on_a_linear_classifiers_input():
    x = torch.randn(8, 1, 8, 8)
    torch.manual_seed(0)
    model = create_model("mlp", 10, (1, 8, 8), width=64, depth=2, dropout=0.5)
    assert not torch.equal(model.train()(x), model(x))
    assert torch.equal(model.eval()(x), model(x))
    linear = create_model("mlp", 10, (1, 8, 8), depth=0, dropout=0.5).train()
    assert torch.equal(linear(x), linear(x))


def test_wrn_dropout_acts_in_training():
    torch.manual_seed(0)
    model = create_model("wrn", 10, (1, 8, 8), depth=10, dropout=0.3).train()
    x = torch.randn(4, 1, 8, 8)
    assert not torch.equal(model(x), model(x))


def test_conv_init_is_kaiming_normal_fan_out_and_bn_is_identity():
    torch.manual_seed(0)
    model = create_model("resnet", 10, (3, 32, 32), depth=20, width=2)
    conv = model.stages[2][0].conv1  # 64 -> 128 channels, 3x3: fan_out 1152 differs from fan_in 576
    expected_std = math.sqrt(2.0 / (128 * 9))
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.05)
    assert conv.weight.mean().abs().item() < 0.1 * expected_std
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight))
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
    # the head keeps PyTorch's default Linear init: uniform within 1/sqrt(fan_in)
    assert model.head.weight.abs().max().item() <= 1 / math.sqrt(128)
    assert count_params(model.head) == 128 * 10 + 10
