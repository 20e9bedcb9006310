"""create_model rejects bad names, options and values with a message naming the option, value and what is allowed."""

from __future__ import annotations

import pytest

from kdlab.errors import ConfigError
from kdlab.models import MODELS, create_model


def test_unknown_model_name_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown model 'resnt'\. Did you mean 'resnet'\? Allowed: .*wrn_40_2"):
        create_model("resnt", 10, (3, 32, 32))


def test_unknown_option_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"model 'mlp' has no option 'widht'\. Did you mean 'width'\?.*depth"):
        create_model("mlp", 10, (1, 28, 28), widht=64)


def test_fixed_depth_name_has_no_depth_option():
    with pytest.raises(ConfigError, match=r"model 'resnet20' has no option 'depth'\..*Allowed: width"):
        create_model("resnet20", 10, (3, 32, 32), depth=32)


def test_resnet_depth_must_be_6n_plus_2():
    with pytest.raises(ConfigError) as info:
        create_model("resnet", 10, (3, 32, 32), depth=21)
    assert str(info.value) == ("model 'resnet': depth=21 is not allowed. "
                               "Allowed: 6n+2 between 8 and 110, e.g. 8, 14, 20, 32, 44, 56, 110")


@pytest.mark.parametrize("depth", [2, 116, 20.0, True, "20"])
def test_resnet_depth_out_of_range_or_not_an_int(depth):
    with pytest.raises(ConfigError, match=rf"depth={depth!r} is not allowed\. Allowed: 6n\+2"):
        create_model("resnet", 10, (3, 32, 32), depth=depth)


def test_resnet_depth_accepts_any_6n_plus_2_in_range():
    assert create_model("resnet", 10, (1, 8, 8), depth=26, width=0.25).spec["depth"] == 26


def test_numpy_style_integers_are_accepted_and_stored_as_plain_ints():
    np = pytest.importorskip("numpy")
    model = create_model("resnet", np.int64(10), (np.int64(1), 8, 8), depth=np.int64(8), width=np.float32(0.5))
    assert model.spec == {"name": "resnet", "num_classes": 10, "in_shape": [1, 8, 8], "depth": 8, "width": 0.5}
    assert type(model.spec["depth"]) is int


@pytest.mark.parametrize(
    "name, options, key, value, allowed",
    [
        ("mlp", {"width": 0}, "width", 0, "an integer >= 1"),
        ("mlp", {"width": 1.5}, "width", 1.5, "an integer >= 1"),
        ("mlp", {"depth": -1}, "depth", -1, "an integer >= 0"),
        ("mlp", {"dropout": 1.0}, "dropout", 1.0, "a number in [0, 1)"),
        ("mlp", {"activation": "rellu"}, "activation", "rellu", "relu, gelu, tanh. Did you mean 'relu'?"),
        ("mlp", {"widths": [10, 0]}, "widths[1]", 0, "an integer >= 1"),
        ("mlp", {"widths": "64"}, "widths", "64", "a list of positive integers"),
        ("cnn", {"width": 0}, "width", 0, "a finite number > 0"),
        ("cnn", {"width": -0.5}, "width", -0.5, "a finite number > 0"),
        ("cnn", {"depth": 0}, "depth", 0, "an integer >= 1 and <= 6"),
        ("cnn", {"depth": 7}, "depth", 7, "an integer >= 1 and <= 6"),
        ("cnn", {"convs_per_stage": 0}, "convs_per_stage", 0, "an integer >= 1"),
        ("cnn", {"batch_norm": "yes"}, "batch_norm", "yes", "true or false"),
        ("resnet", {"width": 0.0}, "width", 0.0, "a finite number > 0"),
        ("resnet20", {"width": float("inf")}, "width", float("inf"), "a finite number > 0"),
        ("wrn", {"depth": 15}, "depth", 15, "6n+4 >= 10"),
        ("wrn", {"widen_factor": 0}, "widen_factor", 0, "an integer >= 1"),
        ("wrn", {"widen_factor": 1.5}, "widen_factor", 1.5, "an integer >= 1"),
        ("wrn_40_2", {"dropout": -0.1}, "dropout", -0.1, "a number in [0, 1)"),
    ],
)
def test_impossible_capacity_values(name, options, key, value, allowed):
    with pytest.raises(ConfigError) as info:
        create_model(name, 10, (1, 28, 28), **options)
    message = str(info.value)
    assert message.startswith(f"model '{name}': {key}={value!r} is not allowed. Allowed: ")
    assert allowed in message


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet", "wrn_16_1"])
@pytest.mark.parametrize("num_classes", [1, 0, True, 2.5])
def test_num_classes_must_be_at_least_2(name, num_classes):
    with pytest.raises(ConfigError, match=rf"num_classes={num_classes!r} is not allowed\. Allowed: an integer >= 2"):
        create_model(name, num_classes, (1, 28, 28))


@pytest.mark.parametrize("name", ["cnn", "resnet", "resnet56", "wrn", "wrn_40_1"])
@pytest.mark.parametrize("in_shape", [(28, 28), (784,), (1, 1, 28, 28), (1, 0, 28), "1,28,28", 28])
def test_conv_nets_need_a_channels_height_width_in_shape(name, in_shape):
    with pytest.raises(ConfigError, match=r"in_shape=.* is not allowed\. Allowed: \(channels, height, width\)"):
        create_model(name, 10, in_shape)


@pytest.mark.parametrize("in_shape", [(), (0,), (-3, 4), "784", None])
def test_mlp_needs_a_nonempty_positive_in_shape(in_shape):
    with pytest.raises(ConfigError, match=r"model 'mlp': in_shape=.* is not allowed"):
        create_model("mlp", 10, in_shape)


def test_config_errors_are_value_errors_and_every_name_has_keyword_capacity():
    assert issubclass(ConfigError, ValueError)
    for name in MODELS.names():
        # check_kwargs is how configs are validated before training; it must see the real options
        MODELS.check_kwargs(name, {}, skip=("num_classes", "in_shape"))
        with pytest.raises(ConfigError, match="has no option 'bogus'"):
            MODELS.check_kwargs(name, {"bogus": 1}, skip=("num_classes", "in_shape"))


def test_non_string_name():
    with pytest.raises(ConfigError, match=r"model name=\['mlp'\] is not allowed"):
        create_model(["mlp"], 10, (4,))
