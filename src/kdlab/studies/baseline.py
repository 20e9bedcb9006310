"""Baseline study: one teacher, one student trained with CE and with each distillation method, over seeds.

Plan: the teacher, then every method's student per seed (same initial weights and batch order per seed). Claims:
each method beats CE (paired difference of test accuracy over seeds).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..analysis.stats import mean_std, paired_by_seed
from ..analysis.verdict import Claim, NotApplicable, Rule, paired_measurement
from ..config import Component, DataConfig
from ..report import Report
from ..report.format import format_interval, format_pm, model_name
from ..store import RunStore
from .base import STUDIES
from .common import StageConfig, stage_run_config
from .driver import Planned, RunSet, Study, StudyConfig, Wave

POINTS = {"unit": "points", "scale": 100.0}


class BaselineStudyConfig(StudyConfig):
    """The baseline study's config: one teacher, the student recipe, the methods and the seeds."""
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: StageConfig
    student: StageConfig
    methods: list[Component]
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    teacher_seed: int = 0


DEFAULTS: dict[str, Any] = {
    "data": {"name": "fashion_mnist", "val_size": 5000, "seed": 0},
    # A conv teacher trained on all 55k training images with flips.
    "teacher": {"model": {"name": "cnn", "width": 1.0, "depth": 3}, "epochs": 6, "batch_size": 128, "hflip": True,
                "optim": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "cosine"}},
    # A small MLP student that sees only a labelled subset: the setting where a teacher's soft labels matter.
    "student": {"model": {"name": "mlp", "width": 128, "depth": 1}, "epochs": 20, "batch_size": 128,
                "train_subset": 2000, "optim": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "cosine"}},
    "methods": [{"name": "ce"}, {"name": "kd", "temperature": 4.0, "alpha": 0.9}],
    "seeds": [0, 1, 2],
}

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"data": {"val_size": 1000, "train_subset": None},
              "teacher": {"epochs": 1, "train_subset": 4000, "model": {"width": 0.5, "depth": 2}},
              "student": {"epochs": 2, "train_subset": 1000}, "seeds": [0]},
}


def method_label(method: Component) -> str:
    """``kd(temperature=4.0, alpha=0.9)``; a method without options is its name."""
    opts = ", ".join(f"{k}={v}" for k, v in method.options.items())
    return f"{method.name}({opts})" if opts else method.name


def plan(cfg: BaselineStudyConfig, store: RunStore) -> list[Wave]:
    """The teacher, then every method's student per seed."""
    teacher = stage_run_config(cfg.teacher, cfg.data, cfg.teacher_seed)
    students = [Planned({"role": "student", "method": method_label(m), "seed": seed},
                        stage_run_config(cfg.student, cfg.data, seed, loss=m, teacher_run=store.path(teacher)))
                for seed in cfg.seeds for m in cfg.methods]
    return [Wave("teacher", [Planned({"role": "teacher"}, teacher)]), Wave("students", students)]


def analyse(cfg: BaselineStudyConfig, runs: RunSet) -> dict[str, Any]:
    """Teacher, students and per-method test accuracy with the paired difference against CE."""
    teacher = runs.one(role="teacher")
    labels = [method_label(m) for m in cfg.methods]
    ce = next((label for m, label in zip(cfg.methods, labels) if m.name == "ce"), None)
    accs = {label: runs.by_seed("test_accuracy", role="student", method=label) for label in labels}
    methods = {}
    for label in labels:
        entry: dict[str, Any] = {"test_accuracy": mean_std(list(accs[label].values()))}
        if ce is not None and label != ce:
            entry["minus_ce"] = paired_by_seed(accs[label], accs[ce])
        methods[label] = entry
    return {
        "dataset": cfg.data.name,
        "config": cfg.model_dump(mode="json"),
        "teacher": {"name": model_name(cfg.teacher.model.as_dict(), teacher.summary["params"]),
                    "model": cfg.teacher.model.as_dict(), "params": teacher.summary["params"],
                    "test_accuracy": teacher.test_accuracy, "run_dir": teacher.run_dir},
        "students": [{"teacher": None if r.tags["method"] == ce else "teacher", "method": r.tags["method"],
                      "hyperparams": r.job.loss.as_dict(), "seed": r.tags["seed"], "test_accuracy": r.test_accuracy,
                      "val_accuracy": r.val_accuracy, "run_dir": r.run_dir}
                     for r in runs.select(role="student")],
        "methods": methods,
    }


def claims(cfg: BaselineStudyConfig) -> list[Claim]:
    """'<method> beats CE' for every method other than CE (none without a CE method)."""
    labels = [method_label(m) for m in cfg.methods]
    if not any(m.name == "ce" for m in cfg.methods):
        return []

    def measure(label: str):
        def run(results: dict[str, Any]):
            entry = results["methods"][label]
            if entry["minus_ce"]["n"] == 0:
                return NotApplicable("no seed has both students")
            return paired_measurement(entry["minus_ce"])
        return run

    return [Claim(f"beats_ce_{i}", f"{label} beats CE for the student",
                  f"{label} - CE, student test accuracy, paired over seeds (points)", Rule(">", 0.0, **POINTS),
                  measure(label)) for i, label in enumerate(labels) if cfg.methods[i].name != "ce"]


def report(results: dict[str, Any]) -> Report:
    """The baseline report: claims, the accuracy table and its bar chart."""
    labels = list(results["methods"])
    stats = [results["methods"][m]["test_accuracy"] for m in labels]
    cfg, t = results["config"], results["teacher"]
    rep = Report(f"kdlab baseline study — {results['dataset']}")
    rep.paragraph(f"Teacher: {t['name']}, test accuracy {t['test_accuracy'] * 100:.2f}%. Student: "
                  f"{model_name(cfg['student']['model'])} trained on {cfg['student']['train_subset'] or 'all'} "
                  f"labelled training images for {cfg['student']['epochs']} epochs; seeds {cfg['seeds']} (paired: "
                  "same initial weights and batch order for every method).")
    rep.claims_section(results)
    rep.heading("Student test accuracy (%)")
    rep.table(["method", "accuracy mean ± std", "minus CE, paired (95% CI)"],
              [[m, format_pm(results["methods"][m]["test_accuracy"]),
                format_interval(results["methods"][m]["minus_ce"]) if "minus_ce" in results["methods"][m] else "—"]
               for m in labels])
    rep.figure("student_accuracy.png", {"panels": [{
        "type": "bars", "categories": labels, "ylabel": "student test accuracy (%)", "legend": "none",
        "series": [{"values": [s["mean"] * 100 for s in stats], "errors": [s["std"] * 100 for s in stats]}]}],
        "title": "Student accuracy by method (mean ± std over seeds)", "size": [max(4, 1.2 * len(labels)), 3.5]},
        "student test accuracy by method")
    rep.reproduce(results)
    return rep


BASELINE = STUDIES.register("baseline")(Study(
    name="baseline", config=BaselineStudyConfig, defaults=DEFAULTS, presets=PRESETS, plan=plan, analyse=analyse,
    claims=claims, report=report, description=__doc__.splitlines()[0]))
