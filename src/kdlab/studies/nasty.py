"""Nasty-teacher study: can a teacher keep its accuracy but teach nothing, and does the skeptical student get round it?

Claims under test, from Ma, Chen, Hu, You, Xie, Wang, "Undistillable: Making A Nasty Teacher That CANNOT teach
students" (ICLR 2021) and Kundu, Sun, Fu, Pedram, Beerel, "Analyzing the Confidentiality of Undistillable Teachers
in Knowledge Distillation" (NeurIPS 2021):

1. the nasty teacher keeps its accuracy (within 1.5 points of the normal teacher);
2. students distilled from it are worse than students distilled from the normal teacher;
3. the skeptical student (KD into an auxiliary head at a shallow tap) recovers: it beats the KD student of the nasty
   teacher;
4. the skeptical student costs little with a normal teacher (not worse than its KD student by more than 1 point).

Recipe: train the normal teacher -> fine-tune a copy with the nasty loss against the frozen normal teacher (the
adversary; the protected model is the last epoch) -> per seed, the CE student and the KD and skeptical students of
each teacher (paired: same initial weights and batch order) -> dark-knowledge profile of both teachers -> paired
differences -> claims -> results.json, plots, report. Rules: docs/studies/nasty.md.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from tqdm.auto import tqdm

from ..config import Component, DataConfig, OptimConfig, ScheduleConfig, Section, TeacherConfig
from ..protect.nasty import nasty_run_config, protected_weights
from ..protect.skeptical import (SkepticalConfig, SkepticalHeadOptions, SkepticalRunConfig, check_skeptical,
                                 run_skeptical_in_store)
from .base import STUDIES
from .common import StageConfig, finish_study, open_study, stage_run_config
from ..analysis.stats import mean_std, paired_by_seed
from ..report.format import format_interval
from ..validate import check_components

log = logging.getLogger("kdlab")

# claim 1: the largest accuracy drop of the nasty teacher that still counts as "keeps its accuracy"
ACCURACY_TOLERANCE = 0.015
# claim 4: non-inferiority margin of the skeptical student against the KD student of the normal teacher
SKEPTICAL_MARGIN = 0.01


class NastyStage(Section):
    """How the nasty teacher is made from the normal one (see :mod:`kdlab.protect.nasty`)."""

    start: Literal["teacher", "scratch"] = "teacher"
    temperature: float = Field(4.0, gt=0)
    omega: float = Field(0.04, ge=0)
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(128, ge=1)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)


class StudentStage(StageConfig):
    """The student recipe, plus the tap where the skeptical student's auxiliary head sits."""

    tap: str = "hidden1"


class KDOptions(Section):
    """The KD loss of the KD students and, at the auxiliary head, of the skeptical students."""

    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.9, ge=0, le=1)


class NastyStudyConfig(Section):
    # run store shared between studies (content-addressed); default: <out>/runs
    store: str | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: StageConfig
    nasty: NastyStage = Field(default_factory=NastyStage)
    student: StudentStage
    kd: KDOptions = Field(default_factory=KDOptions)
    skeptical: SkepticalHeadOptions = Field(default_factory=SkepticalHeadOptions)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    teacher_seed: int = 0
    profile_temperatures: list[float] = Field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0], min_length=1)


DEFAULTS: dict[str, Any] = {
    "data": {"name": "fashion_mnist", "val_size": 5000, "seed": 0},
    # An MLP teacher 784-512-512-10 (0.67M params) on all 55k training images: ~89% in 10 epochs, ~40 s.
    "teacher": {"model": {"name": "mlp", "width": 512, "depth": 2}, "epochs": 10, "batch_size": 128,
                "optim": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "cosine"}},
    # Nasty fine-tuning from the teacher against itself: tau 4, omega 0.04 (the paper's CIFAR-10 setting, 10 classes).
    "nasty": {"start": "teacher", "temperature": 4.0, "omega": 0.04, "epochs": 10,
              "optim": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "cosine"}},
    # A 2-hidden-layer MLP student on 2,000 labelled images (where soft labels matter); the skeptical head reads its
    # first hidden layer.
    "student": {"model": {"name": "mlp", "width": 128, "depth": 2}, "epochs": 30, "batch_size": 128,
                "train_subset": 2000, "tap": "hidden1", "optim": {"name": "sgd", "lr": 0.05},
                "schedule": {"name": "cosine"}},
    "kd": {"temperature": 4.0, "alpha": 0.9},
    "seeds": [0, 1, 2],
}

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "data": {"val_size": 1000},
        "teacher": {"epochs": 2, "train_subset": 5000, "model": {"name": "mlp", "width": 128, "depth": 2}},
        "nasty": {"epochs": 2},
        "student": {"epochs": 5, "batch_size": 64, "train_subset": 500,
                    "model": {"name": "mlp", "width": 32, "depth": 2}},
        "seeds": [0],
    },
    # a conv teacher (3 stages, 32-64-128 channels, ~94k params) instead of the MLP: ~2.5x the teacher cost
    "cnn": {
        "teacher": {"model": {"name": "cnn", "width": 1.0, "depth": 3}, "epochs": 6},
        "nasty": {"epochs": 6},
    },
}

