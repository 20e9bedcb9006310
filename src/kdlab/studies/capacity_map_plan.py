"""The capacity map's runs as RunConfigs: teachers, KD and CE students, TAKD assistants and remedy trials.

Every run of the map is built here from the declared grid (:mod:`kdlab.studies.capacity_map_grid`) and the shared
recipe (SGD with Nesterov momentum, cosine schedule, batch 128, best-validation checkpoint), so the planner and the
analysis agree on what each run is. Tags say what a run is; the analysis indexes runs by them
(:func:`run_key`). docs/studies/capacity-map.md, "The grid" and "Remedies", is the design these follow.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import Component, RunConfig
from ..space import Space
from ..tuning import TuningPlan, plan_trials
from .capacity_map_grid import Cell, FamilyGrid, MapGrid, Remedy, Size

__all__ = ["assistant_config", "ce_config", "family_of", "intermediate_teachers", "kd_config", "kd_loss",
           "remedy_trials", "run_key", "student_size", "teacher_config", "teacher_epoch"]

# TAKD's assistants learn from the largest teacher by KD at the paper's CIFAR setting (docs, "Remedies")
ASSISTANT_LOSS = {"name": "kd", "temperature": 4.0, "alpha": 0.9}
# a student run takes seconds: a checkpoint every few epochs keeps resumption cheap without writing every epoch
STUDENT_CHECKPOINT_EVERY = 5
# one thread per run, as the budget was measured (docs, "Budget"): these models are small, and two threads per run on
# a shared 2-core machine spend more time waiting on each other than computing
RUN_THREADS = 1


def family_of(grid: MapGrid, dataset: str, family: str) -> FamilyGrid:
    """The family ``family`` on ``dataset`` of ``grid``."""
    for f in grid.families:
        if (f.dataset, f.family) == (dataset, family):
            return f
    raise KeyError(f"grid {grid.name!r} has no family {family!r} on {dataset!r}")


def student_size(family: FamilyGrid, label: str) -> Size:
    """The student size called ``label`` in ``family``."""
    return next(s for s in family.students if s.label == label)


def teacher_epoch(family: FamilyGrid, length: str) -> int | None:
    """The teacher epoch a cell of this length distils from: the early epoch's kept weights, or None (the run's
    best-validation weights, "fitted")."""
    return family.early_epoch if length == "early" else None


def intermediate_teachers(family: FamilyGrid) -> tuple[Size, ...]:
    """The teacher sizes strictly between the smallest and the largest: TAKD's assistant candidates."""
    return family.teachers[1:-1]


def kd_loss(grid: MapGrid, temperature: float) -> dict[str, Any]:
    """Vanilla KD (Hinton et al., 2015) at ``temperature`` with the grid's alpha."""
    return {"name": "kd", "temperature": float(temperature), "alpha": grid.kd_alpha}


def _data(grid: MapGrid, family: FamilyGrid, train_subset: int | None) -> dict[str, Any]:
    return {**grid.datasets[family.dataset], **family.augment, "train_subset": train_subset}


def _run(grid: MapGrid, data: dict[str, Any], model: Mapping[str, Any], epochs: int, seed: int, *,
         loss: Mapping[str, Any] | None = None, teacher: dict[str, Any] | None = None,
         keep_epochs: list[int] | None = None, checkpoint_every: int = 1) -> RunConfig:
    return RunConfig.model_validate({
        "data": data, "model": dict(model), "loss": dict(loss or {"name": "ce"}), "teacher": teacher,
        "optim": dict(grid.optim), "schedule": dict(grid.schedule),
        "train": {"epochs": epochs, "batch_size": grid.batch_size, "seed": seed, "keep_epochs": keep_epochs or [],
                  "checkpoint_every": min(checkpoint_every, epochs), "num_threads": RUN_THREADS}})


def teacher_config(grid: MapGrid, family: FamilyGrid, size: Size, seed: int) -> RunConfig:
    """A teacher run: the family's teacher data and length; it keeps the early epoch's weights when the family has
    early cells, so both lengths come from this one run."""
    keep = [family.early_epoch] if "early" in family.teacher_lengths else []
    return _run(grid, _data(grid, family, family.teacher_train_subset), size.model, family.teacher_epochs, seed,
                keep_epochs=keep)


