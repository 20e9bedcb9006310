"""Capacity map: where does capacity mismatch live? A pre-registered map over teacher size, student size, the
student's labelled data, the teachers' training length, the model family and the task (issue 20).

The design, the statistic, the threshold and the decision rules were fixed in docs/studies/capacity-map.md before
any map run; the grid is declared as data in :mod:`kdlab.studies.capacity_map_grid`, its runs are built by
:mod:`kdlab.studies.capacity_map_plan`, its statistics computed by :mod:`kdlab.studies.capacity_map_stats` and each
teacher described by :mod:`kdlab.studies.capacity_map_teachers`. Capacity mismatch ("On the Efficacy of Knowledge
Distillation", Cho & Hariharan, ICCV 2019; "Improved Knowledge Distillation via Teacher Assistant", Mirzadeh et al.,
AAAI 2020; "Asymmetric Temperature Scaling Makes Larger Networks Teach Well Again", Li et al., NeurIPS 2022): a
larger, more accurate teacher teaches a given student worse than a smaller one.

Plan: every teacher (family x size x seed; one run gives both lengths); in every cell every teacher's KD student
at every temperature per student seed, and the CE student; then, built from those, in the cells where the gap is
significant (capped), the TAKD assistants and every remedy's trials from the largest teacher. Analysis: per cell the
gap G (best teacher B minus largest teacher L, both chosen on validation, read on test) with a variance-components
interval, Benjamini-Hochberg over the cells, each cell's verdict as a declared claim on its BH-adjusted interval;
per remedy the configuration chosen on validation and its three statistics, BH over the (cell, remedy) pairs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from ..analysis.verdict import Claim, Measurement, NotApplicable, Rule
from ..config import RunConfig
from ..errors import ConfigError
from ..store import RunStore
from .base import STUDIES
from .capacity_map_grid import (PRESETS, REMEDIES, Cell, FamilyGrid, MapGrid, check_grid, plan_cells, remedy_cells,
                                run_counts)
from .capacity_map_plan import (assistant_config, ce_config, family_of, intermediate_teachers, kd_config,
                                remedy_trials, run_key, teacher_config)
from .capacity_map_report import report
from .capacity_map_stats import (ASYMMETRY, CLOSES, GAIN, REMEDY_STATISTICS, cell_statistics, choose_configuration,
                                 decide_cells, decide_remedies, remedy_statistics)
from .capacity_map_teachers import profile_teachers
from .driver import Planned, RunSet, Study, StudyConfig, Wave

PREREGISTRATION = "docs/studies/capacity-map.md"
# where the pre-registered text ends and the dated addenda begin
ADDENDUM = "\n## Addendum"
VALIDATION = "validation accuracy (mean over teacher and student seeds)"
POINTS = {"unit": "points", "scale": 100.0}
CHO = "Cho & Hariharan, On the Efficacy of Knowledge Distillation, ICCV 2019"


class CapacityMapConfig(StudyConfig):
    """The map's config: which declared grid runs, and the remedies (the pre-registered design is the default)."""

    # a grid declared in kdlab.studies.capacity_map_grid.PRESETS: full (the pre-registered map) or quick (CI corner)
    grid: str = "full"
    # where remedies run: in the cells with mismatch present (the pre-registered rule), or in every tested cell
    # ("all", a smoke test of the remedies; the report says so); the grid's caps apply either way
    remedy_cells: Literal["present", "all"] = "present"
    # the remedies run there (default: all declared, the pre-registered set)
    remedies: list[str] = Field(default_factory=lambda: [r.name for r in REMEDIES], min_length=1)

    @field_validator("grid")
    @classmethod
    def _declared_grid(cls, grid: str) -> str:
        if grid not in PRESETS:
            raise ValueError(f"grid={grid!r} is not declared; allowed: {', '.join(sorted(PRESETS))}")
        return grid

    @field_validator("remedies")
    @classmethod
    def _declared_remedies(cls, remedies: list[str]) -> list[str]:
        names = [r.name for r in REMEDIES]
        unknown = [r for r in remedies if r not in names]
        if unknown or len(set(remedies)) != len(remedies):
            raise ValueError(f"remedies={remedies} is not allowed; allowed: distinct names from {', '.join(names)}")
        if "ats_symmetric" in remedies and "ats" not in remedies:
            raise ValueError("remedies: ats_symmetric is the control of ats; list ats too")
        return [r for r in names if r in remedies]  # declaration order


