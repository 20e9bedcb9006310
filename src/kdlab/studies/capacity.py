"""Capacity study: does a bigger teacher teach worse, why, and does asymmetric temperature scaling fix it?

Claims under test, from Fan, Li, Zhan, "Exploring Dark Knowledge under Various Teacher Capacities and Addressing
Capacity Mismatch" (arXiv 2405.13078; Front. Comput. Sci. 2026) and Li et al., "Asymmetric Temperature Scaling
Makes Larger Networks Teach Well Again" (NeurIPS 2022):

1. a larger teacher's non-ground-truth probabilities are less distinct (derived std falls with capacity);
2. teachers of different capacity agree on relative class affinity;
3. capacity mismatch: a larger, more accurate teacher can teach the same student worse than a smaller one;
4. ATS (and ISATS) fix it for large teachers.

Recipe: train the teacher family -> profile each teacher (dark knowledge, affinity) on the students' training
inputs -> train the CE student per seed, and every method's student from every teacher per seed (paired: same
initial weights and batch order) -> paired differences -> claims -> results.json, plots, report.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, field_validator
from tqdm.auto import tqdm

from ..config import Component, DataConfig, Section, check_components
from ..io import atomic_write_json
from .common import StageConfig, command_line, load_study_config, stage_run_config
from .stats import format_interval, mean_std, paired_difference
from .store import RunStore

log = logging.getLogger("kdlab")


class Method(Section):
    """A distillation method of the study: a label for tables and the loss it trains with."""

    label: str
    loss: Component


class TeacherFamily(StageConfig):
    """A teacher recipe plus the capacities to sweep: each entry's keys override the base model's options."""

    capacities: list[dict[str, Any]] = Field(min_length=2)


class CapacityStudyConfig(Section):
    data: DataConfig = Field(default_factory=DataConfig)
    teachers: TeacherFamily
    student: StageConfig
    methods: list[Method] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    teacher_seed: int = 0
    temperatures: list[float] = Field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0], min_length=1)
    claim_temperature: float = 4.0

    @field_validator("methods")
    @classmethod
    def _unique_labels(cls, methods: list[Method]) -> list[Method]:
        labels = [m.label for m in methods]
        if len(set(labels)) != len(labels) or "ce" in labels:
            raise ValueError(f"method labels must be unique and not 'ce' (the CE student is always trained): {labels}")
        return methods


ATS_DEFAULT = {"tau_gt": 4.0, "tau_other": 2.0, "tau_student": 1.0, "alpha": 0.5}

DEFAULTS: dict[str, Any] = {
    "data": {"name": "fashion_mnist", "val_size": 5000, "seed": 0},
    # MLP teachers, 2 hidden layers, 32 -> 1024 wide (0.03M -> 1.9M params, 72x), on all 55k training images.
    "teachers": {"model": {"name": "mlp", "depth": 2}, "epochs": 8, "batch_size": 128,
                 "optim": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "cosine"},
                 "capacities": [{"width": 32}, {"width": 128}, {"width": 512}, {"width": 1024}]},
    # A 1-hidden-layer MLP student that sees only 2,000 labelled images: the regime where soft labels matter.
    "student": {"model": {"name": "mlp", "width": 128, "depth": 1}, "epochs": 30, "batch_size": 128,
                "train_subset": 2000, "optim": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "cosine"}},
    "methods": [
        {"label": "kd_T2", "loss": {"name": "kd", "temperature": 2.0, "alpha": 0.9}},
        {"label": "kd_T4", "loss": {"name": "kd", "temperature": 4.0, "alpha": 0.9}},
        {"label": "ats", "loss": {"name": "ats", **ATS_DEFAULT}},
        # the symmetric control: ATS's loss form and alpha with tau_gt = tau_other
        {"label": "ats_symmetric", "loss": {"name": "ats", **{**ATS_DEFAULT, "tau_gt": ATS_DEFAULT["tau_other"]}}},
        {"label": "isats", "loss": {"name": "isats", "tau_gt": 4.0, "tau_student": 1.0, "alpha": 0.5}},
    ],
    "seeds": [0, 1, 2],
}

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "data": {"val_size": 1000},
        "teachers": {"epochs": 1, "train_subset": 5000, "capacities": [{"width": 16}, {"width": 64}, {"width": 256},
                                                                       {"width": 512}]},
        "student": {"epochs": 3, "train_subset": 500, "model": {"name": "mlp", "width": 32, "depth": 1}},
        "seeds": [0],
    },
    "cnn": {
        "teachers": {"model": {"name": "cnn", "depth": 2}, "epochs": 4, "hflip": True,
                     "capacities": [{"width": 0.125}, {"width": 0.25}, {"width": 0.5}, {"width": 1.0}]},
    },
}


def run_capacity(config: str | Path | None = None, out: str | Path = "runs/capacity", preset: str | None = None,
                 overrides: list[str] | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Run the capacity study; write results.json, plots, report.md and report.html into ``out``."""
    cfg: CapacityStudyConfig = load_study_config(CapacityStudyConfig, DEFAULTS, PRESETS, config, preset,
                                                 list(overrides or []))
    out = Path(out)
    store = RunStore(out / "runs")
    started = time.perf_counter()

    # every run's config, validated before anything trains
    teacher_cfgs = []
    for capacity in cfg.teachers.capacities:
        model = Component(**{**cfg.teachers.model.as_dict(), **capacity})
        teacher_cfgs.append(stage_run_config(cfg.teachers, cfg.data, cfg.teacher_seed, model=model))
    teacher_dirs = [store.path(t) for t in teacher_cfgs]
    ce_cfgs = {seed: stage_run_config(cfg.student, cfg.data, seed) for seed in cfg.seeds}
    student_cfgs = [(ti, seed, method, stage_run_config(cfg.student, cfg.data, seed, loss=method.loss,
                                                        teacher_run=teacher_dirs[ti]))
                    for ti in range(len(teacher_cfgs)) for seed in cfg.seeds for method in cfg.methods]
    for run_cfg in [*teacher_cfgs, *ce_cfgs.values(), *(c for *_, c in student_cfgs)]:
        check_components(run_cfg)

    overall = tqdm(total=len(teacher_cfgs) + len(ce_cfgs) + len(student_cfgs), desc="capacity study", unit="run",
                   disable=progress is False)
    teachers = []
    for i, run_cfg in enumerate(teacher_cfgs):
        summary = store.run(run_cfg, progress=progress)
        overall.update()
        log.info("teacher %d/%d %s: %s params, test accuracy %.4f", i + 1, len(teacher_cfgs),
                 _model_label(run_cfg.model), f"{summary['params']:,}", summary["test_accuracy"])
        teachers.append(summary)
    students = []
    for seed, run_cfg in ce_cfgs.items():
        summary = store.run(run_cfg, progress=progress)
        overall.update()
        students.append(_student_record(None, "ce", {}, seed, summary))
    for ti, seed, method, run_cfg in student_cfgs:
        summary = store.run(run_cfg, progress=progress)
        overall.update()
        students.append(_student_record(_model_label(teacher_cfgs[ti].model), method.label, method.loss.as_dict(),
                                        seed, summary))
        log.info("student %s from teacher %d seed %d: test accuracy %.4f", method.label, ti + 1, seed,
                 summary["test_accuracy"])
    overall.close()

    profiles = _profile_teachers(cfg, teacher_cfgs, teacher_dirs)
    results = _assemble(cfg, teacher_cfgs, teachers, profiles, students)
    results.update(seconds=time.perf_counter() - started, runs_trained=store.trained, runs_reused=store.reused,
                   command=command_line())
    from ..report.capacity import write_capacity_report

    results["report_files"] = write_capacity_report(results, profiles, out)
    atomic_write_json(out / "results.json", results)
    _print_summary(results, out)
    return results


