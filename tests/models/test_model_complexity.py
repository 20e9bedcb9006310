"""count_params and count_macs on hand-computed cases."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdlab.errors import ConfigError
from kdlab.models import count_macs, count_params, create_model


def test_count_params_counts_shared_params_once_and_skips_buffers():
    linear = nn.Linear(4, 3)
    shared = nn.Sequential(linear, nn.ReLU(), linear)
    assert count_params(shared) == 4 * 3 + 3
    assert count_params(nn.BatchNorm2d(8)) == 16  # running mean/var are buffers


def test_count_params_trainable_only():
    model = create_model("mlp", 10, (1, 28, 28), width=10, depth=1)
    model.head.requires_grad_(False)
    assert count_params(model) == 7960
    assert count_params(model, trainable_only=True) == 7960 - 110


def test_macs_of_the_784_10_10_mlp():
    model = create_model("mlp", 10, (1, 28, 28), width=10, depth=1)
    assert count_macs(model, (1, 28, 28)) == 784 * 10 + 10 * 10


def test_macs_of_a_single_conv():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    # 32x32 output positions x 8 output channels x (3 input channels x 3 x 3) products each
    assert count_macs(conv, (3, 32, 32)) == 32 * 32 * 8 * 3 * 9


def test_macs_of_strided_and_grouped_convs():
    assert count_macs(nn.Conv2d(4, 8, 3, groups=2), (4, 10, 10)) == 8 * 8 * 8 * 2 * 9
    assert count_macs(nn.Conv2d(6, 6, 3, groups=6, padding=1), (6, 5, 5)) == 5 * 5 * 6 * 1 * 9
    assert count_macs(nn.Conv2d(1, 4, 3, stride=2, padding=1), (1, 8, 8)) == 4 * 4 * 4 * 9


def test_macs_of_a_tiny_cnn():
    model = create_model("cnn", 10, (1, 8, 8), width=0.25, depth=1)
    assert count_macs(model, (1, 8, 8)) == 8 * 8 * 8 * 9 + 8 * 10


def test_macs_ignore_other_layers():
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Dropout(0.5))
    assert count_macs(model, (5,)) == 20


def test_count_macs_restores_modes_removes_hooks_and_keeps_bn_stats():
    model = create_model("resnet8", 10, (1, 8, 8), width=0.25).train()
    model.stages[1].eval()  # a mixed state must come back exactly
    modes = {name: m.training for name, m in model.named_modules()}
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    assert count_macs(model, (1, 8, 8)) > 0
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(not m._forward_hooks for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, stats[key]), key


@pytest.mark.parametrize("in_shape", [(), (1, 0, 8), "1x8x8", (1.5, 8, 8)])
def test_count_macs_rejects_a_bad_in_shape(in_shape):
    with pytest.raises(ConfigError, match=r"count_macs: in_shape="):
        count_macs(nn.Linear(2, 2), in_shape)
