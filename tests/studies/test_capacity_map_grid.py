"""The capacity map's declared grid expands into exactly the declared cells, and its budget arithmetic is right."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from kdlab.errors import ConfigError
from kdlab.losses import build, search_space
from kdlab.studies.capacity_map_grid import (PRESETS, REMEDIES, Cell, FamilyGrid, MapGrid, Size, budget, check_grid,
                                             plan_cells, remedy_cells, remedy_losses, run_counts, teacher_params)

FULL, QUICK = PRESETS["full"], PRESETS["quick"]


def test_full_grid_expands_into_exactly_the_declared_cells() -> None:
    # docs/studies/capacity-map.md, "The grid": synthetic MLP 2 lengths x 2 label sizes x 3 students; Fashion-MNIST
    # MLP 2 x 2 x 3; Fashion-MNIST ResNet-8 1 length x 1 label size x 3 students = 12 + 12 + 3 = 27 cells
    synthetic = [Cell("hierarchical_mixture", "mlp", length, labels, student)
                 for length, labels, student in itertools.product(
                     ("early", "fitted"), (2000, 10000), ("linear", "mlp-w32-d1", "mlp-w128-d1"))]
    fmnist_mlp = [Cell("fashion_mnist", "mlp", length, labels, student)
                  for length, labels, student in itertools.product(
                      ("early", "fitted"), (1000, 5000), ("linear", "mlp-w32-d1", "mlp-w128-d1"))]
    fmnist_conv = [Cell("fashion_mnist", "resnet8", "fitted", 1000, student)
                   for student in ("resnet8-w0.125", "resnet8-w0.25", "resnet8-w0.5")]
    cells = plan_cells(FULL)
    assert cells == synthetic + fmnist_mlp + fmnist_conv
    assert len({c.key for c in cells}) == 27
    assert cells[0].key == "hierarchical_mixture/mlp/early/labels=2000/linear"


def test_quick_preset_is_the_two_by_two_corner() -> None:
    cells = plan_cells(QUICK)
    assert cells == [Cell("hierarchical_mixture", "mlp", "fitted", 1000, "linear"),
                     Cell("hierarchical_mixture", "mlp", "fitted", 1000, "mlp-w64-d1")]
    assert [t.label for t in QUICK.families[0].teachers] == ["mlp-w16-d2", "mlp-w256-d2"]
    assert run_counts(QUICK) == {"cells": 2, "teachers": 2 * 2, "kd_students": 2 * (2 * 2 * 2 * 2),
                                 "ce_students": 2 * 2}
    with pytest.raises(ConfigError, match=">= 5 sizes"):
        check_grid(QUICK)  # a corner, not a map


def test_full_grid_meets_the_issues_minimums() -> None:
    check_grid(FULL)
    params = teacher_params(FULL)
    spans = {key: max(p.values()) / min(p.values()) for key, p in params.items()}
    assert spans[("hierarchical_mixture", "mlp")] == pytest.approx(1_165_412 / 2_180)
    assert spans[("fashion_mnist", "mlp")] == pytest.approx(1_863_690 / 6_442)
    assert spans[("fashion_mnist", "resnet8")] == pytest.approx(308_074 / 1_384)
    assert min(spans.values()) >= 100


def test_run_counts_of_the_full_grid() -> None:
    # teachers 3 families x 5 sizes x 3 seeds; KD students per cell 5 teachers x 3 x 3 seeds x 3 temperatures = 135;
    # CE: (2 + 2 + 1) label sizes x 3 students x 3 seeds
    assert run_counts(FULL) == {"cells": 27, "teachers": 45, "kd_students": 27 * 135, "ce_students": 45}


def tiny_grid(**changes) -> MapGrid:
    family = FamilyGrid(family="mlp", dataset="hierarchical_mixture",
                        teachers=(Size("a", {"name": "mlp", "width": 4, "depth": 1}),
                                  Size("b", {"name": "mlp", "width": 8, "depth": 1})),
                        students=(Size("s", {"name": "mlp", "depth": 0}),), label_sizes=(100, 200),
                        teacher_epochs=10, early_epoch=2, student_epochs=5)
    family = dataclasses.replace(family, **changes)
    return MapGrid(name="tiny", datasets={"hierarchical_mixture": {"name": "hierarchical_mixture"}},
                   families=(family,), teacher_seeds=(0, 1), student_seeds=(0, 1, 2), temperatures=(2.0, 4.0))


def test_budget_by_hand() -> None:
    grid = tiny_grid()
    teacher = {("hierarchical_mixture", "mlp", "a"): 1.0, ("hierarchical_mixture", "mlp", "b"): 3.0}
    student = {("hierarchical_mixture", "mlp", 100): 2.0, ("hierarchical_mixture", "mlp", 200): 5.0}
    # teachers: 10 epochs x (1 + 3) s x 2 seeds = 80; cells: 2 lengths x {100, 200} x 1 student, each 2 teachers x
    # 2 teacher seeds x 3 student seeds x 2 temperatures = 24 runs: 2 x 24 x 2 + 2 x 24 x 5 = 336;
    # CE: 1 student x 3 seeds x (2 + 5) = 21
    assert budget(grid, teacher, student) == {"teachers": 80.0, "students": 357.0, "total": 437.0}
    with pytest.raises(ConfigError, match="no timing for"):
        budget(grid, teacher, {("hierarchical_mixture", "mlp", 100): 2.0})


@pytest.mark.parametrize("changes, match", [
    ({"early_epoch": 10}, "early_epoch=10"),
    ({"teacher_lengths": ("late",)}, "teacher_lengths"),
    ({"dataset": "cifar10"}, "not declared"),
    ({"students": ()}, ">= 1 student"),
    ({"teachers": (Size("a", {"name": "mlp", "width": 4, "depth": 1}),) * 2}, "repeat"),
    ({"label_sizes": (0,)}, "label_sizes"),
])
def test_malformed_grids_fail_naming_the_key(changes, match) -> None:
    with pytest.raises(ConfigError, match=match):
        plan_cells(tiny_grid(**changes))


def test_every_remedy_gets_kds_budget_and_its_points_lie_in_the_losses_own_spaces() -> None:
    assert [r.name for r in REMEDIES] == ["ats", "ats_symmetric", "takd", "dkd", "dist", "logit_std", "ctkd", "eskd"]
    for remedy in REMEDIES:  # equal budget: as many configurations as KD has temperatures
        assert remedy.budget(num_teachers=5) == len(FULL.temperatures), remedy.name
        for loss in remedy.losses:
            space = search_space(loss["name"], remedy.control)
            assert space.contains({key: loss[key] for key in space.keys}), (remedy.name, loss)
    for loss in remedy_losses():
        build(loss["name"], **{k: v for k, v in loss.items() if k != "name"})  # a bad option raises ConfigError
    kd_space = search_space("kd")
    assert all(kd_space.contains({"temperature": t, "alpha": FULL.kd_alpha}) for t in FULL.temperatures)
    ats, control = REMEDIES[0], REMEDIES[1]
    assert control.control_of == "ats"
    assert all(c["tau_gt"] == c["tau_other"] and c["alpha"] == a["alpha"] for c, a in zip(control.losses, ats.losses))


def test_remedies_go_to_the_present_cells_with_the_largest_lower_bounds_under_the_caps() -> None:
    cells = plan_cells(FULL)
    conv = [c for c in cells if c.family == "resnet8"]
    mlp = [c for c in cells if c.family == "mlp"]
    present = {mlp[0].key: 0.020, mlp[1].key: 0.015, mlp[2].key: 0.030, mlp[3].key: 0.012, mlp[4].key: 0.011,
               conv[0].key: 0.025, conv[1].key: 0.040}
    verdicts = {c.key: {"holds": True if c.key in present else None} for c in cells}
    verdicts[mlp[5].key] = {"holds": False}
    gaps = {c.key: {"low": present.get(c.key, -0.01)} for c in cells}
    chosen = remedy_cells(FULL, cells, verdicts, gaps)
    # by lower bound: conv[1] 0.040, mlp[2] 0.030, conv[0] 0.025 (skipped: one ResNet-8 cell at most), mlp[0] 0.020,
    # mlp[1] 0.015 -> 4 cells; the rest skipped for budget
    assert chosen["run"] == [conv[1].key, mlp[2].key, mlp[0].key, mlp[1].key]
    assert chosen["skipped_budget"] == [conv[0].key, mlp[3].key, mlp[4].key]
    none_present = remedy_cells(FULL, cells, {c.key: {"holds": None} for c in cells}, gaps)
    assert none_present == {"run": [], "skipped_budget": []}
