"""build(): unknown names, unknown options and impossible values are ConfigErrors naming key, value and rule."""

import pytest

from kdlab.errors import ConfigError
from kdlab.losses import build, loss_names


def test_registered_names():
    assert {"ce", "kd", "ats", "isats"} <= set(loss_names())
    assert loss_names() == sorted(loss_names())


def test_unknown_loss_name_suggests_the_closest():
    with pytest.raises(ConfigError) as err:
        build("kdd")
    message = str(err.value)
    assert "'kdd'" in message and "Did you mean 'kd'?" in message and "Allowed: " + ", ".join(loss_names()) in message


def test_unknown_hyperparameter_names_it_and_the_allowed_ones():
    with pytest.raises(ConfigError) as err:
        build("kd", temprature=2.0)
    message = str(err.value)
    assert "'temprature'" in message and "Did you mean 'temperature'?" in message
    assert "temperature, alpha, standardize" in message


def test_negative_temperature_message_is_exact():
    with pytest.raises(ConfigError) as err:
        build("kd", temperature=-1)
    assert str(err.value) == "loss 'kd': temperature=-1 is not allowed; must be > 0"


@pytest.mark.parametrize(
    ("name", "key", "value", "rule"),
    [
        ("kd", "temperature", 0, "must be > 0"),
        ("kd", "temperature", float("nan"), "must be a finite number > 0"),
        ("kd", "temperature", "4", "must be a finite number > 0"),
        ("kd", "alpha", 1.5, "must be in [0, 1]"),
        ("kd", "alpha", -0.1, "must be in [0, 1]"),
        ("kd", "alpha", True, "must be a finite number in [0, 1]"),
        ("kd", "standardize", "yes", "must be true or false"),
        ("ce", "label_smoothing", 1.0, "must be in [0, 1)"),
        ("ats", "tau_gt", 0.0, "must be > 0"),
        ("ats", "tau_other", -2.0, "must be > 0"),
        ("ats", "tau_student", float("inf"), "must be a finite number > 0"),
        ("ats", "alpha", 1.5, "must be in [0, 1]"),
        ("isats", "tau_min", 0.0, "must be > 0"),
        ("isats", "alpha", 1.5, "must be in [0, 1]"),
        ("isats", "keep_gt_top", 1, "must be true or false"),
    ],
)
def test_impossible_values_name_loss_key_value_and_rule(name, key, value, rule):
    with pytest.raises(ConfigError) as err:
        build(name, **{key: value})
    assert str(err.value) == f"loss '{name}': {key}={value!r} is not allowed; {rule}"


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        build("kd", alpha=2)
