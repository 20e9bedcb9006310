"""The capacity map's grid, declared as data, and the planner that expands it into cells (issue 20).

The declaration mirrors docs/studies/capacity-map.md, which fixed it before any map run; change one, change both.
A *cell* is one (dataset, family, teacher training length, labelled-set size, student size); inside a cell every
teacher size of the family, with every teacher seed, teaches the cell's student with every student seed at every KD
temperature, and the mismatch gap (kdlab.analysis.mismatch_gap) is computed from those tables. The capacity-map study
(:mod:`kdlab.studies.capacity_map`) takes its grid from here.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..models import count_params, create_model

__all__ = ["Cell", "FamilyGrid", "MapGrid", "PRESETS", "REMEDIES", "Remedy", "Size", "budget", "check_grid",
           "plan_cells", "remedy_cells", "remedy_losses", "run_counts", "teacher_params"]

TEACHER_LENGTHS: tuple[str, ...] = ("early", "fitted")


@dataclass(frozen=True)
class Size:
    """One model of a family: a short label for tables and the model section (registry name + options)."""

    label: str
    model: Mapping[str, Any]


@dataclass(frozen=True)
class FamilyGrid:
    """One model family on one dataset: its teacher sizes (ascending), student sizes (descending capacity is not
    required), how each stage trains, and which labelled-set sizes and teacher lengths its cells take.

    ``teacher_train_subset``: the teachers' training images (None = all); the students' labelled sets are stratified
    subsets of the same training split. ``early_epoch``: the "early" teacher is the fitted run's weights as kept
    after that epoch (train.keep_epochs), so both lengths come from one teacher run. ``augment``: the data section's
    crop_padding / hflip, for teachers and students alike.
    """

    family: str
    dataset: str
    teachers: tuple[Size, ...]
    students: tuple[Size, ...]
    label_sizes: tuple[int, ...]
    teacher_epochs: int
    early_epoch: int
    student_epochs: int
    teacher_lengths: tuple[str, ...] = TEACHER_LENGTHS
    teacher_train_subset: int | None = None
    augment: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MapGrid:
    """The whole map: datasets (data sections by name), families, seeds, the KD temperatures each teacher is
    distilled at (the best chosen on validation), the training recipe every stage shares (optimiser, schedule,
    batch size), and the decision rule's threshold and error rate."""

    name: str
    datasets: Mapping[str, Mapping[str, Any]]
    families: tuple[FamilyGrid, ...]
    teacher_seeds: tuple[int, ...]
    student_seeds: tuple[int, ...]
    temperatures: tuple[float, ...]
    kd_alpha: float = 0.9
    optim: Mapping[str, Any] = field(default_factory=lambda: {"name": "sgd", "lr": 0.05, "momentum": 0.9,
                                                              "nesterov": True, "weight_decay": 5e-4})
    schedule: Mapping[str, Any] = field(default_factory=lambda: {"name": "cosine"})
    batch_size: int = 128
    # remedies run in at most this many "present" cells (largest lower bound first), per family at most the cap given
    remedy_max_cells: int = 4
    remedy_max_cells_per_family: Mapping[str, int] = field(default_factory=lambda: {"resnet8": 1})
    threshold: float = 0.01  # accuracy fraction: 1 point
    alpha: float = 0.05
    correction: str = "bh"


@dataclass(frozen=True, order=True)
class Cell:
    """One cell of the map; ``key`` names it in results and plots."""

    dataset: str
    family: str
    teacher_length: str
    label_size: int
    student: str

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.family}/{self.teacher_length}/labels={self.label_size}/{self.student}"


def plan_cells(grid: MapGrid) -> list[Cell]:
    """Every cell of ``grid``, in declaration order: families, then teacher lengths, labelled-set sizes, students.

    Cells = sum over families f of |lengths_f| * |label_sizes_f| * |students_f|.
    """
    check_grid(grid, strict=False)
    return [Cell(f.dataset, f.family, length, labels, student.label)
            for f in grid.families
            for length, labels, student in itertools.product(f.teacher_lengths, f.label_sizes, f.students)]


