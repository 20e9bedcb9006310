"""Kinds study: which kind of knowledge, and which distillation scheme, helps this teacher-student pair?

Knowledge (Gou, Yu, Maybank, Tao, "Knowledge Distillation: A Survey", IJCV 2021, Sec. 2): response-based (kd;
Hinton et al. 2015), feature-based (FitNets, Romero et al. ICLR 2015; attention transfer, Zagoruyko & Komodakis
ICLR 2017) and relation-based (RKD, Park et al. CVPR 2019; similarity preserving, Tung & Mori ICCV 2019).
Schemes (Sec. 4): offline (a trained teacher), online (deep mutual learning, Zhang et al. CVPR 2018; teacher and
student trained together) and self-distillation (born-again networks, Furlanello et al. ICML 2018; be your own
teacher, Zhang et al. ICCV 2019).

Plan: the teacher; per seed the CE student and every method's student (paired: same initial weights and batch
order per seed; online and self-distillation runs need no pretrained teacher); then each born-again generation,
taught by the previous one. Analysis: paired differences against CE and against offline response KD. Claims
(declared below, rules generated into docs/studies/kinds.md): the best method of a kind is chosen on validation
accuracy, then compared with the reference on test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..analysis.stats import mean_std, paired_by_seed
from ..analysis.verdict import Claim, NotApplicable, Rule, paired_measurement
from ..config import Component, DataConfig, FeatureTermConfig, RunConfig, Section
from ..data import load_dataset
from ..distill import build_objective, freeze
from ..distill.schemes import born_again_configs
from ..errors import ConfigError
from ..losses import build as build_loss
from ..models import create_model
from ..report import Report
from ..report.format import format_interval, format_pm, model_name
from ..store import RunStore
from .base import STUDIES
from .common import StageConfig, stage_run_config
from .driver import Planned, RunSet, Study, StudyConfig, Wave


RUN_SCHEMES = ("dml", "joint", "byot")  # single-run schemes (RunConfig.scheme); "ban" is a chain of runs


class KindsMethod(Section):
    """One way of teaching the student: a label, its kind of knowledge or scheme, and what it trains with.

    Offline methods (no ``scheme``) distil from the study's teacher with ``loss`` (default ce) plus ``features``.
    ``scheme``: ``{name: dml}`` (peers default to the teacher's architecture), ``{name: joint}`` (the teacher's
    architecture trained alongside; ``loss`` is the student's), ``{name: byot, ...}``, or ``{name: ban,
    generations: G}`` (``loss`` is each generation's distillation loss).
    """

    label: str = Field(min_length=1)
    kind: Literal["response", "feature", "relation", "online", "self"]
    loss: Component = Field(default_factory=lambda: Component(name="ce"))
    features: list[FeatureTermConfig] = Field(default_factory=list)
    hint_epochs: int = Field(0, ge=0)
    scheme: Component | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "KindsMethod":
        name = self.scheme.name if self.scheme else None
        if name is not None and name not in (*RUN_SCHEMES, "ban"):
            raise ValueError(f"scheme.name='{name}' is not allowed; allowed: {', '.join((*RUN_SCHEMES, 'ban'))}")
        if name == "ban":
            generations = self.scheme.options.get("generations", 2)
            if isinstance(generations, bool) or not isinstance(generations, int) or generations < 1:
                raise ValueError(f"scheme.generations={generations!r} is not allowed; must be an integer >= 1")
            if set(self.scheme.options) - {"generations"}:
                raise ValueError("a 'ban' scheme takes only 'generations'")
        if name is None and self.loss.name == "ce" and not self.features:
            raise ValueError(f"method '{self.label}' would be the CE baseline (always trained): give it a "
                             "distillation loss, features or a scheme")
        return self


class KindsStudyConfig(StudyConfig):
    """The kinds study's config: teacher and student recipes, the methods, the reference method and margins."""
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: StageConfig
    student: StageConfig
    methods: list[KindsMethod] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    teacher_seed: int = 0
    # the offline response-KD method the other kinds and schemes are compared with
    reference: str = "kd"
    # "online matches offline": the paired 95% interval of (online - offline) within +- this (accuracy fraction)
    match_margin: float = Field(0.01, gt=0, lt=1)

    @field_validator("methods")
    @classmethod
    def _unique_labels(cls, methods: list[KindsMethod]) -> list[KindsMethod]:
        labels = [m.label for m in methods]
        if len(set(labels)) != len(labels) or "ce" in labels:
            raise ValueError(f"method labels must be unique and not 'ce' (the CE student is always trained): {labels}")
        return methods

    @model_validator(mode="after")
    def _reference_exists(self) -> "KindsStudyConfig":
        ref = next((m for m in self.methods if m.label == self.reference), None)
        if ref is None or ref.scheme is not None:
            offline = [m.label for m in self.methods if m.scheme is None]
            raise ValueError(f"reference='{self.reference}' must be the label of an offline method; offline methods: "
                             f"{', '.join(offline) or 'none'}")
        return self


def _term(student_tap: str, loss: dict[str, Any], teacher_tap: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"student_tap": student_tap, "teacher_tap": teacher_tap or student_tap, "loss": loss, **extra}


KD = {"name": "kd", "temperature": 4.0, "alpha": 0.9}


def default_methods(hint_epochs: int) -> list[dict[str, Any]]:
    """The study's methods; FitNets' hint stage lasts ``hint_epochs`` epochs."""
    return [
        {"label": "kd", "kind": "response", "loss": KD},
        # FitNets as published: a hint stage (the hint alone, up to the guided layer), then KD of the whole student
        {"label": "fitnet", "kind": "feature", "loss": KD, "hint_epochs": hint_epochs,
         "features": [_term("stage2", {"name": "fitnet"}, schedule={"end_epoch": hint_epochs})]},
        # AT, RKD and SP: CE plus the term at the weights of the CIFAR benchmark of Tian, Krishnan, Isola,
        # "Contrastive Representation Distillation", ICLR 2020 (AT beta = 1000, RKD distance 25 / angle 50, SP
        # gamma = 3000: the kdlab losses' own defaults, so term weight 1)
        {"label": "at", "kind": "feature", "features": [_term(f"stage{i}", {"name": "at"}) for i in (1, 2, 3)]},
        {"label": "rkd", "kind": "relation", "features": [_term("pre_logits", {"name": "rkd"})]},
        {"label": "sp", "kind": "relation", "features": [_term("stage3", {"name": "sp"})]},
        {"label": "dml", "kind": "online", "scheme": {"name": "dml"}},
        {"label": "joint", "kind": "online", "loss": KD, "scheme": {"name": "joint"}},
        {"label": "ban", "kind": "self", "loss": {"name": "kd", "temperature": 1.0, "alpha": 1.0},
         "scheme": {"name": "ban", "generations": 2}},
        {"label": "byot", "kind": "self", "scheme": {"name": "byot"}},
    ]

DEFAULTS: dict[str, Any] = {
    "data": {"name": "fashion_mnist", "val_size": 1000, "seed": 0},
    # One labelled set for everyone: online schemes have no pretrained teacher, so a teacher that saw more data than
    # the student would make "online vs offline" a comparison of data, not of schemes. CNN 16-32-64 channels (24k
    # params) teaching CNN 8-16-32 (6.5k params): same family, so every feature loss has maps on both sides.
    "teacher": {"model": {"name": "cnn", "width": 0.5, "depth": 3}, "epochs": 10, "batch_size": 128,
                "train_subset": 2500, "optim": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "cosine"}},
    "student": {"model": {"name": "cnn", "width": 0.25, "depth": 3}, "epochs": 10, "batch_size": 128,
                "train_subset": 2500, "optim": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "cosine"}},
    "methods": default_methods(hint_epochs=2),
    "seeds": [0, 1, 2],
}