DEFAULTS: dict[str, Any] = {"grid": "full"}
PRESETS_CONFIG: dict[str, dict[str, Any]] = {"quick": {"grid": "quick"}}


def grid_of(cfg: CapacityMapConfig) -> MapGrid:
    """The declared grid the config names."""
    return PRESETS[cfg.grid]


# ---------------------------------------------------------------------------------------------------- plan


def _teacher_configs(grid: MapGrid) -> dict[tuple[str, str, str, int], RunConfig]:
    return {(f.dataset, f.family, t.label, seed): teacher_config(grid, f, t, seed)
            for f in grid.families for t in f.teachers for seed in grid.teacher_seeds}


def _costly_first(grid: MapGrid, cells: list[Cell]) -> list[Cell]:
    # the pool takes runs in order: the long (augmented, larger labelled set) ones first leave short ones for the tail
    def cost(cell: Cell) -> tuple:
        family = family_of(grid, cell.dataset, cell.family)
        return (-bool(family.augment), -cell.label_size)
    return sorted(cells, key=cost)


def plan(cfg: CapacityMapConfig, store: RunStore) -> list[Wave]:
    """Teachers; every cell's KD students (teacher x teacher seed x temperature x student seed) and CE students;
    then, built from those, the TAKD assistants and the remedies' trials in the cells the declared rule selects."""
    grid = grid_of(cfg)
    teachers = _teacher_configs(grid)
    ordered = sorted(teachers.items(), key=lambda kv: (-bool(family_of(grid, kv[0][0], kv[0][1]).augment),
                                                       -kv[1].train.epochs, -_size_index(grid, kv[0])))
    teacher_wave = [Planned({"role": "teacher", "dataset": d, "family": f, "teacher": t, "teacher_seed": s}, job)
                    for (d, f, t, s), job in ordered]
    students = []
    for cell in _costly_first(grid, plan_cells(grid)):
        family = family_of(grid, cell.dataset, cell.family)
        for t in family.teachers:
            for s in grid.teacher_seeds:
                run = store.path(teachers[(cell.dataset, cell.family, t.label, s)])
                for tau in grid.temperatures:
                    students += [Planned({"role": "kd", "cell": cell.key, "teacher": t.label, "temperature": tau,
                                          "teacher_seed": s, "seed": r}, kd_config(grid, cell, run, tau, r))
                                 for r in grid.student_seeds]
    for f in grid.families:
        for labels in f.label_sizes:
            for st in f.students:
                students += [Planned({"role": "ce", "dataset": f.dataset, "family": f.family, "label_size": labels,
                                      "student": st.label, "seed": r}, ce_config(grid, f, labels, st, r))
                             for r in grid.student_seeds]
    waves = [Wave("teachers", teacher_wave), Wave("KD and CE students", students)]
    waves += [Wave("TAKD assistants", build=lambda runs: _assistants(cfg, store, runs),
                   preview=_assistant_preview(cfg, store)),
              Wave("remedies", build=lambda runs: _remedies(cfg, store, runs), preview=_remedy_preview(cfg, store))]
    return waves


def _size_index(grid: MapGrid, key: tuple[str, str, str, int]) -> int:
    family = family_of(grid, key[0], key[1])
    return [t.label for t in family.teachers].index(key[2])


def _largest_runs(grid: MapGrid, store: RunStore, family: FamilyGrid) -> dict[int, Path]:
    largest = family.teachers[-1]
    return {s: store.path(teacher_config(grid, family, largest, s)) for s in grid.teacher_seeds}


def _assistant_jobs(grid: MapGrid, store: RunStore, family: FamilyGrid, length: str) -> dict[tuple[str, int], Any]:
    largest = _largest_runs(grid, store, family)
    return {(a.label, s): assistant_config(grid, family, a, s, largest[s], length)
            for a in intermediate_teachers(family) for s in grid.teacher_seeds}


def _assistant_preview(cfg: CapacityMapConfig, store: RunStore) -> list[Planned]:
    grid = grid_of(cfg)
    if "takd" not in cfg.remedies:
        return []
    return [Planned({"role": "assistant", "preview": True}, job) for f in grid.families for length in
            f.teacher_lengths for job in list(_assistant_jobs(grid, store, f, length).values())[:1]]


