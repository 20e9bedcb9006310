"""Nasty-teacher study: can a teacher keep its accuracy but teach nothing, and does the skeptical student get round it?

Claims under test, from Ma, Chen, Hu, You, Xie, Wang, "Undistillable: Making A Nasty Teacher That CANNOT teach
students" (ICLR 2021) and Kundu, Sun, Fu, Pedram, Beerel, "Analyzing the Confidentiality of Undistillable Teachers
in Knowledge Distillation" (NeurIPS 2021):

1. the nasty teacher keeps its accuracy (within 1.5 points of the normal teacher);
2. students distilled from it are worse than students distilled from the normal teacher;
3. the skeptical student (KD into an auxiliary head at a shallow tap) recovers: it beats the KD student of the nasty
   teacher;
4. the skeptical student costs little with a normal teacher (not worse than its KD student by more than 1 point).

Plan: the normal teacher; a copy fine-tuned with the nasty loss against the frozen normal teacher (the adversary;
the protected model is the last epoch); per seed, the CE student and the KD and skeptical students of each teacher
(paired: same initial weights and batch order). Analysis: dark-knowledge profile of both teachers, paired
differences. Claims are declared below (rules generated into docs/studies/nasty.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from ..analysis import affinity_consistency
from ..analysis.profile import profile_model, teacher_report_fields
from ..analysis.stats import mean_std, paired_by_seed, paired_proportion_difference
from ..analysis.verdict import Claim, Measurement, NotApplicable, Rule, decide, paired_measurement
from ..config import Component, DataConfig, OptimConfig, ScheduleConfig, Section, TeacherConfig
from ..data import load_dataset
from ..distill import load_teacher, resolve_tap
from ..errors import ConfigError
from ..models import create_model, predict_logits
from ..protect.nasty import NastyTeacherJob, nasty_run_config, protected_weights
from ..protect.skeptical import SkepticalConfig, SkepticalHeadOptions, SkepticalRunConfig
from ..report import Report
from ..report.format import format_interval, format_pm, model_name
from ..store import RunStore
from .base import STUDIES
from .common import StageConfig, stage_run_config
from .driver import Planned, RunSet, Study, StudyConfig, Wave

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


class NastyStudyConfig(StudyConfig):
    """The nasty study's config: the normal teacher, how the nasty one is made, the students and the skeptical head."""
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


def plan(cfg: NastyStudyConfig, store: RunStore) -> list[Wave]:
    """The normal teacher; the nasty teacher fine-tuned against it; per seed the CE, KD and skeptical students."""
    teacher = stage_run_config(cfg.teacher, cfg.data, cfg.teacher_seed)
    teacher_dir = store.path(teacher)
    n = cfg.nasty
    nasty = NastyTeacherJob(run=nasty_run_config(
        teacher.model, teacher.data, TeacherConfig(run=str(teacher_dir)),
        init=str(teacher_dir) if n.start == "teacher" else None, temperature=n.temperature, omega=n.omega,
        epochs=n.epochs, batch_size=n.batch_size, seed=cfg.teacher_seed, optim=n.optim, schedule=n.schedule),
        teacher_weights=str(teacher_dir / "checkpoints" / "best.safetensors"))
    sources = teacher_sources(teacher_dir, teacher.model, store.path(nasty))
    stage = StageConfig(**{k: getattr(cfg.student, k) for k in StageConfig.model_fields})
    kd_loss = Component(name="kd", temperature=cfg.kd.temperature, alpha=cfg.kd.alpha)
    students = []
    for seed in cfg.seeds:
        students.append(Planned({"role": "student", "teacher": None, "method": "ce", "seed": seed},
                                stage_run_config(stage, cfg.data, seed)))
        for name in TEACHERS:
            kd = stage_run_config(stage, cfg.data, seed, loss=kd_loss).model_copy(update={"teacher": sources[name]})
            students.append(Planned({"role": "student", "teacher": name, "method": "kd", "seed": seed}, kd))
            students.append(Planned({"role": "student", "teacher": name, "method": "skeptical", "seed": seed},
                                    SkepticalRunConfig(run=kd, skeptical=SkepticalConfig(
                                        tap=cfg.student.tap, **cfg.skeptical.head_options()))))
    return [Wave("normal teacher", [Planned({"role": "teacher"}, teacher)]),
            Wave("nasty teacher", [Planned({"role": "nasty"}, nasty)]), Wave("students", students)]


def teacher_sources(teacher_dir: Path, model: Component, nasty_dir: Path) -> dict[str, TeacherConfig]:
    """How students load each teacher: the normal run's best weights; the nasty run's protected (last) weights."""
    return {"normal": TeacherConfig(run=str(teacher_dir)),
            "nasty": TeacherConfig(model=model, weights=str(protected_weights(nasty_dir)))}