def teacher_params(grid: MapGrid) -> dict[tuple[str, str], dict[str, int]]:
    """Parameter counts of every teacher, {(dataset, family): {label: params}}, from the models themselves."""
    out = {}
    for f in grid.families:
        shape, classes = _dataset_shape(grid, f.dataset)
        out[(f.dataset, f.family)] = {t.label: _params(t.model, classes, shape) for t in f.teachers}
    return out


def check_grid(grid: MapGrid, strict: bool = True) -> None:
    """Raise ConfigError unless ``grid`` is well formed; ``strict`` adds the issue's minimums for a full map.

    Always: known datasets, unique labels, teacher lengths from ("early", "fitted"), 1 <= early_epoch <
    teacher_epochs, positive sizes, >= 2 teacher sizes and >= 1 student. Strict: >= 5 teacher sizes spanning >= 100x
    parameters in ascending order, >= 2 teacher seeds, >= 3 student sizes per dataset, >= 2 temperatures,
    >= 2 student seeds, both datasets and >= 2 families.
    """
    for f in grid.families:
        where = f"{grid.name}: family {f.family!r} on {f.dataset!r}"
        if f.dataset not in grid.datasets:
            raise ConfigError(f"{where}: dataset {f.dataset!r} is not declared; allowed: {sorted(grid.datasets)}")
        for kind, sizes in (("teachers", f.teachers), ("students", f.students)):
            labels = [s.label for s in sizes]
            if len(set(labels)) != len(labels):
                raise ConfigError(f"{where}: {kind} labels {labels} repeat; allowed: unique labels")
        if len(f.teachers) < 2 or not f.students or not f.label_sizes:
            raise ConfigError(f"{where}: needs >= 2 teachers, >= 1 student and >= 1 labelled-set size")
        bad_lengths = [x for x in f.teacher_lengths if x not in TEACHER_LENGTHS]
        if bad_lengths or not f.teacher_lengths:
            raise ConfigError(f"{where}: teacher_lengths={list(f.teacher_lengths)}; allowed: {TEACHER_LENGTHS}")
        if not 1 <= f.early_epoch < f.teacher_epochs:
            raise ConfigError(f"{where}: early_epoch={f.early_epoch} with teacher_epochs={f.teacher_epochs}; allowed: "
                              "1 <= early_epoch < teacher_epochs")
        if min(f.label_sizes) < 1 or f.student_epochs < 1:
            raise ConfigError(f"{where}: label_sizes={list(f.label_sizes)}, student_epochs={f.student_epochs}; "
                              "allowed: positive")
    if len(grid.teacher_seeds) < 1 or len(grid.student_seeds) < 1 or not grid.temperatures:
        raise ConfigError(f"{grid.name}: needs at least one teacher seed, student seed and temperature")
    if not strict:
        return
    params = teacher_params(grid)
    for f in grid.families:
        counts = list(params[(f.dataset, f.family)].values())
        if len(counts) < 5 or counts != sorted(counts) or counts[-1] < 100 * counts[0]:
            raise ConfigError(f"{grid.name}: family {f.family!r} on {f.dataset!r} has teachers of {counts} parameters;"
                              " allowed: >= 5 sizes in ascending order spanning >= 100x")
    for dataset in {f.dataset for f in grid.families}:
        students = {s.label for f in grid.families if f.dataset == dataset for s in f.students}
        if len(students) < 3:
            raise ConfigError(f"{grid.name}: {dataset!r} has students {sorted(students)}; allowed: >= 3 sizes")
    if len(grid.teacher_seeds) < 2 or len(grid.student_seeds) < 2 or len(grid.temperatures) < 2:
        raise ConfigError(f"{grid.name}: {len(grid.teacher_seeds)} teacher seeds, {len(grid.student_seeds)} student "
                          f"seeds, {len(grid.temperatures)} temperatures; allowed: >= 2 of each")
    if {f.dataset for f in grid.families} != set(grid.datasets) or len({f.family for f in grid.families}) < 2:
        raise ConfigError(f"{grid.name}: every declared dataset needs a family and the map needs >= 2 families")