TEACHERS = ("normal", "nasty")


@STUDIES.register("nasty")
def run_nasty(config: str | Path | None = None, out: str | Path = "runs/nasty", preset: str | None = None,
              overrides: list[str] | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Run the nasty-teacher study; write results.json, plots, report.md and report.html into ``out``."""
    cfg, out, store, started = open_study(NastyStudyConfig, DEFAULTS, PRESETS, config, preset, overrides, out)

    # every run's config, validated before anything trains
    teacher_cfg = stage_run_config(cfg.teacher, cfg.data, cfg.teacher_seed)
    teacher_dir = store.path(teacher_cfg)
    n = cfg.nasty
    nasty_cfg = nasty_run_config(teacher_cfg.model, teacher_cfg.data, TeacherConfig(run=str(teacher_dir)),
                                 init=str(teacher_dir) if n.start == "teacher" else None, temperature=n.temperature,
                                 omega=n.omega, epochs=n.epochs, batch_size=n.batch_size, seed=cfg.teacher_seed,
                                 optim=n.optim, schedule=n.schedule)
    nasty_dir = store.path(nasty_cfg)
    teacher_sources = {
        "normal": TeacherConfig(run=str(teacher_dir)),
        "nasty": TeacherConfig(model=teacher_cfg.model, weights=str(protected_weights(nasty_dir))),
    }
    student_stage = StageConfig(**{k: getattr(cfg.student, k) for k in StageConfig.model_fields})
    kd_loss = Component(name="kd", temperature=cfg.kd.temperature, alpha=cfg.kd.alpha)
    plans: list[tuple[str | None, str, int, Any]] = []  # (teacher, method, seed, config)
    for seed in cfg.seeds:
        plans.append((None, "ce", seed, stage_run_config(student_stage, cfg.data, seed)))
        for name in TEACHERS:
            kd_cfg = stage_run_config(student_stage, cfg.data, seed, loss=kd_loss).model_copy(
                update={"teacher": teacher_sources[name]})
            plans.append((name, "kd", seed, kd_cfg))
            plans.append((name, "skeptical", seed, SkepticalRunConfig(run=kd_cfg, skeptical=SkepticalConfig(
                tap=cfg.student.tap, **cfg.skeptical.head_options()))))
    for run_cfg in (teacher_cfg, nasty_cfg):
        check_components(run_cfg)
    for _, method, _, run_cfg in plans:
        check_skeptical(run_cfg) if method == "skeptical" else check_components(run_cfg)
    _check_tap(cfg)

    bar = tqdm(total=2 + len(plans), desc="nasty study", unit="run", disable=progress is False)
    teacher = store.run(teacher_cfg, progress=progress)
    bar.update()
    log.info("normal teacher: test accuracy %.4f", teacher["test_accuracy"])
    store.run(nasty_cfg, progress=progress)
    bar.update()
    from ..protect.nasty import evaluate_protection

    protection = evaluate_protection(nasty_cfg, nasty_dir, Path(teacher["weights"]), teacher_sources["normal"])
    log.info("nasty teacher: test accuracy %.4f", protection["test_accuracy"])
    students = []
    for name, method, seed, run_cfg in plans:
        summary = (run_skeptical_in_store(store, run_cfg, progress=progress) if method == "skeptical"
                   else store.run(run_cfg, progress=progress))
        bar.update()
        loss = run_cfg.run.loss if method == "skeptical" else run_cfg.loss
        students.append({"teacher": name, "method": method, "hyperparams": loss.as_dict(), "seed": seed,
                         "test_accuracy": summary["test_accuracy"], "run_dir": summary["run_dir"]})
        log.info("student %s from %s teacher, seed %d: test accuracy %.4f", method, name, seed,
                 summary["test_accuracy"])
    bar.close()

    profiles = _profile_teachers(cfg, teacher_sources)
    results = _assemble(cfg, teacher, nasty_dir, protection, profiles, students)
    from ..report.nasty import write_nasty_report

    return finish_study(results, out, started, store.trained, store.reused, write_nasty_report, _print_summary)


def _check_tap(cfg: NastyStudyConfig) -> None:
    """The skeptical tap exists in the student model (ConfigError naming student.tap otherwise), before training."""
    from ..distill import resolve_tap
    from ..errors import ConfigError
    from ..models import create_model

    # tap names of kdlab models depend on the architecture options only, not on the input size
    in_shape = (1, 28, 28)
    try:
        model = create_model(cfg.student.model.name, 10, in_shape, **cfg.student.model.options)
        resolve_tap(model, cfg.student.tap)
    except ConfigError as exc:
        raise ConfigError(f"student.tap={cfg.student.tap!r}: {exc}") from None


@torch.inference_mode()
def _profile_teachers(cfg: NastyStudyConfig, sources: dict[str, TeacherConfig]) -> dict[str, Any]:
    """Dark knowledge of both teachers on the students' training inputs and on test; affinity; KL; outputs by rank."""
    from ..analysis import affinity_consistency
    from ..analysis.profile import profile_model
    from ..data import load_dataset
    from ..distill import load_teacher
    from ..models import predict_logits

    d = cfg.data
    data = load_dataset(d.name, data_dir=d.data_dir, val_size=d.val_size, seed=d.seed,
                        train_subset=cfg.student.train_subset, **d.options)
    temps = cfg.profile_temperatures
    profiles: dict[str, Any] = {"class_names": list(data.class_names)}
    logits, affinities = {}, {}
    for name, source in sources.items():
        model = load_teacher(source, data.num_classes, data.in_shape)
        distill_metrics, _ = profile_model(model, data.train.x, data.train.y, data.num_classes, temps)
        test_metrics, test_affinity = profile_model(model, data.test.x, data.test.y, data.num_classes, temps)
        logits[name] = predict_logits(model, data.test.x)
        affinities[name] = test_affinity
        profiles[name] = {"distill_set": distill_metrics, "test": test_metrics, "affinity": test_affinity.tolist()}
    t = cfg.kd.temperature
    # the average tempered output with each sample's classes in the order the *normal* teacher ranks them: the
    # normal teacher's curve falls monotonically; a nasty teacher moves mass to classes the normal one ranks low
    order = torch.softmax(logits["normal"] / t, dim=-1).argsort(dim=-1, descending=True)
    for name in TEACHERS:
        probs = torch.softmax(logits[name] / t, dim=-1).gather(1, order)
        profiles[name]["probs_by_normal_rank"] = probs.mean(0).tolist()
    log_p, log_q = torch.log_softmax(logits["nasty"] / t, -1), torch.log_softmax(logits["normal"] / t, -1)
    profiles["kl_nasty_to_normal"] = float(t * t * (log_p.exp() * (log_p - log_q)).sum(-1).mean())
    profiles["affinity_consistency"] = affinity_consistency(affinities["normal"], affinities["nasty"])
    return profiles


def _by_seed(students: list[dict[str, Any]], teacher: str | None, method: str) -> dict[int, float]:
    return {s["seed"]: s["test_accuracy"] for s in students if s["teacher"] == teacher and s["method"] == method}


def _teacher_entry(name: str, test_accuracy: float, weights: str, profile: dict[str, Any]) -> dict[str, Any]:
    from ..analysis.profile import teacher_report_fields

    return {
        "name": name,
        "test_accuracy": test_accuracy,
        "weights": weights,
        **teacher_report_fields(profile["distill_set"], profile["test"]),
        "probs_by_normal_rank": profile["probs_by_normal_rank"],
    }


def _assemble(cfg: NastyStudyConfig, teacher: dict[str, Any], nasty_dir: Path, protection: dict[str, Any],
              profiles: dict[str, Any], students: list[dict[str, Any]]) -> dict[str, Any]:
    teachers = [
        {**_teacher_entry("normal", teacher["test_accuracy"], teacher["weights"], profiles["normal"]),
         "params": teacher["params"], "run_dir": teacher["run_dir"]},
        {**_teacher_entry("nasty", protection["test_accuracy"], protection["weights"], profiles["nasty"]),
         "params": teacher["params"], "run_dir": str(nasty_dir),
         "kl_to_adversary_test": protection["kl_to_adversary_test"]},
    ]
    groups = {"ce": _by_seed(students, None, "ce")}
    for name in TEACHERS:
        for method in ("kd", "skeptical"):
            groups[f"{method}_{name}"] = _by_seed(students, name, method)
    table = {key: mean_std(list(accs.values())) for key, accs in groups.items()}
    differences = {
        "kd_nasty - kd_normal": paired_by_seed(groups["kd_nasty"], groups["kd_normal"]),
        "kd_nasty - ce": paired_by_seed(groups["kd_nasty"], groups["ce"]),
        "kd_normal - ce": paired_by_seed(groups["kd_normal"], groups["ce"]),
        "skeptical_nasty - kd_nasty": paired_by_seed(groups["skeptical_nasty"], groups["kd_nasty"]),
        "skeptical_nasty - kd_normal": paired_by_seed(groups["skeptical_nasty"], groups["kd_normal"]),
        "skeptical_nasty - ce": paired_by_seed(groups["skeptical_nasty"], groups["ce"]),
        "skeptical_normal - kd_normal": paired_by_seed(groups["skeptical_normal"], groups["kd_normal"]),
    }
    return {
        "study": "nasty",
        "dataset": cfg.data.name,
        "config": cfg.model_dump(mode="json"),
        "teachers": teachers,
        "students": students,
        "table": table,
        "differences": differences,
        "kl_nasty_to_normal_test": profiles["kl_nasty_to_normal"],
        "affinity_consistency": profiles["affinity_consistency"],
        "class_names": profiles["class_names"],
        "affinity": {name: profiles[name]["affinity"] for name in TEACHERS},
        "claims": _claims(teachers, differences),
    }


def _claims(teachers: list[dict[str, Any]], diffs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The four claims with verdicts by the rules fixed in docs/studies/nasty.md."""
    normal, nasty = teachers
    drop = normal["test_accuracy"] - nasty["test_accuracy"]
    claims = [{
        "claim": "the nasty teacher keeps its accuracy (within 1.5 points of the normal teacher)",
        "holds": bool(drop <= ACCURACY_TOLERANCE),
        "evidence": f"normal teacher {normal['test_accuracy'] * 100:.2f}%, nasty teacher (last epoch) "
                    f"{nasty['test_accuracy'] * 100:.2f}%: drop {drop * 100:+.2f} points (rule: holds if the drop is "
                    f"<= {ACCURACY_TOLERANCE * 100:.1f}); tau^2 KL(nasty || adversary) on test = "
                    f"{nasty['kl_to_adversary_test']:.3f}",
    }]
    d = diffs["kd_nasty - kd_normal"]
    claims.append({
        "claim": "students distilled from the nasty teacher are worse than students distilled from the normal teacher",
        "holds": True if d["n"] >= 2 and d["high"] < 0 else False if d["mean"] >= 0 else None,
        "evidence": f"KD from nasty - KD from normal = {format_interval(d)} points (paired over seeds, 95% t "
                    f"interval); KD from nasty - CE = {format_interval(diffs['kd_nasty - ce'])}; KD from normal - CE "
                    f"= {format_interval(diffs['kd_normal - ce'])} (rule: holds if the interval is below 0, does "
                    f"not hold if the mean is >= 0, else undecided)",
    })
    r = diffs["skeptical_nasty - kd_nasty"]
    gap = -d["mean"]
    # the recovered fraction is only quoted when the gap itself is established (claim 2's interval below 0)
    recovered = (f"; it recovers {r['mean'] / gap * 100:.0f}% of the gap between the KD students of the two teachers"
                 if d["n"] >= 2 and d["high"] < 0 and not math.isnan(r["mean"]) else "")
    claims.append({
        "claim": "the skeptical student recovers from the nasty teacher",
        "holds": True if r["n"] >= 2 and r["low"] > 0 else False if r["mean"] <= 0 else None,
        "evidence": f"skeptical from nasty - KD from nasty = {format_interval(r)} points; skeptical from nasty - KD "
                    f"from normal = {format_interval(diffs['skeptical_nasty - kd_normal'])}; skeptical from nasty - "
                    f"CE = {format_interval(diffs['skeptical_nasty - ce'])}{recovered} (rule: holds if the first "
                    f"interval is above 0, does not hold if its mean is <= 0, else undecided)",
    })
    s = diffs["skeptical_normal - kd_normal"]
    margin = -SKEPTICAL_MARGIN
    claims.append({
        "claim": "with the normal teacher the skeptical student is not worse than the KD student by more than 1 point",
        "holds": True if s["n"] >= 2 and s["low"] > margin else False if s["n"] >= 2 and s["high"] < margin else None,
        "evidence": f"skeptical from normal - KD from normal = {format_interval(s)} points (rule: holds if the interval "
                    f"lies above {margin * 100:+.1f}, does not hold if it lies below, else undecided)",
    })
    return claims


def _print_summary(results: dict[str, Any], out: Path) -> None:
    print(f"\nteachers ({results['dataset']}):")
    for t in results["teachers"]:
        print(f"  {t['name']:<8} test acc {t['test_accuracy'] * 100:6.2f}%  derived std@4 "
              f"{t['derived_std'].get('4.0', float('nan')):.4f}  non-GT entropy@4 "
              f"{t['nongt_entropy'].get('4.0', float('nan')):.3f}")
    print("students (test accuracy %, mean ± std over seeds):")
    for key, stats in results["table"].items():
        print(f"  {key:<18} {stats['mean'] * 100:6.2f} ± {stats['std'] * 100:.2f}")
    for claim in results["claims"]:
        verdict = {True: "holds", False: "does not hold", None: "undecided"}[claim["holds"]]
        print(f"claim [{verdict}] {claim['claim']}: {claim['evidence']}")
    print(f"\nresults: {out / 'results.json'}   report: {out / 'report.html'}")