def _remedy_plans(cfg: CapacityMapConfig, store: RunStore, cell: Cell, largest_temperature: float
                  ) -> list[tuple[str, int, dict[int, Any]]]:
    """(remedy, configuration, {teacher seed: trial plan}) of every remedy configuration in ``cell``."""
    grid = grid_of(cfg)
    family = family_of(grid, cell.dataset, cell.family)
    largest = _largest_runs(grid, store, family)
    assistants = _assistant_jobs(grid, store, family, cell.teacher_length)
    out = []
    for remedy in (r for r in REMEDIES if r.name in cfg.remedies):
        for index in range(remedy.budget(len(family.teachers))):
            helpers = None
            if remedy.assistants:
                label = intermediate_teachers(family)[index].label
                helpers = {s: store.path(assistants[(label, s)]) for s in grid.teacher_seeds}
            out.append((remedy.name, index, remedy_trials(grid, cell, remedy, index, largest, largest_temperature,
                                                          helpers)))
    return out


def _remedy_preview(cfg: CapacityMapConfig, store: RunStore) -> list[Planned]:
    grid = grid_of(cfg)
    previews = []
    for f in grid.families:  # one cell per family: its remedies' configurations must build before anything trains
        cell = next(c for c in plan_cells(grid) if (c.dataset, c.family) == (f.dataset, f.family))
        previews += [Planned({"role": "remedy", "preview": True, "remedy": name}, plan.run_configs()[0])
                     for name, _, plans in _remedy_plans(cfg, store, cell, grid.temperatures[0])
                     for plan in list(plans.values())[:1]]
    return previews


def _selection(cfg: CapacityMapConfig, runs: RunSet) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Every cell's gap statistics (from the KD runs) and the cells the remedies go to under the declared rule."""
    grid = grid_of(cfg)
    index = {run_key(r.tags): r for r in runs.runs}
    gaps = {cell.key: _cell_gap(grid, cell, index)[0] for cell in plan_cells(grid)}
    decisions = decide_cells(gaps, grid.threshold, grid.alpha)["verdicts"]
    chosen = _remedy_choice(cfg, grid, gaps, decisions)
    return gaps, chosen


def _remedy_choice(cfg: CapacityMapConfig, grid: MapGrid, gaps: dict[str, Any],
                   decisions: dict[str, Any]) -> dict[str, list[str]]:
    cells = [c for c in plan_cells(grid) if gaps[c.key]["low"] is not None]
    if cfg.remedy_cells == "all":
        verdicts = {c.key: {"holds": True} for c in cells}
    else:
        verdicts = {c.key: decisions[c.key] for c in cells}
    return remedy_cells(grid, cells, verdicts, gaps)


def _assistants(cfg: CapacityMapConfig, store: RunStore, runs: RunSet) -> list[Planned]:
    if "takd" not in cfg.remedies:
        return []
    grid = grid_of(cfg)
    _, chosen = _selection(cfg, runs)
    needed = sorted({(c.dataset, c.family, c.teacher_length) for c in plan_cells(grid) if c.key in chosen["run"]})
    out = []
    for dataset, family_name, length in needed:
        family = family_of(grid, dataset, family_name)
        out += [Planned({"role": "assistant", "dataset": dataset, "family": family_name, "length": length,
                         "assistant": label, "teacher_seed": s}, job)
                for (label, s), job in _assistant_jobs(grid, store, family, length).items()]
    return out


def _remedies(cfg: CapacityMapConfig, store: RunStore, runs: RunSet) -> list[Planned]:
    grid = grid_of(cfg)
    gaps, chosen = _selection(cfg, runs)
    out = []
    for cell in plan_cells(grid):
        if cell.key not in chosen["run"]:
            continue
        gap = gaps[cell.key]
        tau = gap["per_teacher"][gap["largest_teacher"]]["temperature"]
        for name, index, plans in _remedy_plans(cfg, store, cell, tau):
            for s, trial_plan in plans.items():
                out += [Planned({"role": "remedy", "cell": cell.key, "remedy": name, "config": index,
                                 "teacher_seed": s, "seed": r}, job)
                        for r, job in zip(trial_plan.seeds, trial_plan.run_configs())]
    return out


# ---------------------------------------------------------------------------------------------------- analysis


def _table(index: dict[tuple, Any], grid: MapGrid, metric: str, **tags: Any) -> dict[int, dict[int, float]]:
    """{teacher_seed: {student_seed: metric}} of the runs tagged ``tags`` (every seed of the grid must be there)."""
    return {s: {r: getattr(index[run_key({**tags, "teacher_seed": s, "seed": r})], metric)
                for r in grid.student_seeds} for s in grid.teacher_seeds}