def _model_label(model: Component) -> str:
    opts = ",".join(f"{k}={v}" for k, v in model.options.items())
    return f"{model.name}({opts})"


def _student_record(teacher: str | None, method: str, hyperparams: dict[str, Any], seed: int,
                    summary: dict[str, Any]) -> dict[str, Any]:
    return {"teacher": teacher, "method": method, "hyperparams": hyperparams, "seed": seed,
            "test_accuracy": summary["test_accuracy"], "run_dir": summary["run_dir"]}


def _profile_teachers(cfg: CapacityStudyConfig, teacher_cfgs: list, teacher_dirs: list[Path]) -> list[dict[str, Any]]:
    """Dark knowledge and affinity of every teacher on the students' training inputs (what is distilled) and test."""
    from ..analysis.profile import profile_model
    from ..data import load_dataset
    from ..distill import load_teacher

    d = cfg.data
    data = load_dataset(d.name, data_dir=d.data_dir, val_size=d.val_size, seed=d.seed,
                        train_subset=cfg.student.train_subset, **d.options)
    profiles = []
    for run_cfg, run_dir in zip(teacher_cfgs, teacher_dirs):
        from ..config import TeacherConfig

        teacher = load_teacher(TeacherConfig(run=str(run_dir)), data.num_classes, data.in_shape)
        distill_metrics, distill_affinity = profile_model(teacher, data.train.x, data.train.y, data.num_classes,
                                                          cfg.temperatures)
        test_metrics, test_affinity = profile_model(teacher, data.test.x, data.test.y, data.num_classes,
                                                    cfg.temperatures)
        profiles.append({"label": _model_label(run_cfg.model), "distill_set": distill_metrics, "test": test_metrics,
                         "affinity": distill_affinity, "test_affinity": test_affinity,
                         "class_names": data.class_names})
    return profiles