def run_counts(grid: MapGrid) -> dict[str, int]:
    """How many runs the grid trains before any remedy.

    teachers = sum_f |teachers_f| * |teacher seeds| (one run gives both lengths);
    kd_students = sum over cells |teachers_f| * |teacher seeds| * |student seeds| * |temperatures|;
    ce_students = sum_f |label_sizes_f| * |students_f| * |student seeds| (the CE baseline does not depend on the
    teacher or its length).
    """
    cells = plan_cells(grid)
    families = {(f.dataset, f.family): f for f in grid.families}
    n_t, n_s, n_tau = len(grid.teacher_seeds), len(grid.student_seeds), len(grid.temperatures)
    return {
        "cells": len(cells),
        "teachers": sum(len(f.teachers) * n_t for f in grid.families),
        "kd_students": sum(len(families[(c.dataset, c.family)].teachers) * n_t * n_s * n_tau for c in cells),
        "ce_students": sum(len(f.label_sizes) * len(f.students) * n_s for f in grid.families),
    }


def budget(grid: MapGrid, teacher_epoch_seconds: Mapping[tuple[str, str, str], float],
           student_run_seconds: Mapping[tuple[str, str, int], float]) -> dict[str, float]:
    """Core-seconds the grid needs before remedies, from measured timings.

    ``teacher_epoch_seconds[(dataset, family, teacher label)]``: seconds per teacher epoch on its training set;
    ``student_run_seconds[(dataset, family, label_size)]``: seconds per whole student run (any student size of the
    family; the mean of the measured sizes). teachers = sum_f sum_t epochs_f * s_t * |teacher seeds|;
    students = sum over cells and CE baselines of runs * s_run. Returns both and their total.
    """
    cells = plan_cells(grid)
    families = {(f.dataset, f.family): f for f in grid.families}
    n_t, n_s, n_tau = len(grid.teacher_seeds), len(grid.student_seeds), len(grid.temperatures)
    try:
        teachers = sum(f.teacher_epochs * teacher_epoch_seconds[(f.dataset, f.family, t.label)] * n_t
                       for f in grid.families for t in f.teachers)
        students = sum(len(families[(c.dataset, c.family)].teachers) * n_t * n_s * n_tau
                       * student_run_seconds[(c.dataset, c.family, c.label_size)] for c in cells)
        students += sum(len(f.students) * n_s * student_run_seconds[(f.dataset, f.family, labels)]
                        for f in grid.families for labels in f.label_sizes)
    except KeyError as missing:
        raise ConfigError(f"budget: no timing for {missing.args[0]}") from None
    return {"teachers": teachers, "students": students, "total": teachers + students}


def _dataset_shape(grid: MapGrid, dataset: str) -> tuple[tuple[int, ...], int]:
    """Input shape and class count of a declared dataset, without loading it."""
    if dataset == "fashion_mnist":
        return (1, 28, 28), 10
    if dataset == "hierarchical_mixture":
        options = grid.datasets[dataset].get("options", {})
        return (options.get("dim", 12),), options.get("num_superclasses", 20) * options.get("classes_per_superclass", 5)
    raise ConfigError(f"{grid.name}: dataset {dataset!r}; allowed: fashion_mnist, hierarchical_mixture")


def _params(model: Mapping[str, Any], num_classes: int, in_shape: Sequence[int]) -> int:
    options = {k: v for k, v in model.items() if k != "name"}
    return count_params(create_model(model["name"], num_classes, in_shape, **options))


def _mlp(width: int, depth: int) -> Size:
    if depth == 0:
        return Size("linear", {"name": "mlp", "depth": 0})
    return Size(f"mlp-w{width}-d{depth}", {"name": "mlp", "width": width, "depth": depth})


def _resnet8(width: float) -> Size:
    return Size(f"resnet8-w{width:g}", {"name": "resnet8", "width": width})


