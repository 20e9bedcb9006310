"""Undistillable-classes study: which classes does KD make worse, does that grow with the teacher, and does TLLM fix it?

Claims under test, from Zhu, Liu, Xu, Liu, Meng, Wang, Ou, Tang, "Teach Less, Learn More: On the Undistillable
Classes in Knowledge Distillation", NeurIPS 2022:

1. undistillable classes exist: KD makes some classes reliably worse than training on labels alone;
2. their number grows with the teacher-student capacity gap;
3. TLLM (KD with the teacher dropped for the samples of those classes) improves overall accuracy over KD.

Plan (docs/studies/undistillable.md):
  first waves  the capacity study's teacher family; per seed the CE student and the KD student of every teacher
               (the same RunConfigs as ``kdlab study capacity``, so one ``store`` reuses them)
  detection    per teacher: per-class gain KD - CE over paired seeds on the detection split (validation by
               default, so the test split stays untouched by the selection), an interval, the detection rule
  last wave    built from the detection: per teacher with a non-empty set, the TLLM student per seed with that set
  analysis     on the test split: per-class gains, confusion shift, the teacher's own per-class statistics,
               TLLM vs KD per class and overall; claims declared below.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator

from ..analysis import spearman_correlation
from ..analysis.stats import mean_std, paired_by_seed, paired_difference
from ..analysis.undistillable import (bootstrap_detection_counts, class_gain, confusion_shift, per_class_accuracy,
                                      shift_destinations, teacher_class_profile, undistillable_classes)
from ..analysis.verdict import Claim, Measurement, NotApplicable, Rule, paired_measurement
from ..config import Component, DataConfig, TeacherConfig
from ..data import load_dataset
from ..distill import load_teacher
from ..distill.teacher import teacher_weights_path
from ..losses import build as build_loss
from ..models import load_model_weights, predict_logits
from ..report import Report
from ..report.format import format_interval, format_params, format_pm, model_name
from ..store import RunStore
from .base import STUDIES
from .capacity import DEFAULTS as CAPACITY_DEFAULTS
from .capacity import PRESETS as CAPACITY_PRESETS
from .capacity import TeacherFamily, teacher_family_configs
from .common import StageConfig, stage_run_config
from .driver import Planned, RunSet, Study, StudyConfig, Wave

KD_OPTIONS = ("temperature", "alpha")


class UndistillableStudyConfig(StudyConfig):
    """The undistillable study's config: the capacity study's family and student, the KD examined, detection."""
    data: DataConfig = Field(default_factory=DataConfig)
    teachers: TeacherFamily
    student: StageConfig
    # the KD method whose per-class transfer is examined; TLLM uses the same temperature and alpha
    kd: Component = Field(default_factory=lambda: Component(name="kd", temperature=4.0, alpha=0.9))
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    teacher_seed: int = 0
    # where undistillable classes are detected; "val" keeps the test split independent of the selection
    detect_split: Literal["val", "test"] = "val"
    interval: Literal["t", "bootstrap"] = "t"
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    # "bonferroni": each class's interval at 1 - (1 - confidence) / C, so the chance of any false detection per
    # teacher is at most (1 - confidence) / 2 instead of C * (1 - confidence) / 2
    correction: Literal["none", "bonferroni"] = "none"
    # a class is undistillable when the upper end of its gain interval is below -threshold (accuracy fraction)
    threshold: float = Field(0.0, ge=0.0, lt=1.0)
    num_bootstrap: int = Field(2000, ge=100)

    @model_validator(mode="after")
    def _detection_split_exists(self) -> "UndistillableStudyConfig":
        if self.detect_split == "val" and not self.data.val_size:
            raise ValueError(f"detect_split='val' needs data.val_size > 0, got data.val_size={self.data.val_size!r}; "
                             "allowed: a validation split, or detect_split: test")
        return self

    @field_validator("kd")
    @classmethod
    def _kd_only(cls, kd: Component) -> Component:
        if kd.name != "kd":
            raise ValueError(f"kd.name={kd.name!r} is not allowed; allowed: 'kd' (TLLM is KD minus some classes, "
                             "so the method examined must be kd)")
        extra = sorted(set(kd.options) - set(KD_OPTIONS))
        if extra:
            raise ValueError(f"kd option {extra[0]!r} is not allowed; allowed: {', '.join(KD_OPTIONS)} (TLLM must "
                             "match the KD objective exactly)")
        return kd

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct (each seed is one pair of students), got {seeds}")
        return seeds


def _capacity_part(source: dict[str, Any]) -> dict[str, Any]:
    """The keys this study shares with the capacity study (teachers, student recipe, data, seeds)."""
    return copy.deepcopy({k: v for k, v in source.items() if k in ("data", "teachers", "student", "seeds")})


DEFAULTS: dict[str, Any] = {
    **_capacity_part(CAPACITY_DEFAULTS),
    "kd": {"name": "kd", "temperature": 4.0, "alpha": 0.9},
}

PRESETS: dict[str, dict[str, Any]] = {
    # the capacity study's quick preset (1 seed); the bootstrap interval is the one that can decide with one seed
    "quick": {**_capacity_part(CAPACITY_PRESETS["quick"]), "interval": "bootstrap"},
    **{name: _capacity_part(p) for name, p in CAPACITY_PRESETS.items() if name != "quick"},
}


# ---------------------------------------------------------------------------------------------- plan


def plan(cfg: UndistillableStudyConfig, store: RunStore) -> list[Wave]:
    """The capacity study's teachers, CE and KD students (the same configs: one store shares them); then, built from
    the detection, the TLLM students of every teacher with undistillable classes."""
    teachers = teacher_family_configs(cfg.teachers, cfg.data, cfg.teacher_seed)
    dirs = [store.path(t) for t in teachers]
    students = [Planned({"role": "student", "method": "ce", "seed": seed},
                        stage_run_config(cfg.student, cfg.data, seed)) for seed in cfg.seeds]
    students += [Planned({"role": "student", "method": "kd", "teacher": ti, "seed": seed},
                         stage_run_config(cfg.student, cfg.data, seed, loss=cfg.kd, teacher_run=dirs[ti]))
                 for ti in range(len(teachers)) for seed in cfg.seeds]
    # the TLLM loss with these KD settings must build (its class set is filled in after detection)
    preview = [Planned({"role": "student", "method": "tllm", "teacher": 0, "seed": cfg.seeds[0]},
                       stage_run_config(cfg.student, cfg.data, cfg.seeds[0], loss=_tllm_component(cfg.kd, []),
                                        teacher_run=dirs[0]))]

    def tllm(runs: RunSet) -> list[Planned]:
        detected = _detect(cfg, runs, _load_data(cfg))[1]
        return [Planned({"role": "student", "method": "tllm", "teacher": ti, "seed": seed},
                        stage_run_config(cfg.student, cfg.data, seed, loss=_tllm_component(cfg.kd, classes),
                                         teacher_run=dirs[ti]))
                for ti, classes in enumerate(detected) if classes for seed in cfg.seeds]

    return [Wave("teachers", [Planned({"role": "teacher", "teacher": ti}, t) for ti, t in enumerate(teachers)]),
            Wave("students", students), Wave("TLLM students", build=tllm, preview=preview)]


def _gain(cfg: UndistillableStudyConfig, num_classes: int):
    confidence = _class_confidence(cfg, num_classes)

    def gain(a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor):
        return class_gain(a, b, labels, num_classes, interval=cfg.interval, confidence=confidence,
                          num_bootstrap=cfg.num_bootstrap, seed=0)
    return gain


def _predictions(cfg: UndistillableStudyConfig, runs: RunSet, split: Any, **tags: Any) -> torch.Tensor:
    """Predicted classes [S, N] on ``split`` of the students tagged ``tags``, one row per seed in seed order."""
    return _stack([_predict(runs.one(role="student", seed=seed, **tags).summary, split.x) for seed in cfg.seeds])


def _detect(cfg: UndistillableStudyConfig, runs: RunSet, data) -> tuple[list[Any], list[list[int]]]:
    """Per teacher: the per-class gain on the detection split and the classes the rule flags."""
    split = {"val": data.val, "test": data.test}[cfg.detect_split]
    gain = _gain(cfg, data.num_classes)
    ce = _predictions(cfg, runs, split, method="ce")
    gains = [gain(_predictions(cfg, runs, split, method="kd", teacher=ti), ce, split.y)
             for ti in range(len(cfg.teachers.capacities))]
    return gains, [undistillable_classes(g, cfg.threshold) for g in gains]


# ---------------------------------------------------------------------------------------------- helpers


def _tllm_component(kd: Component, classes: list[int]) -> Component:
    """The TLLM loss matching ``kd`` (same temperature and alpha, resolved to kd's defaults) with ``classes``."""
    hp = build_loss("kd", **kd.options).hyperparams
    return Component(name="tllm", temperature=hp["temperature"], alpha=hp["alpha"],
                     undistillable_classes=sorted(int(c) for c in classes))


def _class_confidence(cfg: UndistillableStudyConfig, num_classes: int) -> float:
    if cfg.correction == "bonferroni":
        return 1.0 - (1.0 - cfg.confidence) / num_classes
    return cfg.confidence


def _load_data(cfg: UndistillableStudyConfig):
    d = cfg.data
    # the students' training subset is the distill set; val and test do not depend on it
    return load_dataset(d.name, data_dir=d.data_dir, val_size=d.val_size, seed=d.seed,
                        train_subset=cfg.student.train_subset, **d.options)


def _weights(summary: dict[str, Any]) -> Path:
    """The run's best-validation weights (summary["weights"]; the run directory's copy if the path moved)."""
    path = Path(summary["weights"])
    return path if path.is_file() else teacher_weights_path(summary["run_dir"])


def _predict(summary: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    """Predicted classes [N] of the trained model of ``summary`` on inputs ``x``."""
    return predict_logits(load_model_weights(_weights(summary)), x).argmax(dim=1)


def _stack(rows: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(rows)


def _profile_teachers(cfg: UndistillableStudyConfig, teacher_dirs: list[Path], data,
                      detected: list[list[int]]) -> list[dict[str, Any]]:
    """Each teacher's per-class statistics: dark knowledge on the distill set (what is distilled), accuracy on test."""
    temperature = float(cfg.kd.options.get("temperature", 4.0))
    profiles = []
    for run_dir, classes in zip(teacher_dirs, detected):
        teacher = load_teacher(TeacherConfig(run=str(run_dir)), data.num_classes, data.in_shape)
        distill = teacher_class_profile(predict_logits(teacher, data.train.x), data.train.y, classes, temperature)
        test_acc = per_class_accuracy(predict_logits(teacher, data.test.x).argmax(1), data.test.y, data.num_classes)
        profiles.append({"distill_set": distill, "test_accuracy_per_class": _json_floats(test_acc)})
    return profiles


def _json_floats(t: torch.Tensor) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in t.tolist()]


def _accuracies(preds: torch.Tensor, labels: torch.Tensor) -> list[float]:
    return [float(v) for v in (preds == labels).double().mean(dim=1).tolist()]


def _student_record(teacher: str | None, method: str, loss: Component, seed: int,
                    summary: dict[str, Any]) -> dict[str, Any]:
    return {"teacher": teacher, "method": method, "hyperparams": loss.as_dict(), "seed": seed,
            "test_accuracy": summary["test_accuracy"], "val_accuracy": summary["best_val_accuracy"],
            "run_dir": summary["run_dir"]}


# ---------------------------------------------------------------------------------------------- results


# ---------------------------------------------------------------------------------------------- results


def analyse(cfg: UndistillableStudyConfig, runs: RunSet) -> dict[str, Any]:
    """Per teacher: per-class gains on both splits, detected classes, what KD does to them, TLLM."""
    data = _load_data(cfg)
    names = list(data.class_names)
    gain = _gain(cfg, data.num_classes)
    detect_gains, detected = _detect(cfg, runs, data)
    teachers = [runs.one(role="teacher", teacher=ti) for ti in range(len(cfg.teachers.capacities))]
    teacher_dirs = [Path(t.run_dir) for t in teachers]
    profiles = _profile_teachers(cfg, teacher_dirs, data, detected)
    seeds = cfg.seeds
    ce_runs = {s: runs.one(role="student", method="ce", seed=s).summary for s in seeds}
    student_params = _student_params(ce_runs)
    test_y = data.test.y
    ce_test = _predictions(cfg, runs, data.test, method="ce")
    students = [_student_record(None, "ce", Component(name="ce"), s, ce_runs[s]) for s in seeds]
    ce_acc = {s: ce_runs[s]["test_accuracy"] for s in seeds}
    entries = []
    for ti, (run, profile) in enumerate(zip(teachers, profiles)):
        label = model_name(run.job.model.as_dict(), run.summary["params"])
        kd_runs = {s: runs.one(role="student", method="kd", teacher=ti, seed=s).summary for s in seeds}
        students += [_student_record(label, "kd", cfg.kd, s, kd_runs[s]) for s in seeds]
        kd_acc = {s: kd_runs[s]["test_accuracy"] for s in seeds}
        kd_test = _predictions(cfg, runs, data.test, method="kd", teacher=ti)
        test_gain = gain(kd_test, ce_test, test_y)
        classes = detected[ti]
        on_test = undistillable_classes(test_gain, cfg.threshold)
        shift = confusion_shift(kd_test, ce_test, test_y, len(names))
        entry: dict[str, Any] = {
            "label": f"T{ti + 1}",
            "name": label,
            "model": run.job.model.as_dict(),
            "params": run.summary["params"],
            "params_ratio": run.summary["params"] / student_params if student_params else None,
            "test_accuracy": run.test_accuracy,
            "run_dir": run.run_dir,
            "kd_test_accuracy": mean_std(list(kd_acc.values())),
            "kd_test_accuracy_per_seed": [kd_acc[s] for s in seeds],
            "kd_minus_ce": paired_by_seed(kd_acc, ce_acc),
            "gain": {"detect": detect_gains[ti].as_dict(), "test": test_gain.as_dict()},
            "undistillable_classes": classes,
            "undistillable_names": [names[c] for c in classes],
            "undistillable_on_test": on_test,
            "replicated_on_test": [c for c in classes if c in on_test],
            # the paper's point-estimate view, for comparison: every class whose mean gain is below 0
            "negative_mean_classes": [c for c, m in enumerate(detect_gains[ti].mean) if m < 0],
            "confusion_shift": {str(c): {"row": [float(v) for v in shift[c].tolist()],
                                         "destinations": [{**d, "name": names[d["class"]]}
                                                          for d in shift_destinations(shift, c)]}
                                for c in classes},
            "teacher_profile": profile,
            "tllm": None,
        }
        if classes:
            tllm_runs = {s: runs.one(role="student", method="tllm", teacher=ti, seed=s).summary for s in seeds}
            tllm_acc = {s: tllm_runs[s]["test_accuracy"] for s in seeds}
            tllm_loss = _tllm_component(cfg.kd, classes)
            students += [_student_record(label, "tllm", tllm_loss, s, tllm_runs[s]) for s in seeds]
            tllm_test = _predictions(cfg, runs, data.test, method="tllm", teacher=ti)
            vs_kd = gain(tllm_test, kd_test, test_y)
            entry["tllm"] = {
                "classes": classes,
                "test_accuracy": mean_std(list(tllm_acc.values())),
                "test_accuracy_per_seed": [tllm_acc[s] for s in seeds],
                "minus_kd": paired_by_seed(tllm_acc, kd_acc),
                "minus_ce": paired_by_seed(tllm_acc, ce_acc),
                "gain_vs_kd": vs_kd.as_dict(),
                "gain_vs_ce": gain(tllm_test, ce_test, test_y).as_dict(),
                "removed_classes_minus_kd": {str(c): vs_kd.mean[c] for c in classes},
            }
        entries.append(entry)
    # the count trend's spread: detection redone on bootstrap replicates of the detection split's samples
    split = {"val": data.val, "test": data.test}[cfg.detect_split]
    counts = None
    if cfg.interval == "t":
        counts = bootstrap_detection_counts(
            [_predictions(cfg, runs, split, method="kd", teacher=ti) for ti in range(len(entries))],
            _predictions(cfg, runs, split, method="ce"), split.y, data.num_classes,
            confidence=_class_confidence(cfg, data.num_classes), threshold=cfg.threshold,
            num_bootstrap=min(cfg.num_bootstrap, 1000), seed=0)
    params = [e["params"] for e in entries]
    rho = {"estimate": spearman_correlation(params, [len(e["undistillable_classes"]) for e in entries]),
           "low": math.nan, "high": math.nan, "replicates": 0}
    if counts is not None:
        replicates = [spearman_correlation(params, row.tolist()) for row in counts]
        replicates = [r for r in replicates if not math.isnan(r)]
        if replicates:
            low, high = torch.tensor(replicates, dtype=torch.float64).quantile(
                torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
            rho.update(low=low, high=high, replicates=len(replicates))
    confidence = _class_confidence(cfg, data.num_classes)
    return {
        "dataset": cfg.data.name,
        "config": cfg.model_dump(mode="json"),
        "class_names": names,
        "student_params": student_params,
        "detection": {"split": cfg.detect_split, "interval": cfg.interval, "confidence": cfg.confidence,
                      "class_confidence": confidence, "correction": cfg.correction,
                      "threshold": cfg.threshold, "n_seeds": len(seeds),
                      "expected_false_detections_per_teacher": len(names) * (1 - confidence) / 2,
                      "rule": f"undistillable if the upper end of the {confidence * 100:g}% {cfg.interval} "
                              f"interval of the per-class gain (KD - CE) on the {cfg.detect_split} split is below "
                              f"{_minus(cfg.threshold)}"},
        "teachers": entries,
        "count_trend": rho,
        "students": students,
        "ce_student": mean_std(list(ce_acc.values())),
        "ce_test_accuracy_per_seed": [ce_acc[s] for s in seeds],
    }


def _student_params(ce_runs: dict[int, dict[str, Any]]) -> int | None:
    for summary in ce_runs.values():
        return int(summary["params"])
    return None


def _fmt_classes(classes: list[int], names: list[str] | None = None) -> str:
    if not classes:
        return "none"
    return ", ".join(f"{c}" + (f" ({names[c]})" if names else "") for c in classes)


def _minus(threshold: float) -> str:
    """-threshold as text, in points when it is a fraction of accuracy ("0" rather than "-0")."""
    return "0" if threshold == 0 else f"-{threshold * 100:g} points"


def _fmt_gain(gain: dict[str, Any], c: int) -> str:
    mean, low, high = gain["mean"][c], gain["low"][c], gain["high"][c]
    if math.isnan(low):
        return f"{mean * 100:+.1f} (no interval)"
    return f"{mean * 100:+.1f} [{low * 100:+.1f}, {high * 100:+.1f}]"


# ---------------------------------------------------------------------------------------------- claims

ZHU = "Zhu et al., NeurIPS 2022"


def _exist(results: dict[str, Any]) -> Measurement:
    teachers, det = results["teachers"], results["detection"]
    has_interval = not all(math.isnan(h) for t in teachers for h in t["gain"]["detect"]["high"])
    replicated = sum(len(t["replicated_on_test"]) for t in teachers)
    flagged = sum(len(set(t["undistillable_classes"]) | set(t["undistillable_on_test"])) for t in teachers)
    if det["split"] == "test":
        replicated = flagged = sum(len(t["undistillable_classes"]) for t in teachers)
    detail = "; ".join(
        f"{t['label']}: " + (", ".join(f"class {c} gain {_fmt_gain(t['gain']['detect'], c)} on {det['split']}, "
                                       f"{_fmt_gain(t['gain']['test'], c)} on test"
                                       for c in t["undistillable_classes"]) or "none") for t in teachers)
    n = len(teachers) * len(results["class_names"])
    context = (f"{det['rule']}; per teacher: {detail}; lower end = classes detected on {det['split']} and replicated "
               f"on test ({replicated}), upper end = classes flagged on either split ({flagged})")
    if not has_interval:
        return Measurement(float(flagged), math.nan, math.nan, det["n_seeds"], "no per-class interval", context)
    return Measurement(float(replicated), float(replicated), float(flagged), n,
                       "count interval: [detected and replicated, flagged on either split]", context)


def _count_grows(results: dict[str, Any]) -> Measurement | NotApplicable:
    teachers = results["teachers"]
    counts = [len(t["undistillable_classes"]) for t in teachers]
    ratios = ", ".join(f"{t['params_ratio']:.1f}x" if t["params_ratio"] else "?" for t in teachers)
    context = f"undistillable classes per teacher (ascending size, teacher/student params {ratios}): {counts}"
    if not any(counts):
        return NotApplicable("nothing to test: no undistillable class was detected for any teacher", context)
    trend = results["count_trend"]
    return Measurement(trend["estimate"], trend["low"], trend["high"], trend["replicates"],
                       "95% bootstrap over the detection split's samples (detection redone in each replicate)",
                       context)


def _tllm_improves(results: dict[str, Any]) -> Measurement | NotApplicable:
    with_tllm = [t for t in results["teachers"] if t["tllm"] is not None]
    if not with_tllm:
        return NotApplicable("nothing to test: no undistillable class was detected for any teacher, so TLLM equals KD "
                             "and was not trained")
    seeds = range(len(results["ce_test_accuracy_per_seed"]))
    tllm = [sum(t["tllm"]["test_accuracy_per_seed"][i] for t in with_tllm) / len(with_tllm) for i in seeds]
    kd = [sum(t["kd_test_accuracy_per_seed"][i] for t in with_tllm) / len(with_tllm) for i in seeds]
    pooled = paired_difference(tllm, kd)
    # context, not part of the rule: removing many classes drifts TLLM towards the CE student
    vs_ce = paired_difference(tllm, results["ce_test_accuracy_per_seed"])
    return paired_measurement(pooled, f"averaged over the {len(with_tllm)} teacher(s) with undistillable classes; "
                                      "per teacher: " + "; ".join(
                                          f"{t['label']} (removed {_fmt_classes(t['tllm']['classes'])}): "
                                          f"{format_interval(t['tllm']['minus_kd'])}" for t in with_tllm)
                              + f"; for context, pooled TLLM - CE = {format_interval(vs_ce)} points",
                              {"classes removed": {t["label"]: t["tllm"]["classes"] for t in with_tllm}},
                              "the detection split (validation by default)")


def claims(cfg: UndistillableStudyConfig) -> list[Claim]:
    """The three claims of Zhu et al. (NeurIPS 2022)."""
    nothing = "at least one undistillable class is detected for some teacher"
    return [
        Claim("classes_exist", "undistillable classes exist",
              "number of (teacher, class) pairs whose KD - CE accuracy gain is reliably below "
              f"{_minus(cfg.threshold)}", Rule(">=", 1.0, digits=0), _exist,
              selection=f"the classes are detected on the {cfg.detect_split} split", source=ZHU),
        Claim("count_grows", "the number of undistillable classes grows with the teacher-student capacity gap",
              "Spearman correlation of teacher parameters with the number of undistillable classes",
              Rule(">=", 0.8), _count_grows, precondition=nothing, source=ZHU),
        Claim("tllm_improves", "TLLM improves overall accuracy over KD",
              "TLLM - KD student test accuracy, averaged over the teachers with undistillable classes, paired over "
              "seeds (points)", Rule(">", 0.0, unit="points", scale=100.0), _tllm_improves, precondition=nothing,
              selection=f"the classes TLLM removes are those detected on the {cfg.detect_split} split", source=ZHU),
    ]


# ---------------------------------------------------------------------------------------------- report

KD_COLOR, TEST_COLOR, LOST_COLOR, TLLM_COLOR = "#4c78a8", "#9ecae9", "#e45756", "#54a24b"


def _errors(gain: dict[str, Any]) -> list[list[float]]:
    """Asymmetric error bars (mean - low, high - mean) in points; none where there is no interval."""
    lower = [0.0 if math.isnan(lo) else (m - lo) * 100 for m, lo in zip(gain["mean"], gain["low"])]
    upper = [0.0 if math.isnan(hi) else (hi - m) * 100 for m, hi in zip(gain["mean"], gain["high"])]
    return [lower, upper]


def _teacher_ticks(teachers: list[dict[str, Any]]) -> list[Any]:
    return [[t["params"] for t in teachers], [f"{t['label']}\n{format_params(t['params'])}" for t in teachers]]


def _class_gain_figure(results: dict[str, Any]) -> dict[str, Any]:
    teachers, names, det = results["teachers"], results["class_names"], results["detection"]
    split = det["split"]
    panels = []
    for t in teachers:
        detect = {"label": f"{split} split (detection)", "values": [m * 100 for m in t["gain"]["detect"]["mean"]],
                  "errors": _errors(t["gain"]["detect"]),
                  "colors": [LOST_COLOR if c in t["undistillable_classes"] else KD_COLOR for c in range(len(names))]}
        series = [detect] + ([] if split == "test" else [
            {"label": "test split", "values": [m * 100 for m in t["gain"]["test"]["mean"]],
             "errors": _errors(t["gain"]["test"]), "color": TEST_COLOR}])
        panels.append({"type": "bars", "categories": names, "series": series, "title": f"{t['label']} {t['name']}",
                       "ylabel": "KD - CE (points)", "rotate": 30, "legend": "best" if t is teachers[0] else "none",
                       "hlines": [{"y": 0, "style": "-", "width": 0.8}]
                       + ([{"y": -det["threshold"] * 100, "color": LOST_COLOR, "style": ":"}] if det["threshold"] else
                          [])})
    conf = det["class_confidence"] * 100
    return {"title": f"Per-class distillation gain, mean over seeds with {conf:.4g}% {det['interval']} interval "
                     "(red: undistillable)", "layout": [len(teachers), 1],
            "size": [max(7, 0.7 * len(names)), 2.6 * len(teachers)], "panels": panels}


def _count_figure(results: dict[str, Any]) -> dict[str, Any]:
    teachers, split = results["teachers"], results["detection"]["split"]
    params = [t["params"] for t in teachers]
    series = [{"label": f"reliably negative on {split} (detected)", "x": params,
               "y": [len(t["undistillable_classes"]) for t in teachers], "color": LOST_COLOR}]
    if split != "test":
        series.append({"label": "reliably negative on test", "x": params, "style": "s-", "color": TEST_COLOR,
                       "y": [len(t["undistillable_on_test"]) for t in teachers]})
    series.append({"label": f"mean gain < 0 on {split} (no interval)", "x": params, "style": "^--", "color": "#888",
                   "y": [len(t["negative_mean_classes"]) for t in teachers]})
    return {"size": [6, 3.8], "panels": [{"type": "lines", "xscale": "log", "xticks": _teacher_ticks(teachers),
                                          "xlabel": "teacher parameters", "ylabel": "classes", "series": series,
                                          "title": "Undistillable classes against teacher capacity"}]}


def _accuracy_figure(results: dict[str, Any]) -> dict[str, Any]:
    teachers, ce = results["teachers"], results["ce_student"]
    with_tllm = [t for t in teachers if t["tllm"]]
    series = [{"label": "KD", "x": [t["params"] for t in teachers], "color": KD_COLOR,
               "y": [t["kd_test_accuracy"]["mean"] * 100 for t in teachers],
               "err": [t["kd_test_accuracy"]["std"] * 100 for t in teachers]}]
    if with_tllm:
        series.append({"label": "TLLM (teachers with undistillable classes)", "x": [t["params"] for t in with_tllm],
                       "y": [t["tllm"]["test_accuracy"]["mean"] * 100 for t in with_tllm], "style": "s",
                       "err": [t["tllm"]["test_accuracy"]["std"] * 100 for t in with_tllm], "color": TLLM_COLOR})
    return {"size": [6, 3.8], "panels": [{
        "type": "lines", "xscale": "log", "xticks": _teacher_ticks(teachers), "xlabel": "teacher parameters",
        "ylabel": "student test accuracy (%)", "title": "Student accuracy by teacher (mean ± std over seeds)",
        "series": series, "hlines": [{"y": ce["mean"] * 100, "label": "CE only",
                                      "band": [(ce["mean"] - ce["std"]) * 100, (ce["mean"] + ce["std"]) * 100]}]}]}


def _tllm_figure(results: dict[str, Any]) -> dict[str, Any]:
    names = results["class_names"]
    teachers = [t for t in results["teachers"] if t["tllm"]]
    return {"title": "Per-class TLLM - KD on the test split (green: classes TLLM taught with labels only)",
            "layout": [len(teachers), 1], "size": [max(7, 0.7 * len(names)), 2.6 * len(teachers)],
            "panels": [{"type": "bars", "categories": names, "rotate": 30, "ylabel": "TLLM - KD (points)",
                        "legend": "none", "hlines": [{"y": 0, "style": "-", "width": 0.8}],
                        "title": f"{t['label']}: removed {', '.join(names[c] for c in t['tllm']['classes'])}",
                        "series": [{"values": [m * 100 for m in t["tllm"]["gain_vs_kd"]["mean"]],
                                    "errors": _errors(t["tllm"]["gain_vs_kd"]),
                                    "colors": [TLLM_COLOR if c in t["tllm"]["classes"] else KD_COLOR
                                               for c in range(len(names))]}]} for t in teachers]}


def _gain_cell(gain: dict[str, Any], c: int) -> str:
    mean, low, high = gain["mean"][c], gain["low"][c], gain["high"][c]
    if math.isnan(low):
        return f"{mean * 100:+.2f} (no interval)"
    return f"{mean * 100:+.2f} [{low * 100:+.2f}, {high * 100:+.2f}]"


def _pct(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value * 100:.2f}"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def report(results: dict[str, Any]) -> Report:
    """The undistillable report: claims, classes per teacher, per-class gains, TLLM and figures."""
    cfg, det, names = results["config"], results["detection"], results["class_names"]
    st = cfg["student"]
    rep = Report(f"kdlab undistillable-classes study — {results['dataset']}")
    rep.paragraph(
        "Zhu et al., \"Teach Less, Learn More: On the Undistillable Classes in Knowledge Distillation\" (NeurIPS "
        "2022): KD can raise overall accuracy while the student gets worse than a label-only student on some "
        "classes. Here every teacher of a capacity family teaches the same student recipe with KD "
        f"({cfg['kd']}); the per-class gain is the KD student's per-class accuracy minus the CE-only student's, "
        f"paired by seed (seeds {cfg['seeds']}: same initial weights and batch order).")
    rep.paragraph(
        f"Teachers: {'; '.join(t['label'] + ' = ' + t['name'] for t in results['teachers'])}; "
        f"{cfg['teachers']['epochs']} epochs on {cfg['teachers']['train_subset'] or 'all'} training images. "
        f"Student: {model_name(st['model'], results['student_params'])}, {st['epochs']} epochs on "
        f"{st['train_subset'] or 'all'} labelled images.")
    rep.paragraph(
        f"Detection rule (fixed in advance): {det['rule']}. Each class is one test, so with no real effect about "
        f"{det['expected_false_detections_per_teacher']:.2f} classes per teacher are expected to be flagged by "
        f"chance (correction: {det['correction']}). Detection uses the {det['split']} split"
        + (", so the test split, where TLLM is evaluated and where detections are replicated, played no part in "
           "choosing the classes." if det["split"] == "val" else
           "; TLLM is evaluated on the same split that chose its classes (optimistic)."))
    rep.claims_section(results)
    rep.heading("Undistillable classes per teacher")
    rep.paragraph(f"CE-only student: {format_pm(results['ce_student'])} % test accuracy.")
    rep.table(["teacher", "teacher/student params", "teacher test acc (%)", "KD student (%)", "KD - CE (points)",
               f"undistillable ({det['split']})", "also on test", "mean gain < 0"],
              [[f"{t['label']} {t['name']}", f"{t['params_ratio']:.1f}x" if t["params_ratio"] else "–",
                f"{t['test_accuracy'] * 100:.2f}", format_pm(t["kd_test_accuracy"]), format_interval(t["kd_minus_ce"]),
                ", ".join(names[c] for c in t["undistillable_classes"]) or "none",
                ", ".join(names[c] for c in t["replicated_on_test"]) or "none",
                str(len(t["negative_mean_classes"]))] for t in results["teachers"]])
    rep.figure("class_gains.png", _class_gain_figure(results), "per-class gain KD - CE with intervals")
    rep.figure("undistillable_count.png", _count_figure(results),
               "number of undistillable classes against teacher capacity")
    rows = []
    for t in results["teachers"]:
        prof = t["teacher_profile"]
        dist = prof["distill_set"]
        test_acc = prof["test_accuracy_per_class"]
        mean_test = [v for v in test_acc if v is not None]
        for c in t["undistillable_classes"]:
            shift = t["confusion_shift"][str(c)]["destinations"]
            cls = dist["classes"][str(c)]
            avg = dist["mean_over_classes"]
            label = names[c] if names[c] == str(c) else f"{c} {names[c]}"
            rows.append([t["label"], label, _gain_cell(t["gain"]["detect"], c), _gain_cell(t["gain"]["test"], c),
                         ", ".join(f"{d['name']} {d['shift'] * 100:+.1f}" for d in shift) or "–",
                         f"{_pct(test_acc[c])} / {_pct(sum(mean_test) / len(mean_test) if mean_test else None)}",
                         f"{_num(cls['target_prob'])} / {_num(avg['target_prob'])}",
                         f"{_num(cls['derived_std'], 4)} / {_num(avg['derived_std'], 4)}",
                         f"{_num(cls['nongt_entropy'])} / {_num(avg['nongt_entropy'])}"])
    rep.heading("What happens to the undistillable classes")
    if rows:
        temp = results["teachers"][0]["teacher_profile"]["distill_set"]["temperature"]
        rep.paragraph(
            "Gains in points with their intervals. 'Lost to': where KD sends the class's test samples (mean over "
            "seeds of the row of confusion_KD - confusion_CE, points of the class's samples). Teacher columns: "
            f"this class / mean over all classes; dark knowledge at T = {temp:g} on the students' training inputs "
            "(what is distilled), teacher accuracy on test.")
        rep.table(["teacher", "class", f"gain on {det['split']}", "gain on test", "lost to (points)",
                   "teacher test acc (%)", "teacher p(GT)", "derived std", "non-GT entropy"], rows)
    else:
        rep.paragraph("No class met the detection rule for any teacher.")
    rep.heading("Remedy: TLLM (teacher dropped on the undistillable classes' samples)")
    with_tllm = [t for t in results["teachers"] if t["tllm"]]
    if with_tllm:
        rep.table(["teacher", "removed", "KD (%)", "TLLM (%)", "TLLM - KD (points)", "TLLM - CE (points)",
                   "TLLM - KD on removed classes (points)"],
                  [[t["label"], ", ".join(names[c] for c in t["tllm"]["classes"]), format_pm(t["kd_test_accuracy"]),
                    format_pm(t["tllm"]["test_accuracy"]), format_interval(t["tllm"]["minus_kd"]),
                    format_interval(t["tllm"]["minus_ce"]),
                    ", ".join(f"{names[int(c)]} {v * 100:+.1f}" for c, v in
                              t["tllm"]["removed_classes_minus_kd"].items())] for t in with_tllm])
        rep.figure("tllm_vs_kd.png", _tllm_figure(results), "per-class TLLM - KD")
    else:
        rep.paragraph("No teacher had undistillable classes, so TLLM equals KD and was not trained.")
    rep.figure("accuracy_by_teacher.png", _accuracy_figure(results), "student accuracy by teacher: CE, KD, TLLM")
    rep.reproduce(results)
    return rep


UNDISTILLABLE = STUDIES.register("undistillable")(Study(
    name="undistillable", config=UndistillableStudyConfig, defaults=DEFAULTS, presets=PRESETS, plan=plan,
    analyse=analyse, claims=claims, report=report, description=__doc__.splitlines()[0]))