def _cell_gap(grid: MapGrid, cell: Cell, index: dict[tuple, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cell's gap statistics and its raw tables {teacher: {tau: {"val": table, "test": table}}}."""
    family = family_of(grid, cell.dataset, cell.family)
    val, test, params, raw = {}, {}, {}, {}
    for t in family.teachers:
        val[t.label], test[t.label], raw[t.label] = {}, {}, {}
        for tau in grid.temperatures:
            tags = {"role": "kd", "cell": cell.key, "teacher": t.label, "temperature": tau}
            val[t.label][tau] = _table(index, grid, "val_accuracy", **tags)
            test[t.label][tau] = _table(index, grid, "test_accuracy", **tags)
            raw[t.label][str(tau)] = {"val": _json_table(val[t.label][tau]), "test": _json_table(test[t.label][tau])}
        teacher = index[run_key({"role": "teacher", "dataset": cell.dataset, "family": cell.family,
                                 "teacher": t.label, "teacher_seed": grid.teacher_seeds[0]})]
        params[t.label] = teacher.summary["params"]
    return cell_statistics(val, test, params, grid.threshold), raw


def _json_table(table: dict[int, dict[int, float]]) -> dict[str, dict[str, float]]:
    return {str(s): {str(r): v for r, v in row.items()} for s, row in table.items()}


def _int_table(table: dict[str, dict[str, float]]) -> dict[int, dict[int, float]]:
    return {int(s): {int(r): v for r, v in row.items()} for s, row in table.items()}


def _remedy_tables(grid: MapGrid, index: dict[tuple, Any], cell: Cell, remedy: str, configs: int
                   ) -> tuple[list, list, list]:
    val, test, values = [], [], []
    for i in range(configs):
        tags = {"role": "remedy", "cell": cell.key, "remedy": remedy, "config": i}
        val.append(_table(index, grid, "val_accuracy", **tags))
        test.append(_table(index, grid, "test_accuracy", **tags))
        values.append(_configuration_values(grid, cell, remedy, i))
    return val, test, values


def _configuration_values(grid: MapGrid, cell: Cell, remedy_name: str, index: int) -> dict[str, Any]:
    """What configuration ``index`` of a remedy is, in words a reader can use (loss options, stop fraction, or the
    assistant's size)."""
    remedy = next(r for r in REMEDIES if r.name == remedy_name)
    if remedy.losses:
        return dict(remedy.losses[index])
    if remedy.stop_fractions:
        return {"stop_fraction": remedy.stop_fractions[index]}
    return {"assistant": intermediate_teachers(family_of(grid, cell.dataset, cell.family))[index].label}


def _ce(grid: MapGrid, index: dict[tuple, Any], cell: Cell) -> dict[str, Any]:
    test = {r: index[run_key({"role": "ce", "dataset": cell.dataset, "family": cell.family,
                              "label_size": cell.label_size, "student": cell.student, "seed": r})].test_accuracy
            for r in grid.student_seeds}
    values = list(test.values())
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)) ** 0.5
    return {"mean": mean, "std": std, "n": len(values), "test_by_seed": {str(r): v for r, v in test.items()}}


def preregistered_text(document: str) -> str:
    """The pre-registered part of the design document: everything before its first dated addendum (the addenda
    record what came later and never change the text above them)."""
    return document.split(ADDENDUM, 1)[0]


def _preregistration() -> dict[str, Any] | None:
    """The design document's text, the SHA-256 of its pre-registered part (:func:`preregistered_text`) and of the
    whole, when the study runs from a repository checkout (else None)."""
    path = Path(__file__).resolve().parents[3] / PREREGISTRATION
    if not path.is_file():
        return None
    text = path.read_text()
    return {"path": PREREGISTRATION, "sha256": hashlib.sha256(preregistered_text(text).encode()).hexdigest(),
            "document_sha256": hashlib.sha256(text.encode()).hexdigest(), "text": text}