PRESETS: dict[str, dict[str, Any]] = {
    # every feature/relation loss and every scheme once, one seed, a tiny budget
    "quick": {
        "data": {"val_size": 500},
        "teacher": {"epochs": 2, "train_subset": 1000},
        "student": {"epochs": 2, "train_subset": 1000},
        "methods": default_methods(hint_epochs=1) + [
            {"label": "feature_mix", "kind": "feature", "hint_epochs": 1, "features": [
                _term("stage2", {"name": "agd"}), _term("stage3", {"name": "nonlocal"})]},
            {"label": "relation_mix", "kind": "relation", "features": [
                _term("pre_logits", {"name": "lsp"}), _term("stage2", {"name": "rkd_distance"}),
                _term("pre_logits", {"name": "rkd_angle"}), _term("stage3", {"name": "pairwise"})]},
        ],
        "seeds": [0],
    },
}


def plan(cfg: KindsStudyConfig, store: RunStore) -> list[Wave]:
    """The teacher; the CE student and every method's first run per seed; then each born-again generation."""
    teacher = stage_run_config(cfg.teacher, cfg.data, cfg.teacher_seed)
    teacher_dir = store.path(teacher)
    students = [Planned({"role": "student", "method": "ce", "kind": "baseline", "seed": seed},
                        stage_run_config(cfg.student, cfg.data, seed)) for seed in cfg.seeds]
    generations: list[list[Planned]] = []
    for m in cfg.methods:
        for seed in cfg.seeds:
            chain = method_run_configs(cfg, m, seed, teacher_dir, store)
            if m.scheme is not None and m.scheme.name == "ban":
                # generation 0 is the CE student (same config, trained once); generation g is taught by g - 1
                for g, run_cfg in enumerate(chain[1:], start=1):
                    label = m.label if g == len(chain) - 1 else f"{m.label}_gen{g}"
                    while len(generations) < g:
                        generations.append([])
                    generations[g - 1].append(Planned({"role": "student", "method": label, "kind": m.kind,
                                                       "seed": seed, "generation": g, "ban": m.label}, run_cfg))
            else:
                students.append(Planned({"role": "student", "method": m.label, "kind": m.kind, "seed": seed},
                                        chain[0]))
    return [Wave("teacher", [Planned({"role": "teacher"}, teacher)]), Wave("students", students),
            *(Wave(f"born-again generation {g}", runs) for g, runs in enumerate(generations, start=1))]


