"""Config validation: every bad input fails before training with one message naming key, value and what is allowed."""

from __future__ import annotations

import pytest

from kdlab.config import RunConfig, apply_overrides, parse_config
from kdlab.errors import ConfigError
from kdlab.validate import check_components


def _cfg(base, **sections):
    raw = {**base, **sections}
    return parse_config(raw, RunConfig)


def test_valid_config_round_trips_and_digest_is_stable(tiny_run):
    a = parse_config(tiny_run)
    b = parse_config(a.to_dict())
    assert a.digest() == b.digest()
    assert a.model.options == {"width": 32, "depth": 1, "dropout": 0.2}
    c = parse_config(apply_overrides(tiny_run, ["optim.lr=0.2"]))
    assert c.digest() != a.digest()


def test_unknown_key_names_it_and_suggests(tiny_run):
    raw = apply_overrides(tiny_run, ["optim.lrr=0.1"])
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    msg = str(err.value)
    assert "optim.lrr" in msg and "Did you mean 'lr'" in msg and "momentum" in msg


def test_unknown_top_level_section(tiny_run):
    with pytest.raises(ConfigError, match=r"unknown key 'trian'.*Did you mean 'train'"):
        parse_config({**tiny_run, "trian": {}})


def test_wrong_type_names_key_and_value(tiny_run):
    with pytest.raises(ConfigError) as err:
        parse_config(apply_overrides(tiny_run, ["train.epochs=many"]))
    assert "train.epochs='many'" in str(err.value)


def test_impossible_values(tiny_run):
    with pytest.raises(ConfigError, match=r"optim.lr=-1"):
        parse_config(apply_overrides(tiny_run, ["optim.lr=-1"]))
    with pytest.raises(ConfigError, match=r"optim.name='rmsprop'.*'sgd', 'adam' or 'adamw'"):
        parse_config(apply_overrides(tiny_run, ["optim.name=rmsprop"]))


def test_temperature_and_alpha_are_checked_by_the_loss(tiny_run):
    raw = {**tiny_run, "teacher": {"run": "somewhere"}}
    cfg = parse_config(apply_overrides(raw, ["loss.name=kd", "loss.temperature=0"]))
    with pytest.raises(ConfigError) as err:
        check_components(cfg)
    assert "temperature" in str(err.value) and "0" in str(err.value)
    cfg = parse_config(apply_overrides(raw, ["loss.name=kd", "loss.alpha=1.5"]))
    with pytest.raises(ConfigError, match="alpha"):
        check_components(cfg)


def test_unknown_model_loss_dataset_names(tiny_run):
    with pytest.raises(ConfigError, match=r"model.name='mlpp'.*Did you mean 'mlp'"):
        check_components(parse_config(apply_overrides(tiny_run, ["model.name=mlpp"])))
    with pytest.raises(ConfigError, match=r"data.name='fashion'.*Allowed:"):
        check_components(parse_config(apply_overrides(tiny_run, ["data.name=fashion"])))
    with pytest.raises(ConfigError, match=r"loss.*'kdd'.*Did you mean 'kd'"):
        check_components(parse_config(apply_overrides(tiny_run, ["loss.name=kdd"])))


def test_unknown_model_option(tiny_run):
    with pytest.raises(ConfigError, match=r"model.*'widht'.*Did you mean 'width'"):
        check_components(parse_config(apply_overrides(tiny_run, ["model.widht=3"])))


def test_distillation_loss_without_teacher(tiny_run):
    with pytest.raises(ConfigError, match="needs a teacher"):
        check_components(parse_config(apply_overrides(tiny_run, ["loss.name=kd"])))


def test_teacher_section_needs_one_source(tiny_run):
    with pytest.raises(ConfigError, match="either 'run'"):
        parse_config({**tiny_run, "teacher": {"weights": "t.safetensors"}})


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="key.subkey=value"):
        apply_overrides({}, ["optim.lr"])
    with pytest.raises(ConfigError, match="'lr' is a value"):
        apply_overrides({"optim": {"lr": 1}}, ["optim.lr.x=2"])
