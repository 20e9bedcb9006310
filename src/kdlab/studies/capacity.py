"""Capacity study: does a bigger teacher teach worse, why, and does asymmetric temperature scaling fix it?

Claims under test, from Fan, Li, Zhan, "Exploring Dark Knowledge under Various Teacher Capacities and Addressing
Capacity Mismatch" (arXiv 2405.13078; Front. Comput. Sci. 2026) and Li et al., "Asymmetric Temperature Scaling
Makes Larger Networks Teach Well Again" (NeurIPS 2022):

1. a larger teacher's non-ground-truth probabilities are less distinct (derived std falls with capacity);
2. teachers of different capacity agree on relative class affinity;
3. capacity mismatch: a larger, more accurate teacher can teach the same student worse than a smaller one;
4. ATS (and ISATS) fix it for large teachers (and the asymmetry is what helps);
5. a remedy from the literature closes the gap.

Plan: the teacher family, each capacity with every teacher seed; equal-budget tuning (``tuning``, on by default;
:mod:`kdlab.studies.capacity_tuning`): every method's trials over its declared space on tuning seeds, each method's
configuration chosen by mean validation accuracy; then the CE student per evaluation seed and every method's chosen
configuration from every teacher per evaluation seed (paired: same initial weights and batch order), taught by the
teachers of the first teacher seed. Analysis: each teacher's dark knowledge and affinity on the students' training
inputs, then the tables. Every choice (each method's configuration, the most accurate and the best-teaching teacher,
the best remedy) is made on validation accuracy; test accuracy is read only for the chosen comparisons. Claims 1 and
2 get their intervals from a bootstrap over teacher seeds. Rules: declared below, generated into
docs/studies/capacity.md.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator

from ..analysis import consistency_matrix, spearman_correlation
from ..analysis.profile import profile_model, teacher_report_fields
from ..analysis.stats import bootstrap_over_groups, mean_std, paired_by_seed
from ..analysis.verdict import Claim, Measurement, NotApplicable, Rule, decide, paired_measurement
from ..config import Component, DataConfig, Section, Seed, TeacherConfig
from ..data import load_dataset
from ..errors import ConfigError
from ..distill import load_teacher
from ..report import Report
from ..report.format import format_interval, format_params, format_pm, model_name
from ..store import RunStore
from .base import STUDIES
from .capacity_tuning import (ASSISTANT, TuningConfig, check_budget, final_values, method_loss, select_configs,
                              trial_points, tuned_teachers, tuning_records, values_text)
from .common import StageConfig, stage_run_config
from .driver import Planned, RunSet, Study, StudyConfig, Wave

PLAIN_KD_OPTIONS = {"temperature", "alpha"}


class Method(Section):
    """A distillation method of the study: a label for tables, the loss it trains with, and how it uses the teacher.

    ``role``: ``kd`` (vanilla KD: loss ``kd`` with at most temperature and alpha; the baseline every remedy is
    compared with), ``control`` (a control such as symmetric ATS) or ``remedy`` (inferred: vanilla KD is ``kd``,
    everything else a remedy, including KD with logit standardisation).
    ``teacher_epoch`` (ESKD): distil from the teacher as it was after that epoch (must be in teachers.keep_epochs).
    ``stop_fraction`` (ESKD): drop the teacher after that fraction of the student's epochs (plain CE afterwards;
    0.5 is epoch 15 of 30, as of 240 it is 120: ``TeacherConfig.kd_stop_epoch``).
    ``assistant`` (TAKD): distil through a teacher assistant, a smaller family member trained by this loss (as
    declared) from the teacher on the teachers' data; which one is a tuned hyperparameter (``assistant``).
    ``control_space``: tune over the loss's named control space instead of its own (``symmetric`` for the
    symmetric-ATS control: ATS's values with tau_gt = tau_other).
    """

    label: str
    loss: Component
    role: Literal["kd", "control", "remedy"] | None = None
    teacher_epoch: int | None = Field(None, ge=1)
    stop_fraction: float | None = Field(None, ge=0, le=1)
    assistant: bool = False
    control_space: str | None = None

    @model_validator(mode="after")
    def _infer_role(self) -> "Method":
        plain = (self.loss.name == "kd" and set(self.loss.options) <= PLAIN_KD_OPTIONS
                 and not (self.teacher_epoch or self.stop_fraction is not None or self.assistant))
        if self.role is None:
            self.role = "kd" if plain else "remedy"
        elif self.role == "kd" and not plain:
            raise ValueError(f"role='kd' is not allowed for method '{self.label}': it is for vanilla KD (loss kd with "
                             "only temperature and alpha, no teacher_epoch, stop_fraction or assistant); allowed: "
                             "control, remedy")
        return self


class TeacherFamily(StageConfig):
    """A teacher recipe plus the capacities to sweep: each entry's keys override the base model's options."""

    capacities: list[dict[str, Any]] = Field(min_length=2)


class CapacityStudyConfig(StudyConfig):
    """The capacity study's config: teacher family and seeds, student, methods, temperatures and margins."""
    data: DataConfig = Field(default_factory=DataConfig)
    teachers: TeacherFamily
    student: StageConfig
    methods: list[Method] = Field(min_length=1)
    # evaluation seeds: the chosen configurations are trained and tested on these
    seeds: list[Seed] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    # every capacity is trained with each teacher seed (the spread behind claims 1 and 2); the first one teaches
    teacher_seeds: list[Seed] = Field(default_factory=lambda: [0, 1], min_length=1)
    # equal-budget tuning of every method on validation before the comparison (on by default)
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    temperatures: list[float] = Field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0], min_length=1)
    claim_temperature: float = 4.0
    # claim 5: "closes the gap" = the remedy's interval against the best KD student lies above -match_margin
    match_margin: float = Field(0.005, gt=0, lt=1)
    num_bootstrap: int = Field(2000, ge=100)

    @field_validator("methods")
    @classmethod
    def _unique_labels(cls, methods: list[Method]) -> list[Method]:
        labels = [m.label for m in methods]
        if len(set(labels)) != len(labels) or "ce" in labels:
            raise ValueError(f"method labels must be unique and not 'ce' (the CE student is always trained): {labels}")
        return methods

    @field_validator("teacher_seeds", "seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds

    @model_validator(mode="after")
    def _early_epochs_are_kept(self) -> "CapacityStudyConfig":
        for m in self.methods:
            if m.teacher_epoch is not None and m.teacher_epoch not in self.teachers.keep_epochs:
                raise ValueError(f"methods[{m.label}].teacher_epoch={m.teacher_epoch} is not in teachers.keep_epochs="
                                 f"{self.teachers.keep_epochs}; add it there so the teachers keep that checkpoint")
            if m.teacher_epoch is not None and m.teacher_epoch > self.teachers.epochs:
                raise ValueError(f"methods[{m.label}].teacher_epoch={m.teacher_epoch} exceeds teachers.epochs="
                                 f"{self.teachers.epochs}")
        return self

    @model_validator(mode="after")
    def _fair_tuning(self) -> "CapacityStudyConfig":
        reused = sorted(set(self.tuning.seeds) & set(self.seeds))
        if reused:
            raise ValueError(f"tuning.seeds={self.tuning.seeds} is not allowed: {reused} also in seeds={self.seeds}; "
                             "the chosen configurations are tested on seeds the selection never saw")
        try:
            check_budget(self)
        except ConfigError as exc:  # an unknown loss or control space: say which method
            raise ValueError(str(exc)) from None
        return self


ATS_DEFAULT = {"tau_gt": 4.0, "tau_other": 2.0, "tau_student": 1.0, "alpha": 0.5}

DEFAULTS: dict[str, Any] = {
    "data": {"name": "fashion_mnist", "val_size": 5000, "seed": 0},
    # MLP teachers, 2 hidden layers, 32 -> 1024 wide (26.5k -> 1.86M params, 70.3x), on all 55k training images.
    "teachers": {"model": {"name": "mlp", "depth": 2}, "epochs": 8, "batch_size": 128, "keep_epochs": [2],
                 "optim": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "cosine"},
                 "capacities": [{"width": 32}, {"width": 128}, {"width": 512}, {"width": 1024}]},
    # A 1-hidden-layer MLP student that sees only 2,000 labelled images: the regime where soft labels matter.
    "student": {"model": {"name": "mlp", "width": 128, "depth": 1}, "epochs": 30, "batch_size": 128,
                "checkpoint_every": 10,
                "train_subset": 2000, "optim": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "cosine"}},
    "methods": [
        # each method declared at its paper's defaults (see the loss docstrings) and tuned over its loss's space
        {"label": "kd", "loss": {"name": "kd", "temperature": 4.0, "alpha": 0.9}},
        {"label": "ats", "loss": {"name": "ats", **ATS_DEFAULT}},
        # the symmetric control: ATS's loss form, tuned over ATS's values with tau_gt = tau_other
        {"label": "ats_symmetric", "role": "control", "control_space": "symmetric",
         "loss": {"name": "ats", **{**ATS_DEFAULT, "tau_gt": ATS_DEFAULT["tau_other"]}}},
        {"label": "isats", "loss": {"name": "isats", "tau_gt": 4.0, "tau_student": 1.0, "alpha": 0.5}},
        {"label": "dkd", "loss": {"name": "dkd"}},
        {"label": "dist", "loss": {"name": "dist"}},
        {"label": "logit_std", "loss": {"name": "logit_std"}},
        {"label": "kd_std", "loss": {"name": "kd", "temperature": 4.0, "alpha": 0.9, "standardize": True}},
        {"label": "ctkd", "loss": {"name": "ctkd"}},
        {"label": "takd", "assistant": True, "loss": {"name": "kd", "temperature": 4.0, "alpha": 0.9}},
        {"label": "eskd", "teacher_epoch": 2, "loss": {"name": "kd", "temperature": 4.0, "alpha": 0.9}},
    ],
    "seeds": [0, 1, 2],
    "teacher_seeds": [0, 1],
    # 4 trials per method (on the largest teacher; KD on every teacher) on one tuning seed: about 8 minutes of both
    # cores for `make run` (docs/studies/capacity.md, "Tuning", budget)
    "tuning": {"trials": 4, "seeds": [100]},
}

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "data": {"val_size": 1000},
        "teachers": {"epochs": 2, "train_subset": 5000, "capacities": [{"width": 16}, {"width": 64}, {"width": 256},
                                                                       {"width": 512}]},
        "student": {"epochs": 3, "train_subset": 500, "model": {"name": "mlp", "width": 32, "depth": 1}},
        "seeds": [0],
        "teacher_seeds": [0],
        "tuning": {"trials": 2},
    },
    "cnn": {
        "teachers": {"model": {"name": "cnn", "depth": 2}, "epochs": 4, "hflip": True,
                     "capacities": [{"width": 0.125}, {"width": 0.25}, {"width": 0.5}, {"width": 1.0}]},
    },
}


