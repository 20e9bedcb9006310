"""Capacity knobs: exact parameter counts for small models and growth with width and depth."""

from __future__ import annotations

import pytest

from kdlab.models import count_macs, count_params, create_model


def test_mlp_784_10_10_param_count():
    # hidden Linear 784 -> 10 with bias, head 10 -> 10 with bias
    expected = (784 * 10 + 10) + (10 * 10 + 10)
    assert expected == 7960
    assert count_params(create_model("mlp", 10, (1, 28, 28), width=10, depth=1)) == expected
    assert count_params(create_model("mlp", 10, (1, 28, 28), widths=[10])) == expected


def test_mlp_depth_zero_is_a_linear_classifier():
    model = create_model("mlp", 10, (1, 28, 28), depth=0)
    assert count_params(model) == 784 * 10 + 10
    assert model.num_features == 784


@pytest.mark.parametrize(
    "capacity, expected",
    [
        # conv 1 -> 8 (3x3, no bias) + BN(8) weight and bias + head 8 -> 10
        ({"width": 0.25, "depth": 1}, 1 * 8 * 9 + 2 * 8 + (8 * 10 + 10)),
        # without BN the conv has a bias instead
        ({"width": 0.25, "depth": 1, "batch_norm": False}, 1 * 8 * 9 + 8 + (8 * 10 + 10)),
        # second stage 8 -> 16 with BN(16), head 16 -> 10
        ({"width": 0.25, "depth": 2}, (72 + 16) + (8 * 16 * 9 + 32) + (16 * 10 + 10)),
        # two convs per stage: 1 -> 8 and 8 -> 8
        ({"width": 0.25, "depth": 1, "convs_per_stage": 2}, (72 + 16) + (8 * 8 * 9 + 16) + 90),
    ],
)
def test_tiny_cnn_param_count(capacity, expected):
    assert count_params(create_model("cnn", 10, (1, 8, 8), **capacity)) == expected


def conv_bn(cin: int, cout: int, k: int = 3) -> int:
    return cin * cout * k * k + 2 * cout


def test_resnet8_param_count():
    stem = conv_bn(3, 16)
    stage1 = 2 * conv_bn(16, 16)
    stage2 = conv_bn(16, 32) + conv_bn(32, 32) + conv_bn(16, 32, k=1)
    stage3 = conv_bn(32, 64) + conv_bn(64, 64) + conv_bn(32, 64, k=1)
    head = 64 * 10 + 10
    assert stem + stage1 + stage2 + stage3 + head == 78042
    assert count_params(create_model("resnet8", 10, (3, 32, 32))) == 78042
    assert count_params(create_model("resnet", 10, (3, 32, 32), depth=8)) == 78042


def test_resnet20_is_the_papers_0_27m_plus_two_projections():
    # 269,722 with the paper's option A; option B adds 16->32 and 32->64 1x1 conv + BN projections
    option_b_extra = conv_bn(16, 32, k=1) + conv_bn(32, 64, k=1)
    assert option_b_extra == 2752
    assert count_params(create_model("resnet20", 10, (3, 32, 32))) == 269722 + option_b_extra


def test_wrn_16_1_param_count():
    def bn(c: int) -> int:
        return 2 * c

    def block(cin: int, cout: int) -> int:
        shortcut = cin * cout if cin != cout else 0
        return bn(cin) + cin * cout * 9 + bn(cout) + cout * cout * 9 + shortcut

    stem = 3 * 16 * 9
    groups = 2 * block(16, 16) + block(16, 32) + block(32, 32) + block(32, 64) + block(64, 64)
    expected = stem + groups + bn(64) + 64 * 10 + 10
    assert expected == 175066
    assert count_params(create_model("wrn_16_1", 10, (3, 32, 32))) == expected


def test_wrn_40_2_matches_the_published_size():
    # WRN-40-2 on CIFAR-10 is the usual 2.2M-parameter KD teacher
    assert count_params(create_model("wrn_40_2", 10, (3, 32, 32))) == 2243546


