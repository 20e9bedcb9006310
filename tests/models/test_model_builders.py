"""Student-architecture builders: simplified teachers, smaller family members, the teacher's own architecture."""

from __future__ import annotations

import pytest

from kdlab.errors import ConfigError
from kdlab.models import count_params, create_model
from kdlab.models.builders import same_architecture, simplified, smaller_member

SHAPE = (1, 28, 28)


def capacity(spec):
    return {k: v for k, v in spec.items() if k not in ("num_classes", "in_shape")}


def test_same_architecture_is_an_independent_copy():
    teacher = create_model("mlp", 10, SHAPE, widths=[64, 32])
    spec = same_architecture(teacher)
    assert spec == teacher.spec and spec is not teacher.spec
    spec["widths"].append(8)
    assert teacher.spec["widths"] == [64, 32]
    assert count_params(create_model(**same_architecture(teacher))) == count_params(teacher)


@pytest.mark.parametrize("name,options,factors,expected", [
    ("cnn", {"width": 1.0, "depth": 3}, (0.5, 0.5), {"name": "cnn", "depth": 2, "width": 0.5}),
    ("cnn", {"width": 1.0, "depth": 3}, (1.0, 0.25), {"name": "cnn", "depth": 3, "width": 0.25}),
    ("mlp", {"width": 256, "depth": 4}, (0.5, 0.25), {"name": "mlp", "depth": 2, "width": 64}),
    ("mlp", {"widths": [300, 200, 100]}, (0.34, 0.5), {"name": "mlp", "widths": [150]}),
    # resnet20 has n = 3 blocks per stage: round(3 * 0.5) = 2 -> depth 6 * 2 + 2 = 14
    ("resnet20", {}, (0.5, 0.5), {"name": "resnet", "depth": 14, "width": 0.5}),
    # wrn-40-2 has n = 6: round(6 * 0.5) = 3 -> depth 22; widen factor round(2 * 0.5) = 1
    ("wrn_40_2", {}, (0.5, 0.5), {"name": "wrn", "depth": 22, "widen_factor": 1}),
])
def test_simplified_scales_depth_and_width(name, options, factors, expected):
    teacher = create_model(name, 10, SHAPE, **options)
    spec = simplified(teacher.spec, *factors)
    assert {k: spec[k] for k in expected} == expected
    student = create_model(**spec)
    assert count_params(student) < count_params(teacher)
    assert spec["num_classes"] == 10 and spec["in_shape"] == list(SHAPE)


@pytest.mark.parametrize("name,options,kwargs,expected", [
    ("resnet20", {}, {}, {"name": "resnet", "depth": 14, "width": 1.0}),
    ("resnet", {"depth": 56}, {"steps": 2}, {"name": "resnet", "depth": 32}),
    ("resnet", {"depth": 26}, {}, {"name": "resnet", "depth": 20}),     # off the ladder: next standard depth below
    ("resnet20", {}, {"along": "width"}, {"name": "resnet", "depth": 20, "width": 0.5}),
    ("wrn_16_2", {}, {}, {"name": "wrn", "depth": 10, "widen_factor": 2}),
    ("wrn_16_2", {}, {"along": "width"}, {"name": "wrn", "depth": 16, "widen_factor": 1}),
    ("cnn", {"width": 1.0, "depth": 3}, {}, {"name": "cnn", "width": 0.5, "depth": 3}),
    ("cnn", {"width": 1.0, "depth": 3}, {"along": "depth"}, {"name": "cnn", "width": 1.0, "depth": 2}),
    ("mlp", {"width": 256}, {"steps": 3}, {"name": "mlp", "width": 32}),
    ("mlp", {"widths": [64, 32]}, {"along": "depth"}, {"name": "mlp", "widths": [64]}),
])
def test_smaller_member_steps_down_the_family(name, options, kwargs, expected):
    teacher = create_model(name, 10, SHAPE, **options)
    spec = smaller_member(teacher, **kwargs)
    assert {k: spec[k] for k in expected} == expected
    assert count_params(create_model(**spec)) < count_params(teacher)


def test_builder_errors_name_the_argument():
    with pytest.raises(ConfigError, match=r"model 'resnet' \(.*depth=8.*\) has no smaller member along depth"):
        smaller_member(create_model("resnet8", 10, SHAPE))
    with pytest.raises(ConfigError, match="has no smaller member along width"):
        smaller_member(create_model("wrn_16_1", 10, SHAPE), along="width")
    with pytest.raises(ConfigError, match="has no smaller member along depth"):
        smaller_member(create_model("mlp", 10, SHAPE, depth=1), along="depth")
    with pytest.raises(ConfigError, match=r"depth_factor=0 is not allowed; must be a number in \(0, 1\]"):
        simplified(create_model("cnn", 10, SHAPE), depth_factor=0)
    with pytest.raises(ConfigError, match=r"width_factor=1.5 is not allowed"):
        simplified(create_model("cnn", 10, SHAPE), width_factor=1.5)
    with pytest.raises(ConfigError, match="along='sideways' is not allowed"):
        smaller_member(create_model("cnn", 10, SHAPE), along="sideways")
    with pytest.raises(ConfigError, match="steps=0 is not allowed"):
        smaller_member(create_model("cnn", 10, SHAPE), steps=0)
    with pytest.raises(ConfigError, match="model 'vgg' is not allowed"):
        same_architecture({"name": "vgg", "num_classes": 10, "in_shape": [3, 32, 32]})
    with pytest.raises(ConfigError, match="compressed model"):
        same_architecture({"name": "mlp", "pruned_from": {}})
    with pytest.raises(ConfigError, match="must be a kdlab model spec"):
        same_architecture("mlp")