def check_tap(cfg: NastyStudyConfig, planned: list[Planned]) -> None:
    """The skeptical tap exists in the student model (ConfigError naming student.tap otherwise), before training."""
    # tap names of kdlab models depend on the architecture options only, not on the input size
    try:
        model = create_model(cfg.student.model.name, 10, (1, 28, 28), **cfg.student.model.options)
        resolve_tap(model, cfg.student.tap)
    except ConfigError as exc:
        raise ConfigError(f"student.tap={cfg.student.tap!r}: {exc}") from None


@torch.inference_mode()
def _profile_teachers(cfg: NastyStudyConfig, sources: dict[str, TeacherConfig]) -> dict[str, Any]:
    """Dark knowledge of both teachers on the students' training inputs and on test; affinity; KL; outputs by rank;
    the paired per-sample accuracy difference of the two teachers on test."""
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
    correct = {name: (logits[name].argmax(1) == data.test.y).double().tolist() for name in TEACHERS}
    profiles["teacher_accuracy_difference"] = paired_proportion_difference(correct["nasty"], correct["normal"])
    return profiles


def analyse(cfg: NastyStudyConfig, runs: RunSet) -> dict[str, Any]:
    """Both teachers' accuracy and dark knowledge, the students' table and the paired differences."""
    teacher, nasty = runs.one(role="teacher"), runs.one(role="nasty")
    protection = nasty.summary["protected"]
    profiles = _profile_teachers(cfg, teacher_sources(Path(teacher.run_dir), cfg.teacher.model,
                                                      Path(nasty.run_dir)))

    def entry(name: str, test_accuracy: float, weights: str) -> dict[str, Any]:
        p = profiles[name]
        return {"name": name, "test_accuracy": test_accuracy, "weights": weights,
                **teacher_report_fields(p["distill_set"], p["test"]), "probs_by_normal_rank": p["probs_by_normal_rank"]}

    teachers = [
        {**entry("normal", teacher.test_accuracy, teacher.summary["weights"]), "params": teacher.summary["params"],
         "run_dir": teacher.run_dir},
        {**entry("nasty", protection["test_accuracy"], protection["weights"]), "params": teacher.summary["params"],
         "run_dir": nasty.run_dir, "kl_to_adversary_test": protection["kl_to_adversary_test"]},
    ]
    students = [{"teacher": r.tags["teacher"], "method": r.tags["method"],
                 "hyperparams": (r.job.run if r.tags["method"] == "skeptical" else r.job).loss.as_dict(),
                 "seed": r.tags["seed"], "test_accuracy": r.test_accuracy, "val_accuracy": r.val_accuracy,
                 "run_dir": r.run_dir} for r in runs.select(role="student")]
    groups = {"ce": runs.by_seed("test_accuracy", role="student", method="ce")}
    for name in TEACHERS:
        for method in ("kd", "skeptical"):
            groups[f"{method}_{name}"] = runs.by_seed("test_accuracy", role="student", teacher=name, method=method)
    differences = {f"{a} - {b}": paired_by_seed(groups[a], groups[b]) for a, b in DIFFERENCES}
    return {
        "dataset": cfg.data.name,
        "config": cfg.model_dump(mode="json"),
        "teacher_model": model_name(cfg.teacher.model.as_dict(), teacher.summary["params"]),
        "teachers": teachers,
        "teacher_accuracy_difference": profiles["teacher_accuracy_difference"],
        "students": students,
        "table": {key: mean_std(list(accs.values())) for key, accs in groups.items()},
        "differences": differences,
        "kl_nasty_to_normal_test": profiles["kl_nasty_to_normal"],
        "affinity_consistency": profiles["affinity_consistency"],
        "class_names": profiles["class_names"],
        "affinity": {name: profiles[name]["affinity"] for name in TEACHERS},
    }


DIFFERENCES = [("kd_nasty", "kd_normal"), ("kd_nasty", "ce"), ("kd_normal", "ce"), ("skeptical_nasty", "kd_nasty"),
               ("skeptical_nasty", "kd_normal"), ("skeptical_nasty", "ce"), ("skeptical_normal", "kd_normal")]


# ---------------------------------------------------------------------------------------------------- claims

POINTS = {"unit": "points", "scale": 100.0}
MA_2021 = "Ma et al., ICLR 2021"
KUNDU_2021 = "Kundu et al., NeurIPS 2021"
STUDENTS_WORSE = Rule("<", 0.0, **POINTS)


