"""Baseline study: one teacher, one student trained with CE and with each distillation method, over seeds.

Recipe: train the teacher once -> for every seed and method train the student (same initial weights and batch order
per seed) -> test accuracies -> paired differences against CE -> results.json, plots, report.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from pydantic import Field
from tqdm.auto import tqdm

from ..config import Component, DataConfig, Section
from ..io import atomic_write_json
from ..report import Report, bar_chart
from .base import STUDIES
from .common import StageConfig, command_line, open_study, stage_run_config
from ..analysis.stats import mean_std, paired_difference
from ..report.format import format_interval, format_pm
from ..validate import check_components

log = logging.getLogger("kdlab")


class BaselineStudyConfig(Section):
    # run store shared between studies (content-addressed); default: <out>/runs
    store: str | None = None
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


@STUDIES.register("baseline")
def run_baseline(config: str | Path | None = None, out: str | Path = "runs/baseline", preset: str | None = None,
                 overrides: list[str] | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Run the baseline study and write results.json, report.md, report.html and plots into ``out``."""
    cfg, out, store, started = open_study(BaselineStudyConfig, DEFAULTS, PRESETS, config, preset, overrides, out)
    # validate every run's config before any training
    teacher_cfg = stage_run_config(cfg.teacher, cfg.data, cfg.teacher_seed)
    check_components(teacher_cfg)
    teacher_dir = store.path(teacher_cfg)
    student_cfgs = [(seed, method, stage_run_config(cfg.student, cfg.data, seed, loss=method,
                                                    teacher_run=teacher_dir))
                    for seed in cfg.seeds for method in cfg.methods]
    for _, _, run_cfg in student_cfgs:
        check_components(run_cfg)

    total = 1 + len(student_cfgs)
    overall = tqdm(total=total, desc="baseline study", unit="run", disable=progress is False)
    teacher = store.run(teacher_cfg, progress=progress)
    overall.update()
    log.info("teacher %s: test accuracy %.4f", cfg.teacher.model.name, teacher["test_accuracy"])
    students = []
    for seed, method, run_cfg in student_cfgs:
        summary = store.run(run_cfg, progress=progress)
        students.append({"method": method.name, "hyperparams": method.options, "seed": seed,
                         "test_accuracy": summary["test_accuracy"], "run_dir": summary["run_dir"]})
        overall.update()
        log.info("student %s seed %d: test accuracy %.4f", method.name, seed, summary["test_accuracy"])
    overall.close()

    results = _summarise(cfg, teacher, students)
    results["seconds"] = time.perf_counter() - started
    results["runs_trained"], results["runs_reused"] = store.trained, store.reused
    results["command"] = command_line()
    atomic_write_json(out / "results.json", results)
    _write_report(cfg, results, out)
    _print_table(results, out)
    return results


def _method_label(method: Component) -> str:
    opts = ", ".join(f"{k}={v}" for k, v in method.options.items())
    return f"{method.name}({opts})" if opts else method.name


def _summarise(cfg: BaselineStudyConfig, teacher: dict[str, Any], students: list[dict[str, Any]]) -> dict[str, Any]:
    by_method: dict[str, dict[int, float]] = {}
    for method in cfg.methods:
        label = _method_label(method)
        by_method[label] = {s["seed"]: s["test_accuracy"] for s in students
                            if s["method"] == method.name and s["hyperparams"] == method.options}
    ce_label = next((_method_label(m) for m in cfg.methods if m.name == "ce"), None)
    methods = {}
    for label, accs in by_method.items():
        entry: dict[str, Any] = {"test_accuracy": mean_std(list(accs.values()))}
        if ce_label and label != ce_label:
            seeds = sorted(set(accs) & set(by_method[ce_label]))
            entry["minus_ce"] = paired_difference([accs[s] for s in seeds], [by_method[ce_label][s] for s in seeds])
        methods[label] = entry
    claims = []
    for label, entry in methods.items():
        if "minus_ce" not in entry:
            continue
        diff = entry["minus_ce"]
        holds = (diff["low"] > 0) if diff["n"] > 1 else None
        claims.append({"claim": f"{label} beats CE for the student",
                       "holds": holds,
                       "evidence": f"paired difference {label} - CE over {diff['n']} seeds: "
                                   f"{format_interval(diff)} points (95% t interval)"})
    return {
        "study": "baseline",
        "dataset": cfg.data.name,
        "config": cfg.model_dump(mode="json"),
        "teacher": {"name": cfg.teacher.model.name, "model": cfg.teacher.model.as_dict(),
                    "params": teacher["params"], "test_accuracy": teacher["test_accuracy"],
                    "run_dir": teacher["run_dir"]},
        "students": students,
        "methods": methods,
        "claims": claims,
    }


def _write_report(cfg: BaselineStudyConfig, results: dict[str, Any], out: Path) -> None:
    labels = list(results["methods"])
    stats = [results["methods"][m]["test_accuracy"] for m in labels]
    bar_chart(labels, [s["mean"] * 100 for s in stats], [s["std"] * 100 for s in stats], out / "student_accuracy.png",
              ylabel="student test accuracy (%)", title="Student accuracy by method (mean ± std over seeds)")
    t = results["teacher"]
    rep = Report(f"kdlab baseline study — {results['dataset']}")
    rep.paragraph(f"Teacher: {t['name']} ({t['params']:,} params), test accuracy {t['test_accuracy'] * 100:.2f}%. "
                  f"Student: {cfg.student.model.name} {cfg.student.model.options}, trained on "
                  f"{cfg.student.train_subset or 'all'} labelled training images for {cfg.student.epochs} epochs; "
                  f"seeds {cfg.seeds} (paired: same initial weights and batch order for every method).")
    rows = [[m, format_pm(results["methods"][m]["test_accuracy"]),
             format_interval(results["methods"][m]["minus_ce"]) if "minus_ce" in results["methods"][m] else "—"]
            for m in labels]
    rep.heading("Student test accuracy (%)")
    rep.table(["method", "accuracy mean ± std", "minus CE, paired (95% CI)"], rows)
    rep.image("student_accuracy.png", "student test accuracy by method")
    rep.heading("Claims")
    rep.claims(results["claims"])
    rep.heading("Reproduce")
    rep.code(results["command"])
    rep.paragraph(f"{results['runs_trained']} runs trained, {results['runs_reused']} reused from the run store; "
                  f"{results['seconds']:.0f} s.")
    rep.write(out)


def _print_table(results: dict[str, Any], out: Path) -> None:
    t = results["teacher"]
    print(f"\nteacher {t['name']:<24} {t['params']:>10,} params   test acc {t['test_accuracy'] * 100:6.2f}%")
    for label, entry in results["methods"].items():
        extra = f"   vs CE {format_interval(entry['minus_ce'])}" if "minus_ce" in entry else ""
        print(f"student {label:<32} test acc {format_pm(entry['test_accuracy'])}{extra}")
    for claim in results["claims"]:
        print(f"claim: {claim['claim']}: {claim['holds']} ({claim['evidence']})")
    print(f"\nresults: {out / 'results.json'}   report: {out / 'report.html'}")