def method_run_configs(cfg: KindsStudyConfig, method: KindsMethod, seed: int, teacher_dir: Path,
                       store: RunStore) -> list[RunConfig]:
    """The run(s) of one method and seed: one run, or a born-again chain (generation 0 = the CE student)."""
    if method.scheme is None:
        base = stage_run_config(cfg.student, cfg.data, seed, loss=method.loss, teacher_run=teacher_dir)
        return [_with(base, features=[t.model_dump(mode="json") for t in method.features],
                      hint_epochs=method.hint_epochs)]
    if method.scheme.name == "ban":
        ce = stage_run_config(cfg.student, cfg.data, seed)
        return born_again_configs(ce, method.scheme.options.get("generations", 2), store.path, loss=method.loss)
    options = dict(method.scheme.options)
    if method.scheme.name == "dml":
        options.setdefault("peers", [cfg.teacher.model.as_dict()])
    if method.scheme.name == "joint":
        options.setdefault("teacher", cfg.teacher.model.as_dict())
    base = stage_run_config(cfg.student, cfg.data, seed, loss=method.loss)
    return [_with(base, scheme={"name": method.scheme.name, **options})]


def check_models_fit(cfg: KindsStudyConfig, planned: list[Planned]) -> None:
    """Build every distinct method's objective on fresh models: taps, shapes, adapters, heads are checked before any
    training (a bad tap fails now, not after the teacher has trained)."""
    d = cfg.data
    data = load_dataset(d.name, data_dir=d.data_dir, val_size=d.val_size, seed=d.seed, train_subset=None, **d.options)
    teacher = freeze(create_model(cfg.teacher.model.name, data.num_classes, data.in_shape, **cfg.teacher.model.options))
    for m in cfg.methods:
        run_cfg = next(p.job for p in reversed(planned) if p.tags.get("method") == m.label)
        student = create_model(run_cfg.model.name, data.num_classes, data.in_shape, **run_cfg.model.options)
        loss = build_loss(run_cfg.loss.name, **run_cfg.loss.options)
        try:
            objective = build_objective(run_cfg, student, loss, data.num_classes, data.in_shape, data.train.head(2),
                                        teacher=teacher if run_cfg.teacher is not None else None)
        except ConfigError as exc:
            raise ConfigError(f"methods '{m.label}': {exc}") from None
        objective.close()


def _with(cfg: RunConfig, **fields: Any) -> RunConfig:
    return RunConfig.model_validate({**cfg.to_dict(), **fields})


def _teacher_of(method: KindsMethod | None, teacher: str, generation: int | None) -> str | None:
    if generation is not None:
        return f"generation {generation - 1}"
    if method is None:
        return None
    if method.scheme is None:
        return teacher
    if method.scheme.name in ("dml", "joint"):
        return f"{teacher}, trained alongside"
    return None