def _grid_summary(grid: MapGrid, index: dict[tuple, Any]) -> dict[str, Any]:
    families = []
    for f in grid.families:
        def params(role_tags: dict[str, Any]) -> int:
            return index[run_key(role_tags)].summary["params"]
        teachers = [{"label": t.label, "model": dict(t.model), "params": params(
            {"role": "teacher", "dataset": f.dataset, "family": f.family, "teacher": t.label,
             "teacher_seed": grid.teacher_seeds[0]})} for t in f.teachers]
        students = [{"label": s.label, "model": dict(s.model), "params": params(
            {"role": "ce", "dataset": f.dataset, "family": f.family, "label_size": f.label_sizes[0],
             "student": s.label, "seed": grid.student_seeds[0]})} for s in f.students]
        families.append({"dataset": f.dataset, "family": f.family, "teachers": teachers, "students": students,
                         "label_sizes": list(f.label_sizes), "teacher_epochs": f.teacher_epochs,
                         "early_epoch": f.early_epoch, "student_epochs": f.student_epochs,
                         "teacher_lengths": list(f.teacher_lengths), "teacher_train_subset": f.teacher_train_subset,
                         "augment": dict(f.augment)})
    return {"name": grid.name, "datasets": {k: dict(v) for k, v in grid.datasets.items()}, "families": families,
            "teacher_seeds": list(grid.teacher_seeds), "student_seeds": list(grid.student_seeds),
            "temperatures": list(grid.temperatures), "kd_alpha": grid.kd_alpha, "optim": dict(grid.optim),
            "schedule": dict(grid.schedule), "batch_size": grid.batch_size, "threshold": grid.threshold,
            "alpha": grid.alpha, "correction": grid.correction, "remedy_max_cells": grid.remedy_max_cells,
            "remedy_max_cells_per_family": dict(grid.remedy_max_cells_per_family), "run_counts": run_counts(grid)}


def _core_seconds(runs: RunSet) -> dict[str, Any]:
    """Training core-seconds by role, from each run's own summary (so a resumed map still counts every run)."""
    out: dict[str, float] = {}
    for r in runs.runs:
        out[r.tags["role"]] = out.get(r.tags["role"], 0.0) + float(r.summary.get("seconds", 0.0))
    return {"by_role": out, "total": sum(out.values()), "runs": len(runs.runs)}


def analyse(cfg: CapacityMapConfig, runs: RunSet) -> dict[str, Any]:
    """Every cell's tables, gap and verdict; the family summary; the remedies' statistics and verdicts in the
    selected cells; every teacher's description; the budget actually spent."""
    grid = grid_of(cfg)
    index = {run_key(r.tags): r for r in runs.runs}
    cells, gaps = [], {}
    for cell in plan_cells(grid):
        gap, raw = _cell_gap(grid, cell, index)
        gaps[cell.key] = gap
        cells.append({"key": cell.key, "dataset": cell.dataset, "family": cell.family,
                      "teacher_length": cell.teacher_length, "label_size": cell.label_size, "student": cell.student,
                      "ce": _ce(grid, index, cell), "gap": gap, "tables": raw})
    decisions = decide_cells(gaps, grid.threshold, grid.alpha)
    for entry in cells:
        entry["verdict"] = decisions["verdicts"][entry["key"]]
    chosen = _remedy_choice(cfg, grid, gaps, decisions["verdicts"])
    remedies: dict[str, dict[str, Any]] = {}
    for cell in plan_cells(grid):
        if cell.key not in chosen["run"]:
            continue
        family = family_of(grid, cell.dataset, cell.family)
        gap = gaps[cell.key]
        best, largest = gap["best_teacher"], gap["largest_teacher"]
        kd = {t: _int_table(next(e for e in cells if e["key"] == cell.key)["tables"][t][
            str(gap["per_teacher"][t]["temperature"])]["test"]) for t in (best, largest)}
        tables = {}
        for remedy in (r for r in REMEDIES if r.name in cfg.remedies):
            configs = remedy.budget(len(family.teachers))
            if configs:  # TAKD without an intermediate teacher size has nothing to try
                tables[remedy.name] = _remedy_tables(grid, index, cell, remedy.name, configs)
        control = None
        if "ats_symmetric" in tables:
            val, test, values = tables["ats_symmetric"]
            control = test[choose_configuration(val, values)]
        remedies[cell.key] = {}
        for name, (val, test, values) in tables.items():
            stats = remedy_statistics(val, test, values, kd[largest], kd[best], best == largest,
                                      control if name == "ats" else None)
            stats["tables"] = [{"val": _json_table(v), "test": _json_table(t)} for v, t in zip(val, test)]
            stats["configurations"] = values
            remedies[cell.key][name] = stats
    remedy_decisions = decide_remedies(remedies, grid.threshold, grid.alpha)
    assistants = [{**{k: r.tags[k] for k in ("dataset", "family", "length", "assistant", "teacher_seed")},
                   "test_accuracy": r.test_accuracy, "val_accuracy": r.val_accuracy, "run_dir": r.run_dir}
                  for r in runs.select(role="assistant")]
    teacher_runs = {(r.tags["dataset"], r.tags["family"], r.tags["teacher"], r.tags["teacher_seed"]): r.run_dir
                    for r in runs.select(role="teacher")}
    return {
        "dataset": ", ".join(grid.datasets),
        "config": cfg.model_dump(mode="json"),
        "grid": _grid_summary(grid, index),
        "preregistration": _preregistration(),
        "cells": cells,
        "family": decisions["family"],
        "remedy_cells": {**chosen, "rule": cfg.remedy_cells},
        "remedies": remedies,
        "remedy_family": {k: (v["family"] if v else None) for k, v in remedy_decisions.items()},
        "remedy_verdicts": {k: (v["verdicts"] if v else {}) for k, v in remedy_decisions.items()},
        "assistants": assistants,
        "teachers": profile_teachers(grid, teacher_runs),
        "budget": {"core_seconds": _core_seconds(runs), "load_average_at_end": list(os.getloadavg())},
    }