def teacher_family_configs(teachers: TeacherFamily, data: DataConfig, seed: int) -> list:
    """The RunConfig of every teacher of the family with this seed, in capacity order.

    The one definition shared by every study that reuses the capacity study's teachers (their run-store keys must
    match exactly).
    """
    return [stage_run_config(teachers, data, seed, model=Component(**{**teachers.model.as_dict(), **capacity}))
            for capacity in teachers.capacities]


# ---------------------------------------------------------------------------------------------------- plan


def plan(cfg: CapacityStudyConfig, store: RunStore) -> list[Wave]:
    """Teachers (every capacity x teacher seed); the tuning trials (and the TAKD assistants they need); then, built
    from the choice on validation, the assistants of the chosen TAKD configurations and the students: CE and every
    method's chosen configuration from every teacher, per evaluation seed."""
    family = {seed: teacher_family_configs(cfg.teachers, cfg.data, seed) for seed in cfg.teacher_seeds}
    teaching = family[cfg.teacher_seeds[0]]
    teachers = [Planned({"role": "teacher", "teacher": ti, "teacher_seed": seed}, run)
                for seed, runs in family.items() for ti, run in enumerate(runs)]

    def assistant(m: Method, ti: int, ai: int) -> Planned:
        # TAKD: a smaller family member distilled from this teacher (teachers' recipe and data) by the declared loss
        return Planned({"role": "assistant", "method": m.label, "teacher": ti, "assistant": ai},
                       stage_run_config(cfg.teachers, cfg.data, cfg.teacher_seeds[0], loss=m.loss,
                                        teacher_run=store.path(teaching[ti]), model=teaching[ai].model,
                                        keep_epochs=[]))

    def student(m: Method, ti: int, values: dict[str, Any], seed: int, tags: dict[str, Any]) -> Planned:
        source = teaching[ti]
        if m.assistant:
            tags = {**tags, "assistant": values[ASSISTANT]}
            source = assistant(m, ti, values[ASSISTANT]).job
        return Planned({**tags, "method": m.label, "teacher": ti, "seed": seed},
                       stage_run_config(cfg.student, cfg.data, seed, loss=method_loss(m, values),
                                        teacher_run=store.path(source), teacher_epoch=m.teacher_epoch,
                                        teacher_stop_fraction=m.stop_fraction))

    tuning_assistants = [assistant(m, ti, ai) for m in cfg.methods if m.assistant for ti in tuned_teachers(cfg, m)
                         for ai in range(ti)]
    trials = [student(m, ti, point, seed, {"role": "trial", "trial": k})
              for m in cfg.methods for ti in tuned_teachers(cfg, m)
              for k, point in enumerate(trial_points(cfg, m, ti)) for seed in cfg.tuning.seeds]

    def chosen(runs: RunSet) -> list[tuple[Method, int, dict[str, Any]]]:
        selections = select_configs(cfg, runs)
        return [(m, ti, found[0]) for m in cfg.methods for ti in range(len(teaching))
                if (found := final_values(cfg, selections, m, ti)) is not None]

    def final_assistants(runs: RunSet) -> list[Planned]:
        trained = {(r.tags["method"], r.tags["teacher"], r.tags["assistant"]) for r in runs.select(role="assistant")}
        needed = {(m.label, ti, values[ASSISTANT]): m for m, ti, values in chosen(runs) if m.assistant}
        return [assistant(m, ti, ai) for (label, ti, ai), m in needed.items() if (label, ti, ai) not in trained]

    def students(runs: RunSet) -> list[Planned]:
        ce = [Planned({"role": "student", "method": "ce", "seed": seed}, stage_run_config(cfg.student, cfg.data, seed))
              for seed in cfg.seeds]
        return ce + [student(m, ti, values, seed, {"role": "student"}) for m, ti, values in chosen(runs)
                     for seed in cfg.seeds]

    # the final students' configs at the declared values, validated with the static runs before anything trains
    preview = [student(m, len(teaching) - 1, {ASSISTANT: len(teaching) - 2} if m.assistant else {}, cfg.seeds[0],
                       {"role": "student"}) for m in cfg.methods]
    return [Wave("teachers", teachers), Wave("TAKD assistants (tuning)", tuning_assistants),
            Wave("tuning trials", trials), Wave("TAKD assistants", build=final_assistants),
            Wave("students", build=students, preview=preview)]