LINEAR = _mlp(0, 0)
AUGMENT = {"crop_padding": 2, "hflip": True}

FULL = MapGrid(
    name="full",
    datasets={
        "hierarchical_mixture": {"name": "hierarchical_mixture", "val_size": 5000, "seed": 0, "options": {}},
        "fashion_mnist": {"name": "fashion_mnist", "val_size": 5000, "seed": 0},
    },
    families=(
        FamilyGrid(family="mlp", dataset="hierarchical_mixture",
                   teachers=tuple(_mlp(w, 2) for w in (16, 64, 256, 512, 1024)),
                   students=(LINEAR, _mlp(32, 1), _mlp(128, 1)),
                   label_sizes=(2000, 10000), teacher_epochs=30, early_epoch=5, student_epochs=30),
        FamilyGrid(family="mlp", dataset="fashion_mnist",
                   teachers=tuple(_mlp(w, 2) for w in (8, 32, 128, 512, 1024)),
                   students=(LINEAR, _mlp(32, 1), _mlp(128, 1)),
                   label_sizes=(1000, 5000), teacher_epochs=20, early_epoch=3, student_epochs=30),
        FamilyGrid(family="resnet8", dataset="fashion_mnist",
                   teachers=tuple(_resnet8(w) for w in (0.125, 0.25, 0.5, 1.0, 2.0)),
                   students=(_resnet8(0.125), _resnet8(0.25), _resnet8(0.5)),
                   label_sizes=(1000,), teacher_epochs=15, early_epoch=3, student_epochs=15,
                   teacher_lengths=("fitted",), teacher_train_subset=10000, augment=AUGMENT),
    ),
    teacher_seeds=(0, 1, 2),
    student_seeds=(0, 1, 2),
    temperatures=(2.0, 4.0, 8.0),
)

# The 2x2 corner for CI: the smallest and a large teacher, the smallest and a mid student, one cell row, in minutes.
QUICK = MapGrid(
    name="quick",
    datasets={"hierarchical_mixture": {"name": "hierarchical_mixture", "val_size": 1000, "seed": 0,
                                       "options": {"n_train": 6000, "n_test": 2000}}},
    families=(
        FamilyGrid(family="mlp", dataset="hierarchical_mixture",
                   teachers=(_mlp(16, 2), _mlp(256, 2)), students=(LINEAR, _mlp(64, 1)),
                   label_sizes=(1000,), teacher_epochs=5, early_epoch=2, student_epochs=10,
                   teacher_lengths=("fitted",)),
    ),
    teacher_seeds=(0, 1),
    student_seeds=(0, 1),
    temperatures=(2.0, 4.0),
)

PRESETS: dict[str, MapGrid] = {"full": FULL, "quick": QUICK}


@dataclass(frozen=True)
class Remedy:
    """A capacity-mismatch remedy run from the largest teacher in cells with a significant gap, and its search space.

    ``losses``: the loss sections tried, each one configuration of the tuning budget; every one is a point of the
    loss's built-in search space (``kdlab.losses.search_space(loss, control)``), tested. ESKD keeps KD's loss at the
    temperature KD chose for that teacher on validation and varies ``stop_fractions`` (``teacher.stop_fraction``:
    the teacher is dropped after that fraction of the student's epochs); TAKD varies the assistant (each intermediate
    teacher size). ``control`` names the built-in control space the losses come from (the symmetric ATS control).
    """

    name: str
    paper: str
    losses: tuple[Mapping[str, Any], ...] = ()
    stop_fractions: tuple[float, ...] = ()
    assistants: bool = False
    control: str | None = None
    control_of: str | None = None

    def budget(self, num_teachers: int) -> int:
        """Configurations tried: losses, stop fractions, or the num_teachers - 2 intermediate sizes (TAKD)."""
        return len(self.losses) or len(self.stop_fractions) or (num_teachers - 2 if self.assistants else 0)


