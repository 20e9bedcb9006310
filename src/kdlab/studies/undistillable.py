"""Undistillable-classes study: which classes does KD make worse, does that grow with the teacher, and does TLLM fix it?

Claims under test, from Zhu, Liu, Xu, Liu, Meng, Wang, Ou, Tang, "Teach Less, Learn More: On the Undistillable
Classes in Knowledge Distillation", NeurIPS 2022:

1. undistillable classes exist: KD makes some classes reliably worse than training on labels alone;
2. their number grows with the teacher-student capacity gap;
3. TLLM (KD with the teacher dropped for the samples of those classes) improves overall accuracy over KD.

Recipe (two passes; docs/studies/undistillable.md):
  first pass   the capacity study's teacher family; per seed the CE student and the KD student of every teacher
               (the same RunConfigs as ``kdlab study capacity``, so one ``store`` reuses them)
  detection    per teacher: per-class gain KD - CE over paired seeds on the detection split (validation by
               default, so the test split stays untouched by the selection), an interval, the detection rule
  second pass  per teacher with a non-empty set: the TLLM student per seed with that set
  evaluation   on the test split: per-class gains, confusion shift, the teacher's own per-class statistics,
               TLLM vs KD per class and overall -> claims -> results.json, plots, report.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from tqdm.auto import tqdm

from ..config import Component, DataConfig, Section
from ..errors import ConfigError
from .base import STUDIES
from .capacity import DEFAULTS as CAPACITY_DEFAULTS
from .capacity import PRESETS as CAPACITY_PRESETS
from .capacity import TeacherFamily, teacher_family_configs
from .common import StageConfig, finish_study, load_study_config, stage_run_config
from ..analysis.stats import mean_std, paired_by_seed, paired_difference
from ..report.format import format_interval
from ..store import RunStore
from ..validate import check_components

log = logging.getLogger("kdlab")

KD_OPTIONS = ("temperature", "alpha")


class UndistillableStudyConfig(Section):
    # run store shared between studies (content-addressed); default: <out>/runs
    store: str | None = None
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


@STUDIES.register("undistillable")
def run_undistillable(config: str | Path | None = None, out: str | Path = "runs/undistillable",
                      preset: str | None = None, overrides: list[str] | None = None,
                      progress: bool | None = None) -> dict[str, Any]:
    """Run the undistillable-classes study; write results.json, plots, report.md and report.html into ``out``."""
    cfg: UndistillableStudyConfig = load_study_config(UndistillableStudyConfig, DEFAULTS, PRESETS, config, preset,
                                                      list(overrides or []))
    if cfg.detect_split == "val" and not cfg.data.val_size:
        raise ConfigError(f"detect_split='val' needs data.val_size > 0, got data.val_size={cfg.data.val_size!r}; "
                          "allowed: a validation split, or detect_split: test")
    out = Path(out)
    store = RunStore(cfg.store or out / "runs")
    started = time.perf_counter()

    # every first-pass run's config, validated before anything trains (the same configs as the capacity study)
    teacher_cfgs = teacher_family_configs(cfg.teachers, cfg.data, cfg.teacher_seed)
    teacher_dirs = [store.path(t) for t in teacher_cfgs]
    ce_cfgs = {seed: stage_run_config(cfg.student, cfg.data, seed) for seed in cfg.seeds}
    kd_cfgs = {(ti, seed): stage_run_config(cfg.student, cfg.data, seed, loss=cfg.kd, teacher_run=teacher_dirs[ti])
               for ti in range(len(teacher_cfgs)) for seed in cfg.seeds}
    for run_cfg in [*teacher_cfgs, *ce_cfgs.values(), *kd_cfgs.values()]:
        check_components(run_cfg)
    # the TLLM loss with these KD settings must build (its class set is filled in after detection)
    tllm_base = _tllm_component(cfg.kd, [])
    check_components(stage_run_config(cfg.student, cfg.data, cfg.seeds[0], loss=tllm_base,
                                      teacher_run=teacher_dirs[0]))

    bar = tqdm(total=len(teacher_cfgs) + len(ce_cfgs) + len(kd_cfgs), desc="undistillable study", unit="run",
               disable=progress is False)
    teachers = []
    for i, run_cfg in enumerate(teacher_cfgs):
        summary = store.run(run_cfg, progress=progress)
        bar.update()
        log.info("teacher %d/%d %s: %s params, test accuracy %.4f", i + 1, len(teacher_cfgs),
                 _model_label(run_cfg.model), f"{summary['params']:,}", summary["test_accuracy"])
        teachers.append(summary)
    ce_runs = {}
    for seed, run_cfg in ce_cfgs.items():
        ce_runs[seed] = store.run(run_cfg, progress=progress)
        bar.update()
    kd_runs = {}
    for (ti, seed), run_cfg in kd_cfgs.items():
        kd_runs[ti, seed] = store.run(run_cfg, progress=progress)
        bar.update()

    data = _load_data(cfg)
    splits = {"val": data.val, "test": data.test}
    detect, test = splits[cfg.detect_split], data.test
    num_classes = data.num_classes
    confidence = _class_confidence(cfg, num_classes)
    ce_pred = {name: _stack([_predict(ce_runs[s], split.x) for s in cfg.seeds]) for name, split in splits.items()
               if len(split)}

    from ..analysis.undistillable import class_gain, undistillable_classes

    def gain(a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor):
        return class_gain(a, b, labels, num_classes, interval=cfg.interval, confidence=confidence,
                          num_bootstrap=cfg.num_bootstrap, seed=0)

    # detection, per teacher, on the detection split
    kd_pred, detected, detect_gains = {}, [], []
    for ti in range(len(teacher_cfgs)):
        kd_pred[ti] = {name: _stack([_predict(kd_runs[ti, s], split.x) for s in cfg.seeds])
                       for name, split in splits.items() if len(split)}
        g = gain(kd_pred[ti][cfg.detect_split], ce_pred[cfg.detect_split], detect.y)
        detect_gains.append(g)
        detected.append(undistillable_classes(g, cfg.threshold))
        log.info("teacher %d: undistillable classes %s", ti + 1, detected[-1] or "none")

    # second pass: TLLM per teacher with a non-empty set
    tllm_cfgs = {(ti, seed): stage_run_config(cfg.student, cfg.data, seed, loss=_tllm_component(cfg.kd, classes),
                                              teacher_run=teacher_dirs[ti])
                 for ti, classes in enumerate(detected) if classes for seed in cfg.seeds}
    for run_cfg in tllm_cfgs.values():
        check_components(run_cfg)
    bar.total += len(tllm_cfgs)
    bar.refresh()
    tllm_runs = {}
    for key, run_cfg in tllm_cfgs.items():
        tllm_runs[key] = store.run(run_cfg, progress=progress)
        bar.update()
    bar.close()
    tllm_pred = {ti: _stack([_predict(tllm_runs[ti, s], test.x) for s in cfg.seeds])
                 for ti, classes in enumerate(detected) if classes}

    profiles = _profile_teachers(cfg, teacher_dirs, data, detected)
    ctx = {"cfg": cfg, "data": data, "confidence": confidence, "gain": gain}
    results = _assemble(ctx, teacher_cfgs, teachers, ce_runs, kd_runs, tllm_runs, ce_pred, kd_pred, tllm_pred,
                        detect_gains, detected, profiles)
    from ..report.undistillable import write_undistillable_report

    return finish_study(results, out, started, store.trained, store.reused, write_undistillable_report, _print_summary)


# ---------------------------------------------------------------------------------------------- helpers


def _tllm_component(kd: Component, classes: list[int]) -> Component:
    """The TLLM loss matching ``kd`` (same temperature and alpha, resolved to kd's defaults) with ``classes``."""
    from ..losses import build

    hp = build("kd", **kd.options).hyperparams
    return Component(name="tllm", temperature=hp["temperature"], alpha=hp["alpha"],
                     undistillable_classes=sorted(int(c) for c in classes))


def _class_confidence(cfg: UndistillableStudyConfig, num_classes: int) -> float:
    if cfg.correction == "bonferroni":
        return 1.0 - (1.0 - cfg.confidence) / num_classes
    return cfg.confidence


def _model_label(model: Component) -> str:
    opts = ",".join(f"{k}={v}" for k, v in model.options.items())
    return f"{model.name}({opts})"


def _load_data(cfg: UndistillableStudyConfig):
    from ..data import load_dataset

    d = cfg.data
    # the students' training subset is the distill set; val and test do not depend on it
    return load_dataset(d.name, data_dir=d.data_dir, val_size=d.val_size, seed=d.seed,
                        train_subset=cfg.student.train_subset, **d.options)


def _weights(summary: dict[str, Any]) -> Path:
    """The run's best-validation weights (summary["weights"]; the run directory's copy if the path moved)."""
    from ..distill.teacher import teacher_weights_path

    path = Path(summary["weights"])
    return path if path.is_file() else teacher_weights_path(summary["run_dir"])


def _predict(summary: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    """Predicted classes [N] of the trained model of ``summary`` on inputs ``x``."""
    from ..models import load_model_weights, predict_logits

    return predict_logits(load_model_weights(_weights(summary)), x).argmax(dim=1)


def _stack(rows: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(rows)


def _profile_teachers(cfg: UndistillableStudyConfig, teacher_dirs: list[Path], data,
                      detected: list[list[int]]) -> list[dict[str, Any]]:
    """Each teacher's per-class statistics: dark knowledge on the distill set (what is distilled), accuracy on test."""
    from ..analysis.undistillable import per_class_accuracy, teacher_class_profile
    from ..config import TeacherConfig
    from ..distill import load_teacher
    from ..models import predict_logits

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
            "test_accuracy": summary["test_accuracy"], "run_dir": summary["run_dir"]}


# ---------------------------------------------------------------------------------------------- results


def _assemble(ctx: dict[str, Any], teacher_cfgs: list, teachers: list[dict[str, Any]], ce_runs: dict,
              kd_runs: dict, tllm_runs: dict, ce_pred: dict, kd_pred: dict, tllm_pred: dict, detect_gains: list,
              detected: list[list[int]], profiles: list[dict[str, Any]]) -> dict[str, Any]:
    from ..analysis.undistillable import confusion_shift, shift_destinations, undistillable_classes

    cfg: UndistillableStudyConfig = ctx["cfg"]
    data, gain = ctx["data"], ctx["gain"]
    names = list(data.class_names)
    test_y = data.test.y
    seeds = cfg.seeds
    student_params = _student_params(ce_runs)

    students = [_student_record(None, "ce", Component(name="ce"), s, ce_runs[s]) for s in seeds]
    ce_acc = dict(zip(seeds, (ce_runs[s]["test_accuracy"] for s in seeds)))
    entries = []
    for ti, (run_cfg, summary, profile) in enumerate(zip(teacher_cfgs, teachers, profiles)):
        label = _model_label(run_cfg.model)
        students += [_student_record(label, "kd", cfg.kd, s, kd_runs[ti, s]) for s in seeds]
        kd_acc = {s: kd_runs[ti, s]["test_accuracy"] for s in seeds}
        test_gain = gain(kd_pred[ti]["test"], ce_pred["test"], test_y)
        classes = detected[ti]
        on_test = undistillable_classes(test_gain, cfg.threshold)
        shift = confusion_shift(kd_pred[ti]["test"], ce_pred["test"], test_y, len(names))
        entry: dict[str, Any] = {
            "name": label,
            "model": run_cfg.model.as_dict(),
            "params": summary["params"],
            "params_ratio": summary["params"] / student_params if student_params else None,
            "test_accuracy": summary["test_accuracy"],
            "run_dir": summary["run_dir"],
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
            tllm_acc = {s: tllm_runs[ti, s]["test_accuracy"] for s in seeds}
            tllm_loss = _tllm_component(cfg.kd, classes)
            students += [_student_record(label, "tllm", tllm_loss, s, tllm_runs[ti, s]) for s in seeds]
            vs_kd = gain(tllm_pred[ti], kd_pred[ti]["test"], test_y)
            entry["tllm"] = {
                "classes": classes,
                "test_accuracy": mean_std(list(tllm_acc.values())),
                "test_accuracy_per_seed": [tllm_acc[s] for s in seeds],
                "minus_kd": paired_by_seed(tllm_acc, kd_acc),
                "minus_ce": paired_by_seed(tllm_acc, ce_acc),
                "gain_vs_kd": vs_kd.as_dict(),
                "gain_vs_ce": gain(tllm_pred[ti], ce_pred["test"], test_y).as_dict(),
                "removed_classes_minus_kd": {str(c): vs_kd.mean[c] for c in classes},
            }
        entries.append(entry)
    return {
        "study": "undistillable",
        "dataset": cfg.data.name,
        "config": cfg.model_dump(mode="json"),
        "class_names": names,
        "student_params": student_params,
        "detection": {"split": cfg.detect_split, "interval": cfg.interval, "confidence": cfg.confidence,
                      "class_confidence": ctx["confidence"], "correction": cfg.correction,
                      "threshold": cfg.threshold, "n_seeds": len(seeds),
                      "expected_false_detections_per_teacher": len(names) * (1 - ctx["confidence"]) / 2,
                      "rule": f"undistillable if the upper end of the {ctx['confidence'] * 100:g}% {cfg.interval} "
                              f"interval of the per-class gain (KD - CE) on the {cfg.detect_split} split is below "
                              f"{_minus(cfg.threshold)}"},
        "teachers": entries,
        "students": students,
        "ce_student": mean_std(list(ce_acc.values())),
        "claims": _claims(cfg, entries, seeds, [ce_acc[s] for s in seeds]),
    }


def _student_params(ce_runs: dict[int, dict[str, Any]]) -> int | None:
    for summary in ce_runs.values():
        return int(summary["params"])
    return None


def _fmt_classes(classes: list[int], names: list[str] | None = None) -> str:
    if not classes:
        return "none"
    return ", ".join(f"{c}" + (f" ({names[c]})" if names else "") for c in classes)


def _claims(cfg: UndistillableStudyConfig, teachers: list[dict[str, Any]], seeds: list[int],
            ce_per_seed: list[float]) -> list[dict[str, Any]]:
    """Each paper claim with a verdict by a rule fixed in advance (docs/studies/undistillable.md)."""
    from ..analysis import spearman_correlation

    claims = []
    split = cfg.detect_split
    has_interval = not all(math.isnan(h) for t in teachers for h in t["gain"]["detect"]["high"])

    # 1. existence, replicated on the test split when detection ran on the validation split
    found = [(t["name"], t["undistillable_classes"]) for t in teachers if t["undistillable_classes"]]
    replicated = [(t["name"], t["replicated_on_test"]) for t in teachers if t["replicated_on_test"]]
    test_only = [(t["name"], t["undistillable_on_test"]) for t in teachers if t["undistillable_on_test"]]
    if not has_interval:
        holds: bool | None = None
    elif replicated:
        holds = True
    elif not found and not test_only:
        holds = False
    else:
        holds = None
    detail = "; ".join(
        f"{t['name']}: " + (", ".join(
            f"class {c} gain {_fmt_gain(t['gain']['detect'], c)} on {split}, {_fmt_gain(t['gain']['test'], c)} on test"
            for c in t["undistillable_classes"]) or "none")
        for t in teachers)
    plural = "s" if len(seeds) > 1 else ""
    if split == "val":
        rule = ("rule: holds if at least one class detected on the val split is also below the threshold on the test "
                "split, fails if no class is detected on either split, undecided otherwise")
        replication = f"replicated on the test split: {sum(len(c) for _, c in replicated)}; "
    else:
        rule = "rule: holds if at least one class is detected, fails if none is (detection on the test split)"
        replication = ""
    claims.append({
        "claim": "undistillable classes exist",
        "holds": holds,
        "evidence": f"classes whose KD - CE accuracy gain is reliably below {_minus(cfg.threshold)} "
                    f"({cfg.interval} interval, {len(seeds)} paired seed{plural}) per teacher: {detail}; "
                    f"{replication}{rule}",
    })

    # 2. count against teacher size
    params = [t["params"] for t in teachers]
    counts = [len(t["undistillable_classes"]) for t in teachers]
    rho = spearman_correlation(params, counts)
    if not has_interval:
        holds = None
    elif len(set(counts)) == 1:
        holds = False
    elif math.isnan(rho):
        holds = None
    else:
        holds = True if rho >= 0.8 else (False if rho <= 0 else None)
    ratios = ", ".join(f"{t['params_ratio']:.1f}x" if t["params_ratio"] else "?" for t in teachers)
    claims.append({
        "claim": "the number of undistillable classes grows with the teacher-student capacity gap",
        "holds": holds,
        "evidence": f"undistillable classes per teacher (ascending size, teacher/student params {ratios}): "
                    f"{counts}; Spearman rho(teacher params, count) = "
                    + ("undefined (constant counts)" if math.isnan(rho) else f"{rho:+.2f}")
                    + "; rule: holds if rho >= 0.8, fails if rho <= 0 or every teacher has the same count, "
                      "undecided between",
    })

    # 3. TLLM vs KD overall, pooled over the teachers where TLLM removed something (elsewhere TLLM is KD)
    with_tllm = [t for t in teachers if t["tllm"] is not None]
    if not with_tllm:
        claims.append({"claim": "TLLM improves overall accuracy over KD", "holds": None,
                       "evidence": "no undistillable class was detected for any teacher, so TLLM equals KD and was "
                                   "not trained; nothing to test"})
        return claims
    per_seed_tllm, per_seed_kd = [], []
    for i, _ in enumerate(seeds):
        per_seed_tllm.append(sum(_seed_acc(t, "tllm", i) for t in with_tllm) / len(with_tllm))
        per_seed_kd.append(sum(_seed_acc(t, "kd", i) for t in with_tllm) / len(with_tllm))
    pooled = paired_difference(per_seed_tllm, per_seed_kd)
    # context, not part of the rule: removing many classes drifts TLLM towards the CE student
    vs_ce = paired_difference(per_seed_tllm, ce_per_seed)
    if pooled["n"] < 2:
        holds = None
    elif pooled["low"] > 0:
        holds = True
    elif pooled["mean"] <= 0:
        holds = False
    else:
        holds = None
    claims.append({
        "claim": "TLLM improves overall accuracy over KD",
        "holds": holds,
        "evidence": f"TLLM - KD test accuracy, averaged over the {len(with_tllm)} teacher(s) with undistillable "
                    f"classes, paired over seeds: {format_interval(pooled)} points (95% t interval); per teacher: "
                    + "; ".join(f"{t['name']} (removed {_fmt_classes(t['tllm']['classes'])}): "
                                f"{format_interval(t['tllm']['minus_kd'])}" for t in with_tllm)
                    + f"; for context, pooled TLLM - CE = {format_interval(vs_ce)} points"
                    + "; rule: holds if the pooled interval is above 0, fails if its mean is <= 0, undecided "
                      "otherwise",
    })
    return claims


def _seed_acc(teacher: dict[str, Any], method: str, seed_index: int) -> float:
    """Test accuracy of the ``method`` student ("kd" or "tllm") of this teacher with seed number ``seed_index``."""
    if method == "kd":
        return teacher["kd_test_accuracy_per_seed"][seed_index]
    return teacher["tllm"]["test_accuracy_per_seed"][seed_index]


def _minus(threshold: float) -> str:
    """-threshold as text, in points when it is a fraction of accuracy ("0" rather than "-0")."""
    return "0" if threshold == 0 else f"-{threshold * 100:g} points"


def _fmt_gain(gain: dict[str, Any], c: int) -> str:
    mean, low, high = gain["mean"][c], gain["low"][c], gain["high"][c]
    if math.isnan(low):
        return f"{mean * 100:+.1f} (no interval)"
    return f"{mean * 100:+.1f} [{low * 100:+.1f}, {high * 100:+.1f}]"


def _print_summary(results: dict[str, Any], out: Path) -> None:
    names = results["class_names"]
    print(f"\nundistillable classes ({results['dataset']}; {results['detection']['rule']}):")
    ce = results["ce_student"]
    print(f"  CE student: {ce['mean'] * 100:.2f} ± {ce['std'] * 100:.2f}")
    for t in results["teachers"]:
        kd = t["kd_test_accuracy"]
        line = (f"  {t['name']:<24} {t['params']:>10,} params  KD {kd['mean'] * 100:6.2f}  undistillable: "
                f"{_fmt_classes(t['undistillable_classes'], names)}")
        if t["tllm"]:
            line += f"  TLLM - KD {format_interval(t['tllm']['minus_kd'])}"
        print(line)
    for claim in results["claims"]:
        print(f"claim [{ {True: 'holds', False: 'does not hold', None: 'undecided'}[claim['holds']] }] "
              f"{claim['claim']}: {claim['evidence']}")
    print(f"\nresults: {out / 'results.json'}   report: {out / 'report.html'}")