# ---------------------------------------------------------------------------------------------------- analysis


def _profile(cfg: CapacityStudyConfig, runs: RunSet) -> dict[tuple[int, int], dict[str, Any]]:
    """Dark knowledge and affinity of every teacher (capacity x teacher seed) on the students' training inputs (what
    is distilled) and on test."""
    d = cfg.data
    data = load_dataset(d.name, data_dir=d.data_dir, val_size=d.val_size, seed=d.seed,
                        train_subset=cfg.student.train_subset, **d.options)
    out = {}
    for r in runs.select(role="teacher"):
        teacher = load_teacher(TeacherConfig(run=r.run_dir), data.num_classes, data.in_shape)
        distill, affinity = profile_model(teacher, data.train.x, data.train.y, data.num_classes, cfg.temperatures)
        test, _ = profile_model(teacher, data.test.x, data.test.y, data.num_classes, cfg.temperatures)
        out[r.tags["teacher"], r.tags["teacher_seed"]] = {"distill_set": distill, "test": test,
                                                          "affinity": affinity.tolist(),
                                                          "class_names": list(data.class_names)}
    return out


def analyse(cfg: CapacityStudyConfig, runs: RunSet) -> dict[str, Any]:
    """Teachers (with their dark knowledge per teacher seed), the tuning (every trial, the choices), students, the
    teacher x method table and the TAKD assistants."""
    profiles = _profile(cfg, runs)
    first = cfg.teacher_seeds[0]
    names = []
    teachers = []
    for ti in range(len(cfg.teachers.capacities)):
        teaching = runs.one(role="teacher", teacher=ti, teacher_seed=first)
        name = model_name(teaching.job.model.as_dict(), teaching.summary["params"])
        names.append(name)
        seeds = []
        for seed in cfg.teacher_seeds:
            r = runs.one(role="teacher", teacher=ti, teacher_seed=seed)
            p = profiles[ti, seed]
            seeds.append({"seed": seed, "test_accuracy": r.test_accuracy, "val_accuracy": r.val_accuracy,
                          **teacher_report_fields(p["distill_set"], p["test"]), "affinity": p["affinity"],
                          "run_dir": r.run_dir})
        p = profiles[ti, first]
        teachers.append({"label": f"T{ti + 1}", "name": name, "model": teaching.job.model.as_dict(),
                         "params": teaching.summary["params"], "test_accuracy": teaching.test_accuracy,
                         "val_accuracy": teaching.val_accuracy,
                         **teacher_report_fields(p["distill_set"], p["test"]), "test_metrics": p["test"],
                         "affinity": p["affinity"], "run_dir": teaching.run_dir, "seeds": seeds})
    students = []
    for r in runs.select(role="student"):
        ti = r.tags.get("teacher")
        record = {"teacher": None if ti is None else names[ti], "method": r.tags["method"],
                  "hyperparams": r.job.loss.as_dict(), "seed": r.tags["seed"], "test_accuracy": r.test_accuracy,
                  "val_accuracy": r.val_accuracy, "run_dir": r.run_dir}
        if "assistant" in r.tags:
            record["assistant"] = names[r.tags["assistant"]]
        students.append(record)
    selections = select_configs(cfg, runs)
    ce_test = runs.by_seed("test_accuracy", role="student", method="ce")
    table: dict[str, dict[str, Any]] = {}
    used: set[tuple[str, int, int]] = set()
    for ti, name in enumerate(names):
        table[name] = {}
        for m in cfg.methods:
            final = final_values(cfg, selections, m, ti)
            if final is None:
                continue  # TAKD has no assistant below the smallest teacher
            values, tuned_on = final
            if m.assistant:
                used.add((m.label, ti, values[ASSISTANT]))
            tags = {"role": "student", "method": m.label, "teacher": ti}
            test, val = runs.by_seed("test_accuracy", **tags), runs.by_seed("val_accuracy", **tags)
            table[name][m.label] = {"test_accuracy": mean_std(list(test.values())),
                                    "val_accuracy": mean_std(list(val.values())),
                                    "minus_ce": paired_by_seed(test, ce_test),
                                    "test_by_seed": {str(s): v for s, v in test.items()},
                                    "values": values, "tuned_on": None if tuned_on is None else names[tuned_on]}
    assistants = [{"teacher": names[r.tags["teacher"]], "assistant": names[r.tags["assistant"]],
                   "method": r.tags["method"], "test_accuracy": r.test_accuracy, "val_accuracy": r.val_accuracy,
                   "used": (r.tags["method"], r.tags["teacher"], r.tags["assistant"]) in used,
                   "run_dir": r.run_dir} for r in runs.select(role="assistant")]
    results = {
        "dataset": cfg.data.name,
        "config": cfg.model_dump(mode="json"),
        "teachers": teachers,
        "students": students,
        "assistants": assistants,
        "ce_student": mean_std(list(ce_test.values())),
        "ce_test_by_seed": {str(s): v for s, v in ce_test.items()},
        "table": table,
        "tuning": {**cfg.tuning.model_dump(mode="json"), "selected_on": "validation",
                   "trial_runs": len(runs.select(role="trial")),
                   "methods": tuning_records(cfg, selections, names, table)},
        "class_names": profiles[0, first]["class_names"],
    }
    results["best_method_per_teacher"] = best_methods(results)
    return results