def _by_seed(students: list[dict[str, Any]], teacher: str | None, method: str) -> dict[int, float]:
    return {s["seed"]: s["test_accuracy"] for s in students if s["teacher"] == teacher and s["method"] == method}


def _paired(a: dict[int, float], b: dict[int, float]) -> dict[str, Any]:
    seeds = sorted(set(a) & set(b))
    return paired_difference([a[s] for s in seeds], [b[s] for s in seeds])


def _assemble(cfg: CapacityStudyConfig, teacher_cfgs: list, teachers: list[dict[str, Any]],
              profiles: list[dict[str, Any]], students: list[dict[str, Any]]) -> dict[str, Any]:
    from ..analysis import affinity_consistency, consistency_matrix, spearman_correlation

    ce = _by_seed(students, None, "ce")
    labels = [p["label"] for p in profiles]
    teacher_entries = []
    for run_cfg, summary, profile in zip(teacher_cfgs, teachers, profiles):
        per_t = profile["distill_set"]["per_temperature"]
        teacher_entries.append({
            "name": profile["label"],
            "model": run_cfg.model.as_dict(),
            "params": summary["params"],
            "test_accuracy": summary["test_accuracy"],
            "train_accuracy_distill_set": profile["distill_set"]["accuracy"],
            "derived_std": {k: v["derived_std"] for k, v in per_t.items()},
            "derived_average": {k: v["derived_average"] for k, v in per_t.items()},
            "nongt_entropy": {k: v["nongt_entropy"] for k, v in per_t.items()},
            "target_prob": {k: v["target_prob"] for k, v in per_t.items()},
            "inherent_variance": profile["distill_set"]["inherent_variance"],
            "ece": profile["test"]["ece"],
            "test_metrics": profile["test"],
            "run_dir": summary["run_dir"],
        })
    # per teacher x method: mean +- std and paired difference against CE
    table: dict[str, dict[str, Any]] = {}
    for label in labels:
        table[label] = {}
        for method in cfg.methods:
            accs = _by_seed(students, label, method.label)
            table[label][method.label] = {"test_accuracy": mean_std(list(accs.values())),
                                          "minus_ce": _paired(accs, ce)}
    consistency = consistency_matrix([p["affinity"] for p in profiles], stat="spearman")
    pairwise = {f"{labels[i]} vs {labels[j]}": affinity_consistency(profiles[i]["affinity"], profiles[j]["affinity"])
                for i in range(len(labels)) for j in range(i + 1, len(labels))}
    claims = _claims(cfg, teacher_entries, students, ce, consistency, spearman_correlation)
    return {
        "study": "capacity",
        "dataset": cfg.data.name,
        "config": cfg.model_dump(mode="json"),
        "teachers": teacher_entries,
        "students": students,
        "ce_student": mean_std(list(ce.values())),
        "table": table,
        "affinity_consistency": {"labels": labels, "spearman_matrix": consistency.tolist(), "pairwise": pairwise},
        "claims": claims,
    }


