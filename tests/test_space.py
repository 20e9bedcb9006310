"""kdlab.space.Space: grid, constraints, seeded sampling, parsing."""

import pytest

from kdlab.errors import ConfigError
from kdlab.space import Space


def test_grid_is_the_product_in_declared_order_filtered_by_the_constraints():
    space = Space({"a": (1, 2, 3), "b": (1, 2)}, ("a > b",))
    assert space.grid() == [{"a": 2, "b": 1}, {"a": 3, "b": 1}, {"a": 3, "b": 2}]
    assert space.size() == 3
    assert space.contains({"a": 3, "b": 2})
    assert not space.contains({"a": 1, "b": 2})  # breaks the constraint
    assert not space.contains({"a": 3})  # a point names every key
    both = Space({"a": (1, 2), "b": (1, 2)}, ("a >= b", "a != b"))
    assert both.grid() == [{"a": 2, "b": 1}]


def test_empty_space_has_one_point():
    assert Space({}).grid() == [{}] and Space({}).describe() == "(no hyperparameters)"


def test_points_run_the_grid_when_it_fits_and_a_seeded_sample_otherwise():
    space = Space({"x": tuple(range(10)), "y": (0.5, 0.9)})  # 20 points
    assert space.points(20, seed=0) == space.grid()
    assert space.points(50, seed=0) == space.grid()
    picked = space.points(7, seed=3)
    assert len(picked) == 7 and len({tuple(p.values()) for p in picked}) == 7  # distinct
    grid = space.grid()
    assert [grid.index(p) for p in picked] == sorted(grid.index(p) for p in picked)  # in grid order
    assert space.points(7, seed=3) == picked  # deterministic for a seed
    assert space.sample(7, seed=4) != picked  # and the seed matters
    with pytest.raises(ConfigError, match="trials=0 is not allowed; must be >= 1"):
        space.points(0, seed=0)


def test_sample_is_uniform_over_the_grid():
    space = Space({"x": tuple(range(6))})
    counts = dict.fromkeys(range(6), 0)
    for seed in range(600):
        for point in space.sample(2, seed):
            counts[point["x"]] += 1
    assert all(150 <= c <= 250 for c in counts.values())  # each point expected 200 times of 1200


def test_prefixed_moves_keys_and_constraints():
    space = Space({"tau_gt": (2.0, 4.0), "tau_other": (1.0, 2.0)}, ("tau_gt > tau_other",)).prefixed("loss")
    assert space.keys == ["loss.tau_gt", "loss.tau_other"]
    assert space.require == ("loss.tau_gt > loss.tau_other",)
    assert space.size() == 3


def test_from_dict_round_trips_and_flattens_sections():
    raw = {"values": {"loss": {"temperature": [1, 2]}, "optim.lr": [0.1, 0.05]}, "require": []}
    space = Space.from_dict(raw)
    assert space.keys == ["loss.temperature", "optim.lr"]
    assert Space.from_dict(space.to_dict()) == space


@pytest.mark.parametrize(("raw", "message"), [
    ([1, 2], "space must be a mapping"),
    ({"value": {}}, "space: unknown key 'value'. Allowed keys here: values, require"),
    ({"require": []}, "space: missing 'values'"),
    ({"values": {"loss.temperature": 4}}, "values.loss.temperature=4 is not allowed; must be a list"),
    ({"values": {"a": []}}, "space key 'a' has no values"),
    ({"values": {"a": [1, 1]}}, "space key 'a' repeats a value"),
    ({"values": {"a": [1], "b": [2]}, "require": ["a >> b"]}, "space: require 'a >> b': '> b' is not a key of the space"),
    ({"values": {"a": [1], "b": [2]}, "require": ["a > c"]}, "'c' is not a key of the space; allowed keys: a, b"),
    ({"values": {"a": [1], "b": [2]}, "require": ["a > b"]}, "has no point that satisfies a > b"),
    ({"values": {"a": [1]}, "require": "a > b"}, "require='a > b' is not allowed"),
])
def test_bad_spaces_are_config_errors_naming_the_problem(raw, message):
    with pytest.raises(ConfigError, match=message):
        Space.from_dict(raw)
