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
from pathlib import Path
from typing import Any

import torch
from typing import Literal

from pydantic import Field, field_validator, model_validator
from tqdm.auto import tqdm

from ..config import Component, DataConfig, Section
from .base import STUDIES
from .common import StageConfig, finish_study, open_study, stage_run_config
from ..executor import ExecutorConfig, executor_from_config
from ..analysis.stats import mean_std, paired_by_seed
from ..report.format import format_interval
from ..validate import check_components

log = logging.getLogger("kdlab")


class Method(Section):
    """A distillation method of the study: a label for tables, the loss it trains with, and how it uses the teacher.

    ``role``: ``kd`` (vanilla KD, the baseline), ``control`` (a control such as symmetric ATS) or ``remedy``
    (inferred: plain ``kd`` without the options below is ``kd``, everything else a remedy).
    ``teacher_epoch`` (ESKD): distil from the teacher as it was after that epoch (must be in teachers.keep_epochs).
    ``stop_epoch`` (ESKD): drop the teacher after that many student epochs (plain CE afterwards).
    ``assistant`` (TAKD): distil through a teacher assistant: each smaller family member, trained by this loss from
    the teacher on the teachers' data, teaches the student; the chain with the best mean validation accuracy is
    reported.
    """

    label: str
    loss: Component
    role: Literal["kd", "control", "remedy"] | None = None
    teacher_epoch: int | None = Field(None, ge=1)
    stop_epoch: int | None = Field(None, ge=0)
    assistant: bool = False

    @model_validator(mode="after")
    def _infer_role(self) -> "Method":
        if self.role is None:
            plain = self.loss.name == "kd" and not (self.teacher_epoch or self.stop_epoch is not None
                                                    or self.assistant)
            self.role = "kd" if plain else "remedy"
        return self


class TeacherFamily(StageConfig):
    """A teacher recipe plus the capacities to sweep: each entry's keys override the base model's options."""

    capacities: list[dict[str, Any]] = Field(min_length=2)


class CapacityStudyConfig(Section):
    # run store shared between studies (content-addressed); default: <out>/runs
    store: str | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    teachers: TeacherFamily
    student: StageConfig
    methods: list[Method] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    teacher_seed: int = 0
    temperatures: list[float] = Field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0], min_length=1)
    claim_temperature: float = 4.0
    # where the runs train: in this process (local), on local processes (pool) or on a Ray cluster (ray)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    @field_validator("methods")
    @classmethod
    def _unique_labels(cls, methods: list[Method]) -> list[Method]:
        labels = [m.label for m in methods]
        if len(set(labels)) != len(labels) or "ce" in labels:
            raise ValueError(f"method labels must be unique and not 'ce' (the CE student is always trained): {labels}")
        return methods

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


ATS_DEFAULT = {"tau_gt": 4.0, "tau_other": 2.0, "tau_student": 1.0, "alpha": 0.5}