def _keeps_accuracy(results: dict[str, Any]) -> Measurement:
    d = results["teacher_accuracy_difference"]
    normal, nasty = results["teachers"]
    return Measurement(d["mean"], d["low"], d["high"], d["n"], "95% normal interval over paired test samples",
                       f"normal teacher {normal['test_accuracy'] * 100:.2f}%, nasty teacher (last epoch) "
                       f"{nasty['test_accuracy'] * 100:.2f}%; tau^2 KL(nasty || adversary) on test = "
                       f"{nasty['kl_to_adversary_test']:.3f}")


def _students_worse(results: dict[str, Any]) -> Measurement:
    diffs = results["differences"]
    return paired_measurement(diffs["kd_nasty - kd_normal"],
                              f"KD from nasty - CE = {format_interval(diffs['kd_nasty - ce'])}; KD from normal - CE "
                              f"= {format_interval(diffs['kd_normal - ce'])} points")


def _recovers(results: dict[str, Any]) -> Measurement | NotApplicable:
    diffs = results["differences"]
    harm = diffs["kd_nasty - kd_normal"]
    if decide(STUDENTS_WORSE, harm["low"], harm["high"]) is not True:
        return NotApplicable("the nasty teacher did not measurably hurt its KD students (KD from nasty - KD from "
                             f"normal = {format_interval(harm)} points), so there is nothing to recover")
    r = diffs["skeptical_nasty - kd_nasty"]
    share = f"; it recovers {r['mean'] / -harm['mean'] * 100:.0f}% of the gap" if harm["mean"] < 0 else ""
    return paired_measurement(r, f"skeptical from nasty - KD from normal = "
                                 f"{format_interval(diffs['skeptical_nasty - kd_normal'])}; skeptical from nasty - CE "
                                 f"= {format_interval(diffs['skeptical_nasty - ce'])} points{share}")


def claims(cfg: NastyStudyConfig) -> list[Claim]:
    """The four claims of the nasty-teacher study (Ma et al. 2021; Kundu et al. 2021)."""
    return [
        Claim("keeps_accuracy", "the nasty teacher keeps its accuracy (within 1.5 points of the normal teacher)",
              "nasty - normal teacher test accuracy, paired over test samples (points)",
              Rule(">", -0.015, **POINTS), _keeps_accuracy, source=MA_2021),
        Claim("students_worse", "students distilled from the nasty teacher are worse than students distilled from "
              "the normal teacher", "KD student from the nasty teacher - KD student from the normal teacher, test "
              "accuracy, paired over seeds (points)", STUDENTS_WORSE, _students_worse, source=MA_2021),
        Claim("skeptical_recovers", "the skeptical student recovers from the nasty teacher",
              "skeptical student from the nasty teacher - KD student from the nasty teacher, test accuracy, paired "
              "over seeds (points)", Rule(">", 0.0, **POINTS), _recovers,
              precondition="the nasty teacher hurts its KD students (the 'students are worse' interval lies below 0)",
              source=KUNDU_2021),
        Claim("skeptical_cheap", "with the normal teacher the skeptical student is not worse than the KD student by "
              "more than 1 point", "skeptical student - KD student, both from the normal teacher, test accuracy, "
              "paired over seeds (points)", Rule(">", -0.01, **POINTS),
              lambda r: paired_measurement(r["differences"]["skeptical_normal - kd_normal"]), source=KUNDU_2021),
    ]


# ---------------------------------------------------------------------------------------------------- report

STUDENT_LABELS = {"ce": "CE only", "kd_normal": "KD from normal", "kd_nasty": "KD from nasty",
                  "skeptical_normal": "skeptical from normal", "skeptical_nasty": "skeptical from nasty"}


def dark_knowledge_figure(series: dict[str, dict[str, dict[str, float]]], title: str) -> dict[str, Any]:
    """Derived std and non-GT entropy against temperature, one line per model: series[model][metric][tau]."""
    return {"title": title, "size": [10, 4], "panels": [
        {"type": "lines", "xscale": "log2", "xlabel": "temperature tau", "ylabel": label,
         "series": [{"label": name, "x": [float(t) for t in sorted(m[metric], key=float)],
                     "y": [m[metric][t] for t in sorted(m[metric], key=float)]} for name, m in series.items()]}
        for metric, label in (("derived_std", "derived std of non-GT probabilities"),
                              ("nongt_entropy", "non-GT entropy (normalised)"))]}