# (family, in_shape, fixed options, knob, small, large, minimum ratio of parameter counts large / small)
GROWTH_TABLE = [
    ("mlp", (1, 28, 28), {"depth": 2}, "width", 32, 2048, 200),
    ("mlp", (1, 28, 28), {"width": 256}, "depth", 0, 8, 80),
    ("cnn", (1, 28, 28), {"depth": 2}, "width", 0.25, 4.0, 150),
    ("cnn", (1, 28, 28), {"width": 1.0}, "depth", 1, 5, 500),
    ("resnet", (3, 32, 32), {"depth": 20}, "width", 0.25, 2.0, 50),
    ("resnet", (3, 32, 32), {"width": 1.0}, "depth", 8, 110, 20),
    ("wrn", (3, 32, 32), {"depth": 16}, "widen_factor", 1, 8, 50),
    ("wrn", (3, 32, 32), {"widen_factor": 1}, "depth", 10, 40, 5),
]


@pytest.mark.parametrize("family, in_shape, fixed, knob, small, large, min_ratio", GROWTH_TABLE)
def test_capacity_knob_spans_a_wide_range(family, in_shape, fixed, knob, small, large, min_ratio):
    n_small = count_params(create_model(family, 10, in_shape, **fixed, **{knob: small}))
    n_large = count_params(create_model(family, 10, in_shape, **fixed, **{knob: large}))
    assert n_large / n_small > min_ratio


MONOTONE_TABLE = [
    ("mlp", {"depth": 2}, "width", [8, 32, 128, 512]),
    ("mlp", {"width": 64}, "depth", [0, 1, 2, 4]),
    ("cnn", {"depth": 2}, "width", [0.25, 0.5, 1.0, 2.0]),
    ("cnn", {"width": 0.5}, "depth", [1, 2, 3, 4]),
    ("cnn", {"width": 0.5}, "convs_per_stage", [1, 2, 3]),
    ("resnet", {"depth": 8}, "width", [0.25, 0.5, 1.0, 2.0]),
    ("resnet", {"width": 0.5}, "depth", [8, 14, 20, 32]),
    ("wrn", {"depth": 10}, "widen_factor", [1, 2, 3]),
    ("wrn", {"widen_factor": 1}, "depth", [10, 16, 22]),
]


@pytest.mark.parametrize("family, fixed, knob, values", MONOTONE_TABLE)
def test_params_and_macs_grow_strictly_with_each_knob(family, fixed, knob, values):
    in_shape = (1, 28, 28)
    models = [create_model(family, 10, in_shape, **fixed, **{knob: v}) for v in values]
    params = [count_params(m) for m in models]
    macs = [count_macs(m, in_shape) for m in models]
    assert params == sorted(set(params)), params
    assert macs == sorted(set(macs)), macs


@pytest.mark.parametrize("name", ["resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"])
def test_fixed_depth_resnets_match_the_depth_option(name):
    depth = int(name.removeprefix("resnet"))
    fixed = create_model(name, 10, (1, 8, 8), width=0.25)
    free = create_model("resnet", 10, (1, 8, 8), depth=depth, width=0.25)
    assert count_params(fixed) == count_params(free)
    convs = sum(1 for m in fixed.modules() if type(m).__name__ == "Conv2d" and m.kernel_size == (3, 3))
    assert convs + 1 == depth  # the 6n+2 weighted layers are the 3x3 convs plus the head


@pytest.mark.parametrize("name, depth, widen_factor",
                         [("wrn_16_1", 16, 1), ("wrn_16_2", 16, 2), ("wrn_40_1", 40, 1), ("wrn_40_2", 40, 2)])
def test_fixed_wrns_match_the_options(name, depth, widen_factor):
    fixed = create_model(name, 10, (1, 8, 8))
    free = create_model("wrn", 10, (1, 8, 8), depth=depth, widen_factor=widen_factor)
    assert count_params(fixed) == count_params(free)