# Three configurations per remedy, as KD gets three temperatures: the paper's setting and two neighbours (most papers'
# settings were chosen for 240-epoch CIFAR-100 runs; docs/tuning.md measured DKD's beta 8 failing a 30-epoch student).
REMEDIES: tuple[Remedy, ...] = (
    Remedy("ats", "Li et al., Asymmetric Temperature Scaling Makes Larger Networks Teach Well Again, NeurIPS 2022",
           losses=tuple({"name": "ats", "tau_gt": gt, "tau_other": other, "tau_student": 1.0, "alpha": 0.5}
                        for gt, other in ((4.0, 2.0), (8.0, 4.0), (8.0, 2.0)))),
    Remedy("ats_symmetric", "ATS's loss form with tau_gt = tau_other: the control that isolates the asymmetry",
           losses=tuple({"name": "ats", "tau_gt": t, "tau_other": t, "tau_student": 1.0, "alpha": 0.5}
                        for t in (2.0, 4.0, 8.0)), control="symmetric", control_of="ats"),
    Remedy("takd", "Mirzadeh et al., Improved Knowledge Distillation via Teacher Assistant, AAAI 2020",
           assistants=True),
    Remedy("dkd", "Zhao et al., Decoupled Knowledge Distillation, CVPR 2022",
           losses=tuple({"name": "dkd", "alpha": 1.0, "beta": b, "temperature": t}
                        for b, t in ((8.0, 4.0), (1.0, 4.0), (1.0, 2.0)))),
    Remedy("dist", "Huang et al., Knowledge Distillation from A Stronger Teacher, NeurIPS 2022",
           losses=tuple({"name": "dist", "beta": 2.0, "gamma": 2.0, "temperature": t} for t in (1.0, 2.0, 4.0))),
    Remedy("logit_std", "Sun et al., Logit Standardization in Knowledge Distillation, CVPR 2024",
           losses=tuple({"name": "logit_std", "temperature": t, "kd_weight": 9.0} for t in (1.0, 2.0, 4.0))),
    Remedy("ctkd", "Li et al., Curriculum Temperature for Knowledge Distillation, AAAI 2023",
           losses=tuple({"name": "ctkd", "curriculum_fraction": f, "alpha": 0.9}
                        for f in (1 / 24, 1 / 12, 1 / 6))),
    Remedy("eskd", "Cho & Hariharan, On the Efficacy of Knowledge Distillation, ICCV 2019",
           stop_fractions=(0.25, 0.5, 0.75)),
)


def remedy_losses() -> list[Mapping[str, Any]]:
    """Every loss section the remedies try (for checking them all before anything trains)."""
    return [loss for remedy in REMEDIES for loss in remedy.losses]


def remedy_cells(grid: MapGrid, cells: Sequence[Cell], verdicts: Mapping[str, Mapping[str, Any]],
                 gaps: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Which cells with mismatch present get the remedies, under the grid's caps; the rest are listed as skipped.

    ``verdicts[key]["holds"]`` (from ``kdlab.analysis.mismatch_gap.map_verdicts``) and ``gaps[key]["low"]`` (the
    gap's interval) by cell key. Present cells are taken in decreasing order of the gap's lower bound (ties: cell
    order), skipping a cell once its family has ``remedy_max_cells_per_family`` cells, until ``remedy_max_cells``.
    """
    present = [c for c in cells if verdicts[c.key]["holds"] is True]
    ranked = sorted(present, key=lambda c: -gaps[c.key]["low"])  # sorted() is stable: ties keep cell order
    chosen: list[str] = []
    per_family: dict[str, int] = {}
    for cell in ranked:
        cap = grid.remedy_max_cells_per_family.get(cell.family, grid.remedy_max_cells)
        if len(chosen) < grid.remedy_max_cells and per_family.get(cell.family, 0) < cap:
            chosen.append(cell.key)
            per_family[cell.family] = per_family.get(cell.family, 0) + 1
    return {"run": chosen, "skipped_budget": [c.key for c in ranked if c.key not in chosen]}