def _loss_terms(run_dir: str) -> dict[str, list[float | None]]:
    """The separately logged parts of a run's objective per epoch (train_* keys of metrics.jsonl)."""
    history = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line]
    keys = sorted({k for h in history for k in h if k.startswith("train_") and k not in ("train_loss",
                                                                                           "train_accuracy")})
    return {k.removeprefix("train_"): [h.get(k) for h in history] for k in keys}


def analyse(cfg: KindsStudyConfig, runs: RunSet) -> dict[str, Any]:
    """Teacher, students, per-method table (test and validation accuracy, paired differences), BAN generations and
    each feature/relation method's logged loss terms (first seed)."""
    teacher_run = runs.one(role="teacher")
    teacher_name = model_name(cfg.teacher.model.as_dict(), teacher_run.summary["params"])
    methods = {m.label: m for m in cfg.methods}
    students = []
    for r in runs.select(role="student"):
        job: RunConfig = r.job
        record = {"teacher": _teacher_of(methods.get(r.tags.get("ban", r.tags["method"])), teacher_name,
                                         r.tags.get("generation")),
                  "method": r.tags["method"], "kind": r.tags["kind"], "hyperparams": job.loss.as_dict(),
                  "features": [t.model_dump(mode="json") for t in job.features],
                  "scheme": job.scheme.as_dict() if job.scheme else None, "seed": r.tags["seed"],
                  "test_accuracy": r.test_accuracy, "val_accuracy": r.val_accuracy,
                  "seconds": r.summary.get("seconds"), "run_dir": r.run_dir}
        if "generation" in r.tags:
            record["generation"] = r.tags["generation"]
        students.append(record)
    test = {label: runs.by_seed("test_accuracy", role="student", method=label) for label in ["ce", *methods]}
    val = {label: runs.by_seed("val_accuracy", role="student", method=label) for label in ["ce", *methods]}
    table: dict[str, dict[str, Any]] = {}
    for m in cfg.methods:
        seconds = [s["seconds"] for s in students if s["method"] == m.label and s.get("seconds") is not None]
        table[m.label] = {"kind": m.kind, "scheme": m.scheme.name if m.scheme else "offline",
                          "test_accuracy": mean_std(list(test[m.label].values())),
                          "val_accuracy": mean_std(list(val[m.label].values())),
                          "minus_ce": paired_by_seed(test[m.label], test["ce"]),
                          "minus_reference": paired_by_seed(test[m.label], test[cfg.reference]),
                          "seconds": mean_std(seconds)}
    generations = {}
    for m in cfg.methods:
        if m.scheme is not None and m.scheme.name == "ban":
            count = m.scheme.options.get("generations", 2)
            labels = ["ce"] + [f"{m.label}_gen{g}" for g in range(1, count)] + [m.label]
            generations[m.label] = [mean_std([s["test_accuracy"] for s in students if s["method"] == label])
                                    for label in labels]
    first = cfg.seeds[0]
    loss_terms = {s["method"]: _loss_terms(s["run_dir"]) for s in students if s["seed"] == first and s["features"]}
    return {
        "dataset": cfg.data.name,
        "config": cfg.model_dump(mode="json"),
        "teacher": {"name": teacher_name, "model": cfg.teacher.model.as_dict(),
                    "params": teacher_run.summary["params"], "test_accuracy": teacher_run.test_accuracy,
                    "run_dir": teacher_run.run_dir},
        "students": students,
        "ce_student": mean_std(list(test["ce"].values())),
        "table": table,
        "ban_generations": generations,
        "loss_terms": loss_terms,
    }


# ---------------------------------------------------------------------------------------------------- claims

POINTS = {"unit": "points", "scale": 100.0}
VALIDATION = "validation accuracy (mean over seeds)"