DEFAULTS: dict[str, Any] = {
    "data": {"name": "fashion_mnist", "val_size": 5000, "seed": 0},
    # MLP teachers, 2 hidden layers, 32 -> 1024 wide (0.03M -> 1.9M params, 72x), on all 55k training images.
    "teachers": {"model": {"name": "mlp", "depth": 2}, "epochs": 8, "batch_size": 128, "keep_epochs": [2],
                 "optim": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "cosine"},
                 "capacities": [{"width": 32}, {"width": 128}, {"width": 512}, {"width": 1024}]},
    # A 1-hidden-layer MLP student that sees only 2,000 labelled images: the regime where soft labels matter.
    "student": {"model": {"name": "mlp", "width": 128, "depth": 1}, "epochs": 30, "batch_size": 128,
                "checkpoint_every": 10,
                "train_subset": 2000, "optim": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "cosine"}},
    "methods": [
        {"label": "kd_T2", "loss": {"name": "kd", "temperature": 2.0, "alpha": 0.9}},
        {"label": "kd_T4", "loss": {"name": "kd", "temperature": 4.0, "alpha": 0.9}},
        {"label": "ats", "loss": {"name": "ats", **ATS_DEFAULT}},
        # the symmetric control: ATS's loss form and alpha with tau_gt = tau_other
        {"label": "ats_symmetric", "role": "control",
         "loss": {"name": "ats", **{**ATS_DEFAULT, "tau_gt": ATS_DEFAULT["tau_other"]}}},
        {"label": "isats", "loss": {"name": "isats", "tau_gt": 4.0, "tau_student": 1.0, "alpha": 0.5}},
        # remedies from the literature, each at its paper's defaults (see the loss docstrings)
        {"label": "dkd", "loss": {"name": "dkd"}},
        {"label": "dist", "loss": {"name": "dist"}},
        {"label": "logit_std", "loss": {"name": "logit_std"}},
        {"label": "kd_T4_std", "loss": {"name": "kd", "temperature": 4.0, "alpha": 0.9, "standardize": True}},
        {"label": "ctkd", "loss": {"name": "ctkd"}},
        {"label": "takd", "assistant": True, "loss": {"name": "kd", "temperature": 4.0, "alpha": 0.9}},
        {"label": "eskd", "teacher_epoch": 2, "loss": {"name": "kd", "temperature": 4.0, "alpha": 0.9}},
    ],
    "seeds": [0, 1, 2],
}

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "data": {"val_size": 1000},
        "teachers": {"epochs": 2, "train_subset": 5000, "capacities": [{"width": 16}, {"width": 64}, {"width": 256},
                                                                       {"width": 512}]},
        "student": {"epochs": 3, "train_subset": 500, "model": {"name": "mlp", "width": 32, "depth": 1}},
        "seeds": [0],
    },
    "cnn": {
        "teachers": {"model": {"name": "cnn", "depth": 2}, "epochs": 4, "hflip": True,
                     "capacities": [{"width": 0.125}, {"width": 0.25}, {"width": 0.5}, {"width": 1.0}]},
    },
}


def teacher_family_configs(teachers: TeacherFamily, data: DataConfig, seed: int) -> list:
    """The RunConfig of every teacher of the family, in capacity order.

    The one definition shared by every study that reuses the capacity study's teachers (their run-store keys must
    match exactly).
    """
    return [stage_run_config(teachers, data, seed, model=Component(**{**teachers.model.as_dict(), **capacity}))
            for capacity in teachers.capacities]