# ---------------------------------------------------------------------------------------------------- claims

CELL_STATISTIC = ("G = the test accuracy of the KD students of the best teacher B minus that of the largest teacher "
                  "L, mean over teacher and student seeds (points), each teacher at its KD temperature chosen on "
                  "validation; variance-components interval adjusted for the map's cells by Benjamini-Hochberg")
BH_INTERVAL = "BH-adjusted interval"


def _cell(results: dict[str, Any], key: str) -> dict[str, Any]:
    return next(c for c in results["cells"] if c["key"] == key)


def _points(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:+.2f}"


def _cell_measure(key: str):
    def measure(results: dict[str, Any]) -> Measurement | NotApplicable:
        cell = _cell(results, key)
        gap, verdict = cell["gap"], cell["verdict"]
        per = gap["per_teacher"]
        best, largest = gap["best_teacher"], gap["largest_teacher"]
        selections = {"best teacher B": best, f"KD temperature of {best}": per[best]["temperature"],
                      f"KD temperature of {largest}": per[largest]["temperature"]}
        if gap["reason"] is not None:
            return NotApplicable(gap["reason"], selections=selections, selected_on=VALIDATION)
        adjusted = verdict["adjusted_interval"]
        p, bh, holm = verdict["p_values"], verdict["bh_p"], verdict["holm_p"]
        context = (f"B = {best} ({per[best]['test_accuracy'] * 100:.2f}%), L = {largest} "
                   f"({per[largest]['test_accuracy'] * 100:.2f}%) student test accuracy; marginal 95% interval "
                   f"[{_points(gap['low'])}, {_points(gap['high'])}], nu = {gap['dof']:.1f}; p_present "
                   f"{p['present']:.3g} (BH {bh['present']:.3g}, Holm {holm['present']:.3g}), p_absent "
                   f"{p['absent']:.3g} (BH {bh['absent']:.3g}, Holm {holm['absent']:.3g})")
        family = results["family"]
        kind = (f"BH-adjusted interval over {family['num_tested']} cells: lower bound at one-sided "
                f"{adjusted['lower_confidence'] * 100:.2f}%, upper at {adjusted['upper_confidence'] * 100:.2f}%")
        n = gap["teacher_seeds_a"] + (gap["teacher_seeds_b"] if best != largest else 0)
        return Measurement(gap["gap"], adjusted["low"], adjusted["high"], n, kind, context, selections, VALIDATION)
    return measure


def claims(cfg: CapacityMapConfig) -> list[Claim]:
    """One claim per cell of the declared grid: capacity mismatch is present there (G above delta after the
    correction over cells), absent (below), or undecided."""
    grid = grid_of(cfg)
    delta = Rule(">", grid.threshold, **POINTS).number(grid.threshold)
    return [Claim(f"mismatch|{cell.key}", f"capacity mismatch in {cell.key}: the best teacher's KD student beats the "
                  f"largest teacher's by more than {delta}", CELL_STATISTIC, Rule(">", grid.threshold, **POINTS),
                  _cell_measure(cell.key),
                  precondition="at least 2 teacher seeds of B and of L and 2 paired student seeds finished",
                  selection="each teacher's KD temperature and the best teacher B by " + VALIDATION,
                  source=CHO, interval=BH_INTERVAL)
            for cell in plan_cells(grid)]