def _claims(cfg: CapacityStudyConfig, teachers: list[dict[str, Any]], students: list[dict[str, Any]],
            ce: dict[int, float], consistency: torch.Tensor, spearman) -> list[dict[str, Any]]:
    """Each paper claim with a verdict by a rule fixed in advance (documented in docs/studies/capacity.md)."""
    claims = []
    key = str(float(cfg.claim_temperature))
    params = [t["params"] for t in teachers]
    stds = [t["derived_std"].get(key, math.nan) for t in teachers]
    rho = spearman(params, stds)
    if math.isnan(rho) or -0.8 < rho < 0:
        holds_1: bool | None = None
    else:
        holds_1 = rho <= -0.8
    claims.append({
        "claim": "a larger teacher produces less distinct non-ground-truth probabilities",
        "holds": holds_1,
        "evidence": f"Spearman correlation between teacher parameters and derived std at tau={cfg.claim_temperature:g} "
                    f"= {rho:+.2f} over {len(teachers)} teachers (derived std: "
                    + ", ".join(f"{s:.4f}" for s in stds) + "); rule: holds if rho <= -0.8, fails if rho >= 0",
    })
    off = consistency[~torch.eye(len(teachers), dtype=torch.bool)]
    min_rho = float(off.min()) if off.numel() else math.nan
    claims.append({
        "claim": "teachers of different capacity agree on relative class affinity",
        "holds": None if math.isnan(min_rho) else bool(min_rho >= 0.7),
        "evidence": f"minimum pairwise Spearman correlation of the off-diagonal affinity entries = {min_rho:.3f} "
                    f"(rule: holds if >= 0.7)",
    })
    kd_labels = [m.label for m in cfg.methods if m.loss.name == "kd"]
    best_kd = {}  # teacher -> (label, mean accuracy) of its best KD method
    for t in teachers:
        options = [(lbl, mean_std(list(_by_seed(students, t["name"], lbl).values()))["mean"]) for lbl in kd_labels]
        if options:
            best_kd[t["name"]] = max(options, key=lambda o: o[1])
    if best_kd:
        best_teacher = max(best_kd, key=lambda n: best_kd[n][1])
        most_accurate = max(teachers, key=lambda t: t["test_accuracy"])["name"]
        diff = _paired(_by_seed(students, most_accurate, best_kd[most_accurate][0]),
                       _by_seed(students, best_teacher, best_kd[best_teacher][0]))
        if best_teacher == most_accurate:
            holds: bool | None = False
        else:
            holds = True if diff["n"] > 1 and diff["high"] < 0 else None
        claims.append({
            "claim": "capacity mismatch: a more accurate teacher can teach the same student worse than a smaller one",
            "holds": holds,
            "evidence": f"best KD student came from {best_teacher} ({best_kd[best_teacher][0]}, "
                        f"{best_kd[best_teacher][1] * 100:.2f}%); the most accurate teacher {most_accurate} gave "
                        f"{best_kd[most_accurate][1] * 100:.2f}% ({best_kd[most_accurate][0]}); paired difference "
                        f"{format_interval(diff)} points (rule: holds if the interval is below 0)",
        })
    ats_labels = [m.label for m in cfg.methods if m.label in ("ats", "isats")]
    largest = max(teachers, key=lambda t: t["params"])["name"]
    if "ats" in ats_labels and best_kd:
        ats = _by_seed(students, largest, "ats")
        vs_kd = _paired(ats, _by_seed(students, largest, best_kd[largest][0]))
        vs_sym = _paired(ats, _by_seed(students, largest, "ats_symmetric")) if any(
            m.label == "ats_symmetric" for m in cfg.methods) else None
        vs_ce = _paired(ats, ce)
        if vs_kd["n"] < 2:
            holds = None
        elif vs_kd["low"] > 0 and (vs_sym is None or vs_sym["low"] > 0):
            holds = True
        elif vs_kd["mean"] <= 0:
            holds = False
        else:
            holds = None
        evidence = (f"largest teacher {largest}: ATS - best KD ({best_kd[largest][0]}) = {format_interval(vs_kd)}, "
                    + (f"ATS - symmetric control = {format_interval(vs_sym)}, " if vs_sym else "")
                    + f"ATS - CE = {format_interval(vs_ce)} points (paired, 95% t interval; rule: holds if ATS beats "
                      "both best KD and the symmetric control with intervals above 0, fails if ATS - best KD <= 0)")
        if "isats" in ats_labels:
            isats = _paired(_by_seed(students, largest, "isats"), _by_seed(students, largest, best_kd[largest][0]))
            evidence += f"; ISATS - best KD = {format_interval(isats)}"
        claims.append({"claim": "asymmetric temperature scaling makes the large teacher teach well again",
                       "holds": holds, "evidence": evidence})
    return claims


def _print_summary(results: dict[str, Any], out: Path) -> None:
    print(f"\nteachers ({results['dataset']}):")
    for t in results["teachers"]:
        print(f"  {t['name']:<28} {t['params']:>10,} params  test acc {t['test_accuracy'] * 100:6.2f}%  "
              f"derived std@4 {t['derived_std'].get('4.0', float('nan')):.4f}")
    ce = results["ce_student"]
    print(f"student CE only: {ce['mean'] * 100:.2f} ± {ce['std'] * 100:.2f}")
    methods = list(next(iter(results["table"].values())))
    print("student accuracy (%) by teacher x method:")
    print("  " + " " * 28 + "".join(f"{m:>16}" for m in methods))
    for teacher, row in results["table"].items():
        cells = "".join(f"{row[m]['test_accuracy']['mean'] * 100:>9.2f} ±{row[m]['test_accuracy']['std'] * 100:>5.2f}"
                        for m in methods)
        print(f"  {teacher:<28}{cells}")
    for claim in results["claims"]:
        print(f"claim [{ {True: 'holds', False: 'does not hold', None: 'undecided'}[claim['holds']] }] "
              f"{claim['claim']}: {claim['evidence']}")
    print(f"\nresults: {out / 'results.json'}   report: {out / 'report.html'}")