def report(results: dict[str, Any]) -> Report:
    """The nasty report: claims, teachers, students, differences and three figures."""
    cfg = results["config"]
    n, st = cfg["nasty"], cfg["student"]
    rep = Report(f"kdlab nasty-teacher study — {results['dataset']}")
    rep.paragraph(
        f"Normal teacher: {results['teacher_model']}, trained {cfg['teacher']['epochs']} epochs. Nasty teacher: the "
        f"same network {'fine-tuned from the normal teacher' if n['start'] == 'teacher' else 'trained from scratch'} "
        f"for {n['epochs']} epochs with L = CE - omega tau^2 KL(nasty || adversary), tau = {n['temperature']:g}, "
        f"omega = {n['omega']:g}, the frozen normal teacher as adversary (Ma et al., ICLR 2021); the protected model "
        f"is the last epoch. Students: {model_name(st['model'])} trained {st['epochs']} epochs on "
        f"{st['train_subset'] or 'all'} labelled images, seeds {cfg['seeds']} (paired: same initial weights and "
        f"batches per seed); KD at T = {cfg['kd']['temperature']:g}, alpha = {cfg['kd']['alpha']:g}. Skeptical "
        f"students (Kundu et al., NeurIPS 2021) receive the same KD loss at an auxiliary head on tap '{st['tap']}' "
        "and CE at their final head.")
    rep.claims_section(results)
    rep.heading("Teachers")
    rep.table(["teacher", "test acc (%)", "derived std @4", "non-GT entropy @4", "target prob @4", "inherent variance",
               "test ECE"],
              [[t["name"], f"{t['test_accuracy'] * 100:.2f}", f"{t['derived_std'].get('4.0', float('nan')):.4f}",
                f"{t['nongt_entropy'].get('4.0', float('nan')):.3f}",
                f"{t['target_prob'].get('4.0', float('nan')):.3f}", f"{t['inherent_variance']:.2f}",
                f"{t['ece']:.3f}"] for t in results["teachers"]])
    ac = results["affinity_consistency"]
    spearman = "n/a" if ac["spearman"] is None else f"{ac['spearman']:.3f}"
    overlap = "n/a" if ac["topk_overlap"] is None else f"{ac['topk_overlap']:.3f}"
    rep.paragraph(f"tau^2 KL(nasty || normal) on the test split at tau = {cfg['kd']['temperature']:g}: "
                  f"{results['kl_nasty_to_normal_test']:.3f}. Affinity consistency between the two teachers "
                  f"(Spearman over off-diagonal entries): {spearman}; top-{ac['top_k']} overlap {overlap}.")
    rep.heading("Students: test accuracy (%), mean ± std over seeds")
    keys = list(results["table"])
    rep.table(["student", "test acc (%)", "n"],
              [[STUDENT_LABELS.get(k, k), format_pm(v), str(v["n"])] for k, v in results["table"].items()])
    rep.heading("Paired differences (points, 95% t interval)")
    rep.table(["difference", "mean [interval]"], [[k, format_interval(v)] for k, v in results["differences"].items()])
    stats = [results["table"][k] for k in keys]
    rep.figure("students.png", {"title": "Students by teacher and method (mean ± std over seeds)",
                                "size": [max(4, 1.2 * len(keys)), 3.5], "panels": [{
                                    "type": "bars", "categories": [STUDENT_LABELS.get(k, k) for k in keys],
                                    "ylabel": "student test accuracy (%)", "legend": "none",
                                    "series": [{"values": [s["mean"] * 100 for s in stats],
                                                "errors": [s["std"] * 100 for s in stats]}]}]},
               "students by teacher and method")
    rep.figure("dark_knowledge.png", dark_knowledge_figure(
        {t["name"]: t for t in results["teachers"]},
        "Dark knowledge of the normal and the nasty teacher (students' training inputs)"),
        "derived std and non-GT entropy against temperature")
    ranks = len(results["teachers"][0]["probs_by_normal_rank"])
    rep.figure("outputs_by_normal_rank.png", {"title": "Average tempered output on the test split", "size": [6, 4],
                                              "panels": [{
        "type": "bars", "categories": [str(k) for k in range(ranks)], "rotate": 0,
        "xlabel": "class rank by the normal teacher's probability (0 = its top class)",
        "ylabel": f"mean softmax(z / {cfg['kd']['temperature']:g})", "ylim": [0, 1],
        "series": [{"label": t["name"], "values": t["probs_by_normal_rank"]} for t in results["teachers"]]}]},
        "average tempered output, classes ranked by the normal teacher")
    rep.reproduce(results)
    return rep


NASTY = STUDIES.register("nasty")(Study(
    name="nasty", config=NastyStudyConfig, defaults=DEFAULTS, presets=PRESETS, plan=plan, analyse=analyse,
    claims=claims, report=report, check=check_tap, description=__doc__.splitlines()[0]))