# ---------------------------------------------------------------------------------------------------- selection

VALIDATION = "validation accuracy (mean over seeds)"


def _labels(results: dict[str, Any], role: str) -> list[str]:
    return [m["label"] for m in results["config"]["methods"] if m["role"] == role]


def best_on_validation(results: dict[str, Any], teacher: str, labels: list[str]) -> str | None:
    """Of ``labels``, the method whose students from ``teacher`` have the best mean validation accuracy."""
    row = results["table"][teacher]
    present = [m for m in labels if m in row]
    return max(present, key=lambda m: row[m]["val_accuracy"]["mean"]) if present else None


def best_kd(results: dict[str, Any], teacher: str) -> str | None:
    """The teacher's best vanilla-KD method (its temperature chosen on validation)."""
    return best_on_validation(results, teacher, _labels(results, "kd"))


def best_kd_teacher(results: dict[str, Any], among: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The teacher (of ``among``, default all) whose best KD student has the best mean validation accuracy."""
    scored = [(t, best_kd(results, t["name"])) for t in (among if among is not None else results["teachers"])]
    scored = [(t, kd) for t, kd in scored if kd is not None]
    if not scored:
        return None
    return max(scored, key=lambda tk: results["table"][tk[0]["name"]][tk[1]]["val_accuracy"]["mean"])[0]


def _test(results: dict[str, Any], teacher: str, method: str) -> dict[str, float]:
    return results["table"][teacher][method]["test_by_seed"]


def _val(results: dict[str, Any], teacher: str, method: str) -> float:
    return results["table"][teacher][method]["val_accuracy"]["mean"]


def best_methods(results: dict[str, Any]) -> dict[str, Any]:
    """Per teacher: the method with the best mean validation accuracy and its paired test gain over that teacher's
    best KD (both chosen on validation)."""
    out = {}
    for t in results["teachers"]:
        row = results["table"][t["name"]]
        if not row:
            continue
        best = max(row, key=lambda m: row[m]["val_accuracy"]["mean"])
        kd = best_kd(results, t["name"])
        gain = paired_by_seed(_test(results, t["name"], best), _test(results, t["name"], kd)) if kd else None
        out[t["name"]] = {"method": best, "val_accuracy": row[best]["val_accuracy"],
                          "test_accuracy": row[best]["test_accuracy"], "best_kd": kd, "minus_best_kd": gain}
    return out


# ---------------------------------------------------------------------------------------------------- claims

POINTS = {"unit": "points", "scale": 100.0}
FAN = "Fan, Li, Zhan, Front. Comput. Sci. 2026"
LI_ATS = "Li et al., NeurIPS 2022"


def _group_bootstrap(results: dict[str, Any], statistic, values_of) -> dict[str, Any]:
    cfg = results["config"]
    groups = [[values_of(s) for s in t["seeds"]] for t in results["teachers"]]
    return bootstrap_over_groups(groups, statistic, num_bootstrap=cfg["num_bootstrap"], seed=0)


def _derived_std_trend(results: dict[str, Any]) -> Measurement:
    key = str(float(results["config"]["claim_temperature"]))
    params = [t["params"] for t in results["teachers"]]

    def rho(groups: list[list[float]]) -> float:
        return spearman_correlation(params, [sum(g) / len(g) for g in groups])

    out = _group_bootstrap(results, rho, lambda s: s["derived_std"][key])
    means = [sum(s["derived_std"][key] for s in t["seeds"]) / len(t["seeds"]) for t in results["teachers"]]
    return Measurement(out["estimate"], out["low"], out["high"], out["n"],
                       "95% bootstrap over teacher seeds within each capacity",
                       f"derived std at tau = {results['config']['claim_temperature']:g} (mean over teacher seeds): "
                       + ", ".join(f"{t['label']} {m:.4f}" for t, m in zip(results["teachers"], means)))


def _affinity_agreement(results: dict[str, Any]) -> Measurement:
    def min_spearman(groups: list[list[Any]]) -> float:
        mean = [torch.tensor(g, dtype=torch.float64).mean(0) for g in groups]
        m = consistency_matrix(mean, stat="spearman")
        off = m[~torch.eye(len(mean), dtype=torch.bool)]
        return float(off.min()) if off.numel() else math.nan

    out = _group_bootstrap(results, min_spearman, lambda s: s["affinity"])
    return Measurement(out["estimate"], out["low"], out["high"], out["n"],
                       "95% bootstrap over teacher seeds within each capacity",
                       f"minimum over {len(results['teachers'])} teachers' pairs of the Spearman correlation of their "
                       "off-diagonal affinity entries (affinity averaged over teacher seeds)")


def _capacity_mismatch(results: dict[str, Any]) -> Measurement | NotApplicable:
    teachers = results["teachers"]
    accurate = max(teachers, key=lambda t: t["val_accuracy"])
    smaller = [t for t in teachers if t["params"] < accurate["params"]]
    best_small = best_kd_teacher(results, smaller)
    kd_big = best_kd(results, accurate["name"])
    if best_small is None or kd_big is None:
        return NotApplicable(f"the most accurate teacher on validation, {accurate['label']} {accurate['name']}, is "
                             "the smallest: there is no smaller teacher to compare with",
                             selections={"most accurate teacher": accurate["label"]}, selected_on=VALIDATION)
    kd_small = best_kd(results, best_small["name"])
    diff = paired_by_seed(_test(results, accurate["name"], kd_big), _test(results, best_small["name"], kd_small))
    return paired_measurement(
        diff, f"most accurate teacher {accurate['label']} ({accurate['val_accuracy'] * 100:.2f}% val, "
              f"{accurate['test_accuracy'] * 100:.2f}% test) with {kd_big}: "
              f"{results['table'][accurate['name']][kd_big]['test_accuracy']['mean'] * 100:.2f}%; best smaller "
              f"teacher {best_small['label']} with {kd_small}: "
              f"{results['table'][best_small['name']][kd_small]['test_accuracy']['mean'] * 100:.2f}% (student test "
              "accuracy)",
        {"most accurate teacher": accurate["label"], f"best KD of {accurate['label']}": kd_big,
         "best smaller teacher": best_small["label"], f"best KD of {best_small['label']}": kd_small}, VALIDATION)


def _largest(results: dict[str, Any]) -> dict[str, Any]:
    return max(results["teachers"], key=lambda t: t["params"])


def _ats_vs(other: str):
    def measure(results: dict[str, Any]) -> Measurement | NotApplicable:
        largest = _largest(results)
        row = results["table"][largest["name"]]
        reference = best_kd(results, largest["name"]) if other == "best KD" else other
        if "ats" not in row or reference is None or reference not in row:
            return NotApplicable(f"ats or {other} was not trained from the largest teacher")
        diff = paired_by_seed(_test(results, largest["name"], "ats"), _test(results, largest["name"], reference))
        context = f"largest teacher {largest['label']} {largest['name']}"
        if other == "best KD" and "isats" in row:
            isats = paired_by_seed(_test(results, largest["name"], "isats"), _test(results, largest["name"],
                                                                                     reference))
            context += f"; ISATS - {reference} = {format_interval(isats)} points"
        ce = paired_by_seed(_test(results, largest["name"], "ats"), results["ce_test_by_seed"])
        context += f"; ATS - CE = {format_interval(ce)} points"
        selections = {f"best KD of {largest['label']}": reference} if other == "best KD" else {}
        return paired_measurement(diff, context, selections, VALIDATION if selections else None)
    return measure


def _gap(results: dict[str, Any]) -> tuple[dict[str, Any], str, dict[str, Any], str, dict[str, Any]] | None:
    """(largest teacher, its best KD, best teacher overall, its best KD, largest minus overall), all chosen on
    validation; None without KD methods."""
    largest = _largest(results)
    best = best_kd_teacher(results)
    kd_largest = best_kd(results, largest["name"])
    if best is None or kd_largest is None:
        return None
    kd_best = best_kd(results, best["name"])
    diff = paired_by_seed(_test(results, largest["name"], kd_largest), _test(results, best["name"], kd_best))
    return largest, kd_largest, best, kd_best, diff


def _remedy_closes_gap(results: dict[str, Any]) -> Measurement | NotApplicable:
    gap = _gap(results)
    if gap is None:
        return NotApplicable("no vanilla-KD method in this configuration")
    largest, kd_largest, best, kd_best, diff = gap
    selections = {"best KD teacher": best["label"], f"best KD of {best['label']}": kd_best,
                  f"best KD of {largest['label']}": kd_largest}
    if decide(Rule("<", 0.0), diff["low"], diff["high"]) is not True:
        return NotApplicable(f"no capacity-mismatch gap: the largest teacher's best KD student ({largest['label']}, "
                             f"{kd_largest}) is not reliably worse than the best KD student ({best['label']}, "
                             f"{kd_best}): {format_interval(diff)} points", selections=selections,
                             selected_on=VALIDATION)
    remedy = best_on_validation(results, largest["name"], _labels(results, "remedy"))
    if remedy is None:
        return NotApplicable("no remedy was trained from the largest teacher", selections=selections,
                             selected_on=VALIDATION)
    closes = paired_by_seed(_test(results, largest["name"], remedy), _test(results, best["name"], kd_best))
    return paired_measurement(closes, f"gap: {largest['label']} {kd_largest} - {best['label']} {kd_best} = "
                                      f"{format_interval(diff)} points; remedies from {largest['label']} on "
                                      "validation: " + ", ".join(
                                          f"{m} {_val(results, largest['name'], m) * 100:.2f}%"
                                          for m in _labels(results, "remedy") if m in results["table"][
                                              largest["name"]]),
                              {**selections, f"best remedy of {largest['label']}": remedy}, VALIDATION)


def claims(cfg: CapacityStudyConfig) -> list[Claim]:
    """The six claims of the capacity study (Fan et al. 2026; Li et al. 2022)."""
    gap = ("a capacity-mismatch gap exists: the largest teacher's best KD student is reliably worse than the best KD "
           "student of any teacher (its paired interval lies below 0)")
    return [
        Claim("derived_std_falls", "a larger teacher produces less distinct non-ground-truth probabilities",
              f"Spearman correlation of teacher parameters with the derived std of the non-ground-truth probabilities "
              f"at tau = {cfg.claim_temperature:g} on the students' training inputs", Rule("<=", -0.8),
              _derived_std_trend, source=FAN),
        Claim("affinity_agrees", "teachers of different capacity agree on relative class affinity",
              "minimum over pairs of teachers of the Spearman correlation of their off-diagonal class-affinity "
              "entries", Rule(">=", 0.7), _affinity_agreement, source=FAN),
        Claim("capacity_mismatch", "capacity mismatch: a more accurate teacher can teach the same student worse than "
              "a smaller one", "best KD student of the most accurate teacher - best KD student of the best smaller "
              "teacher, student test accuracy, paired over seeds (points)", Rule("<", 0.0, **POINTS),
              _capacity_mismatch, precondition="the most accurate teacher is not the smallest",
              selection=f"the most accurate teacher (its own validation accuracy); each teacher's KD configuration "
                        f"(tuned on validation) and the best smaller teacher by the {VALIDATION} of their KD students",
              source=FAN),
        Claim("ats_beats_kd", "asymmetric temperature scaling makes the largest teacher teach better than its best KD",
              "ATS student - best KD student of the largest teacher, test accuracy, paired over seeds (points)",
              Rule(">", 0.0, **POINTS), _ats_vs("best KD"),
              selection="each method's configuration by its tuning on validation (equal budget)", source=LI_ATS),
        Claim("asymmetry_helps", "the asymmetry is what helps: ATS beats its symmetric control on the largest teacher",
              "ATS student - symmetric-ATS student (same loss form and alpha, tau_gt = tau_other) of the largest "
              "teacher, test accuracy, paired over seeds (points)", Rule(">", 0.0, **POINTS),
              _ats_vs("ats_symmetric"),
              selection="each method's configuration by its tuning on validation (equal budget)", source=LI_ATS),
        Claim("remedy_closes_gap", "a remedy closes the capacity-mismatch gap",
              "best remedy's student from the largest teacher - best KD student of any teacher, test accuracy, "
              "paired over seeds (points)", Rule(">", -cfg.match_margin, **POINTS), _remedy_closes_gap,
              precondition=gap, selection=f"every configuration by its tuning on validation; the best KD teacher and "
                                          f"the largest teacher's best remedy by {VALIDATION}",
              source="the remedies' papers (docs/studies/capacity.md)"),
    ]


# ---------------------------------------------------------------------------------------------------- report

ROLE_STYLE = {"kd": "o-", "control": "s--", "remedy": "^-"}


def _curve_panel(results: dict[str, Any], methods: list[str], title: str, extra: list[dict[str, Any]]) -> dict:
    teachers = results["teachers"]
    series = []
    for i, m in enumerate(methods):
        cells = [(t["params"], results["table"][t["name"]].get(m)) for t in teachers]
        cells = [(p, c["test_accuracy"]) for p, c in cells if c is not None]
        role = next(x["role"] for x in results["config"]["methods"] if x["label"] == m)
        series.append({"label": m, "x": [p for p, _ in cells], "y": [a["mean"] * 100 for _, a in cells],
                       "err": [a["std"] * 100 for _, a in cells], "style": ROLE_STYLE[role]})
    ce = results["ce_student"]
    return {"type": "lines", "title": title, "ylabel": "student test accuracy (%)", "xscale": "log",
            "xticks": [[t["params"] for t in teachers], [f"{t['label']}\n{format_params(t['params'])}"
                                                         for t in teachers]],
            "legend": "right", "series": series + extra,
            "hlines": [{"y": ce["mean"] * 100, "label": "CE only", "band": [(ce["mean"] - ce["std"]) * 100,
                                                                              (ce["mean"] + ce["std"]) * 100]}]}


def _capacity_figure(results: dict[str, Any]) -> dict[str, Any]:
    """KD and controls in one panel, the remedies (with each teacher's best KD for reference) in another, the
    teachers' own accuracy below."""
    teachers = results["teachers"]
    roles = {m["label"]: m["role"] for m in results["config"]["methods"]}
    kd_and_controls = [m for m, r in roles.items() if r in ("kd", "control")]
    remedies = [m for m, r in roles.items() if r == "remedy"]
    best = [(t["params"], best_kd(results, t["name"])) for t in teachers]
    reference = [{"label": "best KD (chosen on validation)", "x": [p for p, kd in best if kd],
                  "y": [results["table"][t["name"]][kd]["test_accuracy"]["mean"] * 100
                        for t, (_, kd) in zip(teachers, best) if kd], "style": ":", "color": "#222"}]
    params = [t["params"] for t in teachers]
    ticks = [params, [f"{t['label']}\n{format_params(t['params'])}" for t in teachers]]
    return {"title": "Capacity-mismatch curve: student accuracy by teacher (mean ± std over seeds)",
            "layout": [3, 1], "size": [9, 11], "panels": [
                _curve_panel(results, kd_and_controls, "vanilla KD and controls", []),
                _curve_panel(results, remedies, "remedies", reference),
                {"type": "lines", "xscale": "log", "xticks": ticks, "xlabel": "teacher parameters",
                 "ylabel": "teacher test acc (%)", "legend": "none",
                 "series": [{"x": params, "y": [t["test_accuracy"] * 100 for t in teachers], "style": "s-",
                             "color": "#444"}]}]}


def report(results: dict[str, Any]) -> Report:
    """The capacity report: claims, teachers, student tables, TAKD chains and the figures."""
    cfg = results["config"]
    teachers, table = results["teachers"], results["table"]
    st, tc = cfg["student"], cfg["teachers"]
    rep = Report(f"kdlab capacity study — {results['dataset']}")
    rep.paragraph(
        f"Teachers: {'; '.join(t['label'] + ' = ' + t['name'] for t in teachers)}; each trained {tc['epochs']} "
        f"epochs on {tc['train_subset'] or 'all'} training images with teacher seeds {cfg['teacher_seeds']} (the first "
        f"teaches; all give the spread of claims 1 and 2). Student: {model_name(st['model'])} trained "
        f"{st['epochs']} epochs on {st['train_subset'] or 'all'} labelled images (a subset of the teachers' training "
        f"data), seeds {cfg['seeds']}; for a given seed every method starts from the same initial weights and sees "
        "the same batches, so differences are paired. Dark-knowledge statistics are measured on the students' "
        "training inputs (what is distilled).")
    rep.claims_section(results)
    _tuning_section(rep, results)
    rep.heading("Teachers")
    rep.table(["", "teacher", "val acc (%)", "test acc (%)", "test acc over teacher seeds (%)",
               "train acc on distill set (%)", "derived std @4", "derived avg @4", "non-GT entropy @4",
               "inherent variance", "test ECE"],
              [[t["label"], t["name"], f"{t['val_accuracy'] * 100:.2f}", f"{t['test_accuracy'] * 100:.2f}",
                format_pm(mean_std([s["test_accuracy"] for s in t["seeds"]])),
                f"{t['train_accuracy_distill_set'] * 100:.2f}", f"{t['derived_std'].get('4.0', float('nan')):.4f}",
                f"{t['derived_average'].get('4.0', float('nan')):.4f}",
                f"{t['nongt_entropy'].get('4.0', float('nan')):.3f}", f"{t['inherent_variance']:.2f}",
                f"{t['ece']:.3f}"] for t in teachers])
    methods = [m["label"] for m in cfg["methods"]]
    labels = [t["label"] for t in teachers]
    rep.heading("Student accuracy (%), mean ± std over seeds")
    rep.paragraph(f"CE only (no teacher): {format_pm(results['ce_student'])}. Rows: methods (role in brackets) at "
                  "their tuned configurations; columns: teachers. Each cell: validation / test accuracy over the "
                  "evaluation seeds. Choices read the validation column.")
    rep.table(["method", *labels],
              [[f"{m['label']} ({m['role']})",
                *(f"{format_pm(table[t['name']][m['label']]['val_accuracy'])} / "
                  f"{format_pm(table[t['name']][m['label']]['test_accuracy'])}" if m["label"] in table[t["name"]]
                  else "—" for t in teachers)] for m in cfg["methods"]])
    rep.heading("Best method per teacher (chosen on validation)")
    rep.table(["teacher", "best method", "val acc (%)", "test acc (%)", "test gain over best KD (points, 95% CI)"],
              [[t["label"], b["method"], format_pm(b["val_accuracy"]), format_pm(b["test_accuracy"]),
                f"{format_interval(b['minus_best_kd'])} vs {b['best_kd']}" if b["minus_best_kd"] else "—"]
               for t in teachers if (b := results["best_method_per_teacher"].get(t["name"]))])
    rep.heading("Paired difference against the CE student (test accuracy, points, 95% t interval)")
    rep.table(["method", *labels], [[m, *(format_interval(table[t["name"]][m]["minus_ce"]) if m in table[t["name"]]
                                          else "—" for t in teachers)] for m in methods])
    rep.paragraph(_below_ce(results))
    if results["assistants"]:
        rep.heading("TAKD assistants")
        rep.paragraph("Each assistant is a smaller family member distilled from the teacher with TAKD's declared loss; "
                      "which one teaches the student is a tuned hyperparameter (assistant).")
        rep.table(["teacher", "assistant", "assistant val acc (%)", "teaches the evaluated students"],
                  [[a["teacher"], a["assistant"], f"{a['val_accuracy'] * 100:.2f}", "yes" if a["used"] else ""]
                   for a in results["assistants"]])
    rep.figure("capacity_curve.png", _capacity_figure(results), "capacity-mismatch curve")
    temps = sorted(teachers[0]["derived_std"], key=float)
    rep.figure("dark_knowledge.png", {
        "title": "Non-ground-truth probabilities of each teacher on the students' training inputs", "size": [11, 4],
        "panels": [{"type": "lines", "xscale": "log2", "xlabel": "temperature tau", "ylabel": key.replace("_", " "),
                    "legend": "best" if key == "derived_std" else "none",
                    "series": [{"label": f"{t['label']} {format_params(t['params'])}", "x": [float(x) for x in temps],
                                "y": [t[key][x] for x in temps]} for t in teachers]}
                   for key in ("derived_average", "derived_std")]},
        "derived average and derived std against temperature")
    rep.heading("Class affinity")
    consistency = _consistency(teachers)
    rep.figure("affinity_consistency.png", {"size": [5.5, 4.5], "panels": [{
        "type": "heatmap", "matrix": consistency, "xlabels": labels, "ylabels": labels, "vmin": -1, "vmax": 1,
        "cmap": "RdBu_r", "annotate": True, "colorbar": "Spearman",
        "title": "Affinity consistency between teachers (Spearman)"}]},
        "teacher-by-teacher affinity consistency (Spearman)")
    names = results["class_names"]
    rep.figure("affinity.png", {"layout": [math.ceil(len(teachers) / 2), 2], "size": [12, 5 * math.ceil(len(teachers)
                                                                                                       / 2)],
                                "panels": [{"type": "heatmap", "matrix": _blank_diagonal(t["affinity"]),
                                            "xlabels": names, "ylabels": names, "vmin": 0, "colorbar": "affinity",
                                            "annotate": True, "title": f"{t['label']} {t['name']}",
                                            "xlabel": "non-ground-truth class j", "ylabel": "true class i"}
                                           for t in teachers]},
               "class affinity of each teacher (first teacher seed)")
    rep.heading("Further analysis")
    rep.paragraph("Per-class transfer for each teacher (which classes KD hurts, with intervals, and TLLM) is in "
                  "undistillable/report.html beside this report: `make run` writes it with `kdlab study undistillable "
                  "--out <this dir>/undistillable --set store=<same store>`, which reuses this study's runs.")
    rep.reproduce(results)
    return rep


def _below_ce(results: dict[str, Any]) -> str:
    """Which methods are reliably below the CE student at the configuration they were tuned to (said, not hidden)."""
    below = []
    for t in results["teachers"]:
        for m, cell in results["table"][t["name"]].items():
            diff = cell["minus_ce"]
            if not math.isnan(diff["high"]) and diff["high"] < 0:
                tuned = cell.get("tuned_on")
                where = "" if tuned in (None, t["name"]) else f", tuned on {tuned.split(',')[0]}"
                below.append(f"{m} from {t['label']} ({values_text(cell.get('values') or {})}{where}: "
                             f"{format_interval(diff)})")
    if not below:
        return "No method is reliably below the CE student (a 95% interval wholly below 0) at its tuned configuration."
    return ("Reliably below the CE student (95% interval wholly below 0) at the configuration chosen by its tuning: "
            + "; ".join(below) + ".")


def _tuning_section(rep: Report, results: dict[str, Any]) -> None:
    """Per method: the space, the budget, every trial (validation only), the chosen values and the val-test gap."""
    tuning = results["tuning"]
    rep.heading("Tuning: equal budget, chosen on validation")
    if not tuning["trials"]:
        rep.paragraph("Tuning was off (tuning.trials = 0): every method ran at its declared configuration.")
        return
    first = results["config"]["teacher_seeds"][0]
    largest = max(results["teachers"], key=lambda t: t["params"])
    where = ("the largest teacher" if tuning["teachers"] == "largest" else "every teacher")
    rep.paragraph(
        f"Every method got the same budget: {tuning['trials']} trials over the space its loss declares (the whole grid "
        f"when it has at most {tuning['trials']} points, else a sample seeded by {tuning['search_seed']}), each trial "
        f"trained on tuning seed(s) {tuning['seeds']} (disjoint from the evaluation seeds "
        f"{results['config']['seeds']}) from the teachers of teacher seed {first}; {tuning['trial_runs']} trial runs "
        f"in all. Remedies and controls are tuned on {where} ({largest['label']}, where claims 4-6 compare them) and "
        "their choice is trained from every teacher; vanilla KD is tuned on every teacher (claim 3 compares each "
        "teacher's best KD). A trial's score is its best-epoch validation accuracy averaged over the tuning seeds; "
        "the best score wins. The chosen configuration is then trained on the evaluation seeds and tested; the "
        "gap is the winning validation score minus that test mean (the optimism of picking the best of "
        f"{tuning['trials']} plus any validation/test shift). Test accuracy of a trial is never read.")
    rep.table(["method", "tuned on", "space (points)", "trials", "chosen", "selection val (%)",
               "evaluation val (%)", "evaluation test (%)", "val - test gap (points)"],
              [[r["method"], r["teacher"].split(",")[0], f"{r['space_text']} ({r['space_size']})", r["trials_run"],
                values_text(r["chosen"]["values"]), f"{r['chosen']['mean_val_accuracy'] * 100:.2f}",
                format_pm(r["final_val_accuracy"]) if r["final_val_accuracy"] else "—",
                format_pm(r["final_test_accuracy"]) if r["final_test_accuracy"] else "—",
                f"{r['val_to_test_gap'] * 100:+.2f}" if r["val_to_test_gap"] is not None else "—"]
               for r in tuning["methods"]])
    rep.heading("Trials", level=3)
    for r in tuning["methods"]:
        seeds = list(r["trials"][0]["val_accuracy"]) if r["trials"] else []
        rep.paragraph(f"{r['method']} from {r['teacher']} ({r['sampler']}, {r['trials_run']} of {r['space_size']} "
                      "points):")
        rep.table(["trial", "values", *(f"val seed {s} (%)" for s in seeds), "mean val (%)", "chosen"],
                  [[t["trial"], values_text(t["values"]), *(f"{t['val_accuracy'][s] * 100:.2f}" for s in seeds),
                    f"{t['mean_val_accuracy'] * 100:.2f}", "yes" if t["trial"] == r["chosen"]["trial"] else ""]
                   for t in r["trials"]])


def _consistency(teachers: list[dict[str, Any]]) -> list[list[float]]:
    return consistency_matrix([torch.tensor(t["affinity"], dtype=torch.float64) for t in teachers],
                              stat="spearman").tolist()


def _blank_diagonal(matrix: list[list[float]]) -> list[list[float | None]]:
    return [[None if i == j else v for j, v in enumerate(row)] for i, row in enumerate(matrix)]


CAPACITY = STUDIES.register("capacity")(Study(
    name="capacity", config=CapacityStudyConfig, defaults=DEFAULTS, presets=PRESETS, plan=plan, analyse=analyse,
    claims=claims, report=report, description=__doc__.splitlines()[0]))