REMEDY_TEXT = {GAIN: "{remedy} from the largest teacher beats its best KD in {cell}",
               CLOSES: "{remedy} from the largest teacher closes the gap in {cell} (within {delta} of the best "
                       "teacher's best KD)",
               ASYMMETRY: "the asymmetry helps in {cell}: ATS beats its symmetric control from the largest teacher"}


def _remedy_measure(cell: str, remedy: str, statistic: str):
    def measure(results: dict[str, Any]) -> Measurement | NotApplicable:
        found = results["remedies"].get(cell, {}).get(remedy)
        if found is None or statistic not in found:
            return NotApplicable(f"{remedy} has no configuration to try in {cell} (no intermediate teacher size)"
                                 if found is None else f"{statistic} needs ats and its symmetric control")
        interval = found[statistic]
        verdict = results["remedy_verdicts"][statistic][f"{cell}|{remedy}"]
        selections = {f"configuration of {remedy}": found["values"]}
        if interval["reason"] is not None:
            return NotApplicable(interval["reason"], selections=selections, selected_on=VALIDATION)
        adjusted = verdict["adjusted_interval"]
        family = results["remedy_family"][statistic]
        kind = (f"BH-adjusted interval over {family['num_tested']} (cell, remedy) pairs: lower bound at one-sided "
                f"{adjusted['lower_confidence'] * 100:.2f}%, upper at {adjusted['upper_confidence'] * 100:.2f}%")
        context = (f"{REMEDY_STATISTICS[statistic][1]}; marginal 95% interval [{_points(interval['low'])}, "
                   f"{_points(interval['high'])}]; remedy student test accuracy {found['test_accuracy'] * 100:.2f}%")
        return Measurement(interval["gap"], adjusted["low"], adjusted["high"], interval["teacher_seeds_a"], kind,
                           context, selections, VALIDATION)
    return measure


def remedy_claims(grid: MapGrid, cell: str, remedies: list[str]) -> list[Claim]:
    """The claims of the remedies in one selected cell: gain over KD from L (> 0), closes the gap (> -delta), and
    for ATS the asymmetry (> 0), each on its BH-adjusted interval over the (cell, remedy) pairs."""
    delta = Rule(">", grid.threshold, **POINTS).number(grid.threshold)
    out = []
    for remedy in remedies:
        for statistic, (multiple, compares) in REMEDY_STATISTICS.items():
            if statistic == ASYMMETRY and remedy != "ats":
                continue
            if statistic == ASYMMETRY and "ats_symmetric" not in remedies:
                continue
            out.append(Claim(f"{statistic}|{cell}|{remedy}",
                             REMEDY_TEXT[statistic].format(remedy=remedy, cell=cell, delta=delta),
                             f"{compares}, student test accuracy, mean over teacher and student seeds (points)",
                             Rule(">", multiple * grid.threshold, **POINTS), _remedy_measure(cell, remedy, statistic),
                             selection=f"the remedy's configuration (of 3) and every KD temperature by {VALIDATION}",
                             source=next(r.paper for r in REMEDIES if r.name == remedy), interval=BH_INTERVAL))
    return out


def selected_claims(cfg: CapacityMapConfig, results: dict[str, Any]) -> list[Claim]:
    """The remedies' claims in the cells the declared rule sent them to (none when no cell has mismatch)."""
    grid = grid_of(cfg)
    return [c for cell in results["remedy_cells"]["run"] for c in remedy_claims(grid, cell, cfg.remedies)]


def check(cfg: CapacityMapConfig, planned: list[Planned]) -> None:
    """The full grid meets the issue's minimums (>= 5 teacher sizes over >= 100x, ...); a declared remedy option
    that a loss does not accept fails here, through the previews, before anything trains."""
    grid = grid_of(cfg)
    if grid.name == "full":
        check_grid(grid)
    if not planned:
        raise ConfigError(f"grid {grid.name!r} plans no run")


CAPACITY_MAP = STUDIES.register("capacity-map")(Study(
    name="capacity-map", config=CapacityMapConfig, defaults=DEFAULTS, presets=PRESETS_CONFIG, plan=plan,
    analyse=analyse, claims=claims, report=report, check=check, description=__doc__.splitlines()[0],
    selected_claims=selected_claims))