def _teacher(run: str | Path, epoch: int | None, **extra: Any) -> dict[str, Any]:
    return {"run": str(run), "epoch": epoch, **extra}


def kd_config(grid: MapGrid, cell: Cell, teacher_run: str | Path, temperature: float, seed: int) -> RunConfig:
    """The cell's student distilled by KD at ``temperature`` from the teacher run at the cell's length."""
    family = family_of(grid, cell.dataset, cell.family)
    return _run(grid, _data(grid, family, cell.label_size), student_size(family, cell.student).model,
                family.student_epochs, seed, loss=kd_loss(grid, temperature),
                teacher=_teacher(teacher_run, teacher_epoch(family, cell.teacher_length)),
                checkpoint_every=STUDENT_CHECKPOINT_EVERY)


def ce_config(grid: MapGrid, family: FamilyGrid, label_size: int, student: Size, seed: int) -> RunConfig:
    """The student trained on its labelled set alone (the CE baseline; it does not depend on any teacher)."""
    return _run(grid, _data(grid, family, label_size), student.model, family.student_epochs, seed,
                checkpoint_every=STUDENT_CHECKPOINT_EVERY)


def assistant_config(grid: MapGrid, family: FamilyGrid, size: Size, seed: int, largest_run: str | Path,
                     length: str) -> RunConfig:
    """A TAKD assistant (Mirzadeh et al., AAAI 2020): an intermediate teacher size trained by KD (T 4, alpha 0.9)
    from the largest teacher of the same seed at ``length``, on the teachers' data and recipe. Like the teachers it
    keeps the early epoch's weights, so an early cell's student learns from the assistant at that epoch."""
    epoch = teacher_epoch(family, length)
    return _run(grid, _data(grid, family, family.teacher_train_subset), size.model, family.teacher_epochs, seed,
                loss=ASSISTANT_LOSS, teacher=_teacher(largest_run, epoch),
                keep_epochs=[family.early_epoch] if epoch is not None else [])


def _remedy_point(remedy: Remedy, index: int, assistant_run: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(loss section of the base config, the trial's point as run-config paths) of configuration ``index``."""
    if remedy.losses:
        loss = dict(remedy.losses[index])
        return {"name": loss.pop("name")}, {f"loss.{k}": v for k, v in loss.items()}
    if remedy.stop_fractions:
        return {}, {"teacher.stop_fraction": remedy.stop_fractions[index]}
    return {}, {"teacher.run": assistant_run}


def remedy_trials(grid: MapGrid, cell: Cell, remedy: Remedy, index: int, largest_runs: Mapping[int, str | Path],
                  largest_temperature: float, assistant_runs: Mapping[int, str | Path] | None = None
                  ) -> dict[int, TuningPlan]:
    """Configuration ``index`` of ``remedy`` in ``cell``, one trial plan per teacher seed (``kdlab.tuning``).

    The base is the cell's KD student from the largest teacher L of that seed at L's temperature (chosen on
    validation); the trial sets the configuration's values (a loss's options, ESKD's ``teacher.stop_fraction``, or
    TAKD's assistant as ``teacher.run``) and trains once per student seed. A plan per teacher seed, because the
    teacher seed is not a run seed: the 9 runs of a configuration are 3 plans x 3 student seeds.
    """
    plans = {}
    for seed, run in largest_runs.items():
        base = kd_config(grid, cell, run, largest_temperature, grid.student_seeds[0])
        loss, point = _remedy_point(remedy, index, str(assistant_runs[seed]) if assistant_runs else None)
        if loss:
            base = base.model_copy(update={"loss": Component(**loss)})
        space = Space({key: (value,) for key, value in point.items()})
        plans[seed] = plan_trials(base, space, 1, grid.student_seeds, label=f"{cell.key}/{remedy.name}/{index}")
    return plans


def run_key(tags: Mapping[str, Any]) -> tuple:
    """A hashable key of a run's tags, for indexing thousands of runs once instead of scanning them per lookup."""
    return tuple(sorted(tags.items()))