def claims(cfg: KindsStudyConfig) -> list[Claim]:
    """The claims under test for this configuration of methods (rules in the declarations below)."""
    ref = cfg.reference
    out = [Claim("reference_beats_ce", f"offline response KD ({ref}) beats CE for this pair",
                 f"{ref} - CE, student test accuracy, paired over seeds (points)", Rule(">", 0.0, **POINTS),
                 lambda r: paired_measurement(r["table"][ref]["minus_ce"]),
                 source="Hinton, Vinyals, Dean, 2015")]
    for kind, source in (("feature", "Romero et al., ICLR 2015; Zagoruyko & Komodakis, ICLR 2017"),
                         ("relation", "Park et al., CVPR 2019; Tung & Mori, ICCV 2019")):
        labels = [m.label for m in cfg.methods if m.kind == kind]
        if labels:
            out.append(Claim(
                f"{kind}_beats_response", f"{kind}-based KD beats response KD ({ref}) for this pair",
                f"best {kind}-based method (chosen on validation) - {ref}, student test accuracy, paired over seeds "
                "(points)", Rule(">", 0.0, **POINTS), _best_of(labels, ref),
                selection=f"the {kind}-based method with the best {VALIDATION}", source=source))
    for m in cfg.methods:
        if m.kind == "online":
            out.append(Claim(
                f"online_matches_offline_{m.label}", f"online distillation ({m.label}) matches offline KD ({ref})",
                f"{m.label} - {ref}, student test accuracy, paired over seeds (points)",
                Rule("within", cfg.match_margin, **POINTS),
                lambda r, label=m.label: paired_measurement(r["table"][label]["minus_reference"]),
                source="Zhang et al., CVPR 2018 (DML)"))
    for m in cfg.methods:
        if m.kind == "self":
            out.append(Claim(
                f"self_improves_{m.label}", f"self-distillation ({m.label}) improves over CE",
                f"{m.label} - CE, student test accuracy, paired over seeds (points)", Rule(">", 0.0, **POINTS),
                lambda r, label=m.label: paired_measurement(r["table"][label]["minus_ce"]),
                source="Furlanello et al., ICML 2018; Zhang et al., ICCV 2019"))
    return out


def _best_of(labels: list[str], ref: str):
    def measure(results: dict[str, Any]):
        table = results["table"]
        scored = [label for label in labels if not math.isnan(table[label]["val_accuracy"]["mean"])]
        if not scored:
            return NotApplicable("no method of this kind has a validation accuracy")
        best = max(scored, key=lambda label: table[label]["val_accuracy"]["mean"])
        context = "validation accuracy: " + ", ".join(
            f"{label} {table[label]['val_accuracy']['mean'] * 100:.2f}%" for label in labels)
        return paired_measurement(table[best]["minus_reference"], context, {"best method": best}, VALIDATION)
    return measure


# ---------------------------------------------------------------------------------------------------- report

KIND_COLOURS = {"response": "#4c78a8", "feature": "#f58518", "relation": "#54a24b", "online": "#b279a2",
                "self": "#e45756"}