@STUDIES.register("capacity")
def run_capacity(config: str | Path | None = None, out: str | Path = "runs/capacity", preset: str | None = None,
                 overrides: list[str] | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Run the capacity study; write results.json, plots, report.md and report.html into ``out``."""
    cfg, out, store, started = open_study(CapacityStudyConfig, DEFAULTS, PRESETS, config, preset, overrides, out)

    # every run's config, validated before anything trains
    teacher_cfgs = teacher_family_configs(cfg.teachers, cfg.data, cfg.teacher_seed)
    teacher_dirs = [store.path(t) for t in teacher_cfgs]
    labels = [_model_label(t.model) for t in teacher_cfgs]
    # TAKD assistants: every smaller family member distilled from each teacher (teachers' recipe and data)
    assistant_cfgs = [(ti, ai, m, stage_run_config(cfg.teachers, cfg.data, cfg.teacher_seed, loss=m.loss,
                                                   teacher_run=teacher_dirs[ti], model=teacher_cfgs[ai].model,
                                                   keep_epochs=[]))
                      for m in cfg.methods if m.assistant for ti in range(len(teacher_cfgs)) for ai in range(ti)]
    ce_cfgs = {seed: stage_run_config(cfg.student, cfg.data, seed) for seed in cfg.seeds}
    student_jobs = []  # (record fields, run config)
    for ti in range(len(teacher_cfgs)):
        for seed in cfg.seeds:
            for m in cfg.methods:
                if m.assistant:
                    continue
                run_cfg = stage_run_config(cfg.student, cfg.data, seed, loss=m.loss, teacher_run=teacher_dirs[ti],
                                           teacher_epoch=m.teacher_epoch, teacher_stop_epoch=m.stop_epoch)
                student_jobs.append(({"teacher": labels[ti], "method": m.label, "seed": seed, "m": m}, run_cfg))
    for ti, ai, m, a_cfg in assistant_cfgs:
        for seed in cfg.seeds:
            run_cfg = stage_run_config(cfg.student, cfg.data, seed, loss=m.loss, teacher_run=store.path(a_cfg))
            student_jobs.append(({"teacher": labels[ti], "method": m.label, "seed": seed, "m": m,
                                  "assistant": labels[ai]}, run_cfg))
    all_cfgs = [*teacher_cfgs, *(c for *_, c in assistant_cfgs), *ce_cfgs.values(), *(c for _, c in student_jobs)]
    for run_cfg in all_cfgs:
        check_components(run_cfg)

    overall = tqdm(total=len(all_cfgs), desc="capacity study", unit="run", disable=progress is False)
    # three waves, each a batch of independent runs: assistants need their teacher, students their teacher or
    # assistant; within a wave the executor may run them in parallel (results do not depend on where they ran)
    with executor_from_config(cfg.executor) as executor:
        teachers = executor.run(store, teacher_cfgs, progress=progress, bar=overall)
        for i, summary in enumerate(teachers):
            log.info("teacher %d/%d %s: %s params, test accuracy %.4f", i + 1, len(teacher_cfgs), labels[i],
                     f"{summary['params']:,}", summary["test_accuracy"])
        assistant_summaries = executor.run(store, [a_cfg for *_, a_cfg in assistant_cfgs], progress=progress,
                                           bar=overall)
        student_summaries = executor.run(store, [*ce_cfgs.values(), *(c for _, c in student_jobs)],
                                         progress=progress, bar=overall)
    overall.close()
    assistants = [{"teacher": labels[ti], "assistant": labels[ai], "method": m.label,
                   "test_accuracy": summary["test_accuracy"], "run_dir": summary["run_dir"]}
                  for (ti, ai, m, _), summary in zip(assistant_cfgs, assistant_summaries)]
    students = [_student_record(None, "ce", {}, seed, summary)
                for seed, summary in zip(ce_cfgs, student_summaries[:len(ce_cfgs)])]
    for (fields, _), summary in zip(student_jobs, student_summaries[len(ce_cfgs):]):
        m = fields["m"]
        record = _student_record(fields["teacher"], m.label, m.loss.as_dict(), fields["seed"], summary)
        if "assistant" in fields:
            record["assistant"] = fields["assistant"]
        if m.teacher_epoch is not None or m.stop_epoch is not None:
            record["teacher_epoch"], record["stop_epoch"] = m.teacher_epoch, m.stop_epoch
        students.append(record)
        log.info("student %s from %s seed %d: test accuracy %.4f", m.label, fields["teacher"], fields["seed"],
                 summary["test_accuracy"])
    _select_assistants(students)

    profiles = _profile_teachers(cfg, teacher_cfgs, teacher_dirs)
    results = _assemble(cfg, teacher_cfgs, teachers, profiles, students)
    results["assistants"] = assistants
    from ..report.capacity import write_capacity_report

    return finish_study(results, out, started, store.trained, store.reused,
                        lambda r, o: write_capacity_report(r, profiles, o), _print_summary)


def _model_label(model: Component) -> str:
    opts = ",".join(f"{k}={v}" for k, v in model.options.items())
    return f"{model.name}({opts})"


def _student_record(teacher: str | None, method: str, hyperparams: dict[str, Any], seed: int,
                    summary: dict[str, Any]) -> dict[str, Any]:
    return {"teacher": teacher, "method": method, "hyperparams": hyperparams, "seed": seed,
            "test_accuracy": summary["test_accuracy"], "val_accuracy": summary["best_val_accuracy"],
            "run_dir": summary["run_dir"]}


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


def _select_assistants(students: list[dict[str, Any]]) -> None:
    """Mark, per teacher and TAKD method, the chain with the best mean *validation* accuracy as ``selected``.

    Selecting on validation, not test, keeps the reported TAKD accuracy an honest estimate.
    """
    chains: dict[tuple[str, str], dict[str, list[float]]] = {}
    for s in students:
        if "assistant" in s:
            chains.setdefault((s["teacher"], s["method"]), {}).setdefault(s["assistant"], []).append(s["val_accuracy"])
    for (teacher, method), by_assistant in chains.items():
        best = max(by_assistant, key=lambda a: sum(by_assistant[a]) / len(by_assistant[a]))
        for s in students:
            if s["teacher"] == teacher and s["method"] == method and "assistant" in s:
                s["selected"] = s["assistant"] == best


def _by_seed(students: list[dict[str, Any]], teacher: str | None, method: str) -> dict[int, float]:
    """Test accuracy per seed of one teacher x method (for TAKD: the selected chain)."""
    return {s["seed"]: s["test_accuracy"] for s in students
            if s["teacher"] == teacher and s["method"] == method and s.get("selected", True)}


def _assemble(cfg: CapacityStudyConfig, teacher_cfgs: list, teachers: list[dict[str, Any]],
              profiles: list[dict[str, Any]], students: list[dict[str, Any]]) -> dict[str, Any]:
    from ..analysis import affinity_consistency, consistency_matrix, spearman_correlation
    from ..analysis.profile import teacher_report_fields

    ce = _by_seed(students, None, "ce")
    labels = [p["label"] for p in profiles]
    teacher_entries = []
    for run_cfg, summary, profile in zip(teacher_cfgs, teachers, profiles):
        teacher_entries.append({
            "name": profile["label"],
            "model": run_cfg.model.as_dict(),
            "params": summary["params"],
            "test_accuracy": summary["test_accuracy"],
            **teacher_report_fields(profile["distill_set"], profile["test"]),
            "test_metrics": profile["test"],
            "run_dir": summary["run_dir"],
        })
    # per teacher x method: mean +- std and paired difference against CE
    table: dict[str, dict[str, Any]] = {}
    for label in labels:
        table[label] = {}
        for method in cfg.methods:
            accs = _by_seed(students, label, method.label)
            if accs:  # TAKD has no chain from the smallest teacher
                table[label][method.label] = {"test_accuracy": mean_std(list(accs.values())),
                                              "minus_ce": paired_by_seed(accs, ce)}
    best_methods = _best_methods(cfg, labels, students, table)
    consistency = consistency_matrix([p["affinity"] for p in profiles], stat="spearman")
    pairwise = {f"{labels[i]} vs {labels[j]}": affinity_consistency(profiles[i]["affinity"], profiles[j]["affinity"])
                for i in range(len(labels)) for j in range(i + 1, len(labels))}
    claims = _claims(cfg, teacher_entries, students, ce, consistency, spearman_correlation)
    claims.append(_remedy_claim(cfg, teacher_entries, students, best_methods))
    return {
        "study": "capacity",
        "dataset": cfg.data.name,
        "config": cfg.model_dump(mode="json"),
        "teachers": teacher_entries,
        "students": students,
        "ce_student": mean_std(list(ce.values())),
        "table": table,
        "best_method_per_teacher": best_methods,
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
    # teacher -> (label, mean accuracy) of its best KD method
    best_kd = {t["name"]: kd for t in teachers if (kd := _best_kd(cfg, students, t["name"])) is not None}
    if best_kd:
        best_teacher = max(best_kd, key=lambda n: best_kd[n][1])
        most_accurate = max(teachers, key=lambda t: t["test_accuracy"])["name"]
        diff = paired_by_seed(_by_seed(students, most_accurate, best_kd[most_accurate][0]),
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
        vs_kd = paired_by_seed(ats, _by_seed(students, largest, best_kd[largest][0]))
        vs_sym = paired_by_seed(ats, _by_seed(students, largest, "ats_symmetric")) if any(
            m.label == "ats_symmetric" for m in cfg.methods) else None
        vs_ce = paired_by_seed(ats, ce)
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
            isats = paired_by_seed(_by_seed(students, largest, "isats"), _by_seed(students, largest, best_kd[largest][0]))
            evidence += f"; ISATS - best KD = {format_interval(isats)}"
        claims.append({"claim": "asymmetric temperature scaling makes the large teacher teach well again",
                       "holds": holds, "evidence": evidence})
    return claims


def _best_kd(cfg: CapacityStudyConfig, students: list[dict[str, Any]], teacher: str) -> tuple[str, float] | None:
    """(label, mean test accuracy) of the teacher's best vanilla-KD student."""
    options = [(m.label, mean_std(list(_by_seed(students, teacher, m.label).values()))["mean"])
               for m in cfg.methods if m.role == "kd" and _by_seed(students, teacher, m.label)]
    return max(options, key=lambda o: o[1]) if options else None


def _best_methods(cfg: CapacityStudyConfig, labels: list[str], students: list[dict[str, Any]],
                  table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per teacher: the method with the best mean student accuracy and its paired gain over that teacher's best KD."""
    out = {}
    for label in labels:
        row = {m: v for m, v in table[label].items()}
        if not row:
            continue
        best = max(row, key=lambda m: row[m]["test_accuracy"]["mean"])
        kd = _best_kd(cfg, students, label)
        gain = paired_by_seed(_by_seed(students, label, best), _by_seed(students, label, kd[0])) if kd else None
        out[label] = {"method": best, "test_accuracy": row[best]["test_accuracy"],
                      "best_kd": kd[0] if kd else None, "minus_best_kd": gain}
    return out


def _remedy_claim(cfg: CapacityStudyConfig, teachers: list[dict[str, Any]], students: list[dict[str, Any]],
                  best_methods: dict[str, Any]) -> dict[str, Any]:
    """Claim 5: the best remedy's student from the largest teacher matches or beats the best KD student overall."""
    largest = max(teachers, key=lambda t: t["params"])["name"]
    remedies = [m.label for m in cfg.methods if m.role == "remedy" and _by_seed(students, largest, m.label)]
    kd_best = [(t["name"], _best_kd(cfg, students, t["name"])) for t in teachers]
    kd_best = [(t, kd) for t, kd in kd_best if kd is not None]
    if not remedies or not kd_best:
        return {"claim": "a remedy closes the capacity-mismatch gap", "holds": None,
                "evidence": "no remedy or no KD method in this configuration"}
    remedy = max(remedies, key=lambda m: mean_std(list(_by_seed(students, largest, m).values()))["mean"])
    kd_teacher, (kd_label, _) = max(kd_best, key=lambda tk: tk[1][1])
    diff = paired_by_seed(_by_seed(students, largest, remedy), _by_seed(students, kd_teacher, kd_label))
    no_gap = kd_teacher == largest
    if no_gap:
        holds: bool | None = None  # nothing to close: the largest teacher already gave the best KD student
    elif diff["mean"] >= 0:
        holds: bool | None = True
    elif diff["n"] > 1 and diff["high"] < 0:
        holds = False
    else:
        holds = None
    return {"claim": "a remedy closes the capacity-mismatch gap",
            "holds": holds,
            "evidence": (("there is no gap to close in this run: the best KD student already came from the largest "
                          "teacher. ") if no_gap else "")
                        + f"best remedy from the largest teacher {largest}: {remedy}; best KD student overall: "
                        f"{kd_label} from {kd_teacher}; paired difference {format_interval(diff)} points "
                        "(rule: undecided when the largest teacher is already the best KD teacher; else holds if "
                        "the mean difference >= 0, fails if the interval is below 0)"}


def _print_summary(results: dict[str, Any], out: Path) -> None:
    print(f"\nteachers ({results['dataset']}):")
    for t in results["teachers"]:
        print(f"  {t['name']:<28} {t['params']:>10,} params  test acc {t['test_accuracy'] * 100:6.2f}%  "
              f"derived std@4 {t['derived_std'].get('4.0', float('nan')):.4f}")
    ce = results["ce_student"]
    print(f"student CE only: {ce['mean'] * 100:.2f} ± {ce['std'] * 100:.2f}")
    methods = [m["label"] for m in results["config"]["methods"]]
    print("student accuracy (%) by teacher x method (mean ± std over seeds):")
    print("  " + " " * 28 + "".join(f"{m:>16}" for m in methods))
    for teacher, row in results["table"].items():
        cells = "".join(f"{row[m]['test_accuracy']['mean'] * 100:>9.2f} ±{row[m]['test_accuracy']['std'] * 100:>5.2f}"
                        if m in row else f"{'—':>16}" for m in methods)
        print(f"  {teacher:<28}{cells}")
    for teacher, best in results["best_method_per_teacher"].items():
        gain = best["minus_best_kd"]
        print(f"  best for {teacher}: {best['method']}" + (f" ({format_interval(gain)} vs {best['best_kd']})"
                                                             if gain else ""))
    for claim in results["claims"]:
        print(f"claim [{ {True: 'holds', False: 'does not hold', None: 'undecided'}[claim['holds']] }] "
              f"{claim['claim']}: {claim['evidence']}")
    print(f"\nresults: {out / 'results.json'}   report: {out / 'report.html'}")