def report(results: dict[str, Any]) -> Report:
    """The kinds report: claims, the per-method table, accuracy by kind, paired differences, loss terms, generations."""
    cfg = results["config"]
    t, st = results["teacher"], cfg["student"]
    table, ce = results["table"], results["ce_student"]
    labels = list(table)
    rep = Report(f"kdlab kinds study — {results['dataset']}")
    rep.paragraph(
        f"Teacher: {t['name']}, test accuracy {t['test_accuracy'] * 100:.2f}%, trained {cfg['teacher']['epochs']} "
        f"epochs on {cfg['teacher']['train_subset'] or 'all'} labelled images. Student: {model_name(st['model'])} "
        f"trained {st['epochs']} epochs on {st['train_subset'] or 'all'} labelled images, seeds {cfg['seeds']}; for a "
        "given seed every method's student starts from the same initial weights and sees the same batches, so "
        "differences are paired. Offline methods distil from the trained teacher; online methods train a network of "
        "the teacher's architecture alongside the student from scratch; self-distillation uses no other "
        "architecture.")
    rep.claims_section(results)
    rep.heading("Student test accuracy (%), mean ± std over seeds")
    rep.paragraph(f"CE only (no teacher): {format_pm(ce)}.")
    reference = cfg["reference"]
    rep.table(["method", "kind", "scheme", "val acc (%)", "test acc (%)", "- CE (points)", f"- {reference} (points)",
               "seconds per run"],
              [[label, row["kind"], row["scheme"], format_pm(row["val_accuracy"]), format_pm(row["test_accuracy"]),
                format_interval(row["minus_ce"]), format_interval(row["minus_reference"]),
                f"{row['seconds']['mean']:.0f}"] for label, row in table.items()])
    rep.heading("Methods")
    rep.bullets([_describe(m) for m in cfg["methods"]])
    means = [table[m]["test_accuracy"]["mean"] * 100 for m in labels]
    rep.figure("accuracy_by_method.png", {
        "title": "Kinds of knowledge and schemes (mean ± std over seeds)", "size": [max(6, 0.8 * len(labels) + 2), 4],
        "panels": [{"type": "bars", "categories": labels, "ylabel": "student test accuracy (%)",
                    "series": [{"values": means, "errors": [table[m]["test_accuracy"]["std"] * 100 for m in labels],
                                "colors": [KIND_COLOURS[table[m]["kind"]] for m in labels]}],
                    "legend_colors": {k: c for k, c in KIND_COLOURS.items() if any(r["kind"] == k for r in
                                                                                    table.values())},
                    "hlines": [{"y": ce["mean"] * 100, "label": "CE only", "band": [(ce["mean"] - ce["std"]) * 100,
                                                                                     (ce["mean"] + ce["std"]) * 100]},
                               {"y": t["test_accuracy"] * 100, "label": "offline teacher", "style": ":",
                                "color": "#888"}], "legend_columns": 2}]},
        "student test accuracy by method")
    margin = cfg["match_margin"] * 100
    rep.figure("paired_differences.png", {
        "size": [11, 0.4 * len(labels) + 1.8], "sharey": True,
        "panels": [{"type": "intervals", "title": f"{title} (points)",
                    "rows": [{"label": label, "mean": table[label][key]["mean"] * 100,
                              "low": table[label][key]["low"] * 100, "high": table[label][key]["high"] * 100,
                              "color": KIND_COLOURS[table[label]["kind"]]} for label in labels],
                    **({"vspans": [{"from": -margin, "to": margin, "label": f"±{margin:g} (online matches offline)"}]}
                       if key == "minus_reference" else {})}
                   for key, title in (("minus_ce", "method - CE"), ("minus_reference", f"method - {reference}"))]},
        "paired differences with 95% t intervals")
    terms = results["loss_terms"]
    if terms:
        cols = min(3, len(terms))
        rows = math.ceil(len(terms) / cols)
        rep.figure("loss_terms.png", {
            "title": f"Logged parts of the objective per epoch (seed {cfg['seeds'][0]}; unweighted term values)",
            "layout": [rows, cols], "size": [4.2 * cols, 3.2 * rows],
            "panels": [{"type": "lines", "title": method, "xlabel": "epoch", "yscale": "log",
                        "series": [{"label": key, "x": [e + 1 for e, v in enumerate(values) if v and v > 0],
                                    "y": [v for v in values if v and v > 0], "style": ".-"}
                                   for key, values in series.items() if any(v and v > 0 for v in values)]}
                       for method, series in terms.items()]},
            "logged feature/relation terms per epoch")
    if results["ban_generations"]:
        gens = results["ban_generations"]
        rep.figure("ban_generations.png", {
            "title": "Born-again generations (mean ± std over seeds)", "size": [5, 3.5],
            "panels": [{"type": "lines", "xlabel": "generation (0 = CE)", "ylabel": "test accuracy (%)",
                        "xticks": [list(range(max(len(g) for g in gens.values()))),
                                   [str(i) for i in range(max(len(g) for g in gens.values()))]],
                        "series": [{"label": label, "x": list(range(len(g))), "y": [s["mean"] * 100 for s in g],
                                    "err": [s["std"] * 100 for s in g]} for label, g in gens.items()]}]},
            "born-again generations")
    rep.reproduce(results)
    return rep


def _describe(method: dict[str, Any]) -> str:
    parts = [f"{method['label']} ({method['kind']}):"]
    if method.get("scheme"):
        scheme = method["scheme"]
        options = ", ".join(f"{k}={v}" for k, v in scheme.items() if k != "name")
        parts.append(f"scheme {scheme['name']}" + (f" ({options})" if options else ""))
    loss = method["loss"]
    parts.append("loss " + loss["name"] + "".join(f" {k}={v}" for k, v in loss.items() if k != "name"))
    for term in method.get("features", []):
        parts.append(f"+ {term['weight']:g} x {term['loss']['name']}({term['student_tap']} -> {term['teacher_tap']})")
    if method.get("hint_epochs"):
        parts.append(f"after {method['hint_epochs']} hint epoch(s)")
    return " ".join(parts)


KINDS = STUDIES.register("kinds")(Study(
    name="kinds", config=KindsStudyConfig, defaults=DEFAULTS, presets=PRESETS, plan=plan, analyse=analyse,
    claims=claims, report=report, check=check_models_fit, description=__doc__.splitlines()[0]))
