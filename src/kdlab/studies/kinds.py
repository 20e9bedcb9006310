"""Kinds study: which kind of knowledge, and which distillation scheme, helps this teacher-student pair?

Knowledge (Gou, Yu, Maybank, Tao, "Knowledge Distillation: A Survey", IJCV 2021, Sec. 2): response-based (kd;
Hinton et al. 2015), feature-based (FitNets, Romero et al. ICLR 2015; attention transfer, Zagoruyko & Komodakis
ICLR 2017) and relation-based (RKD, Park et al. CVPR 2019; similarity preserving, Tung & Mori ICCV 2019).
Schemes (Sec. 4): offline (a trained teacher), online (deep mutual learning, Zhang et al. CVPR 2018; teacher and
student trained together) and self-distillation (born-again networks, Furlanello et al. ICML 2018; be your own
teacher, Zhang et al. ICCV 2019).

Recipe: train the teacher once -> per seed, the CE student and every method's student (paired: same initial weights
and batch order per seed; online and self-distillation runs need no pretrained teacher) -> paired differences against
CE and against offline response KD -> claims by rules fixed in advance (docs/studies/kinds.md) -> results.json,
plots, report.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from tqdm.auto import tqdm

from ..config import Component, DataConfig, FeatureTermConfig, RunConfig, Section
from ..errors import ConfigError
from .base import STUDIES
from .common import StageConfig, finish_study, open_study, stage_run_config
from ..analysis.stats import mean_std, paired_by_seed
from ..report.format import format_interval
from ..store import RunStore
from ..validate import check_components

log = logging.getLogger("kdlab")

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


class KindsStudyConfig(Section):
    # run store shared between studies (content-addressed); default: <out>/runs
    store: str | None = None
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


@STUDIES.register("kinds")
def run_kinds(config: str | Path | None = None, out: str | Path = "runs/kinds", preset: str | None = None,
              overrides: list[str] | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Run the kinds study; write results.json, plots, report.md and report.html into ``out``."""
    cfg, out, store, started = open_study(KindsStudyConfig, DEFAULTS, PRESETS, config, preset, overrides, out)

    # every run's config, validated (names, options, taps, shapes, schemes) before anything trains
    teacher_cfg = stage_run_config(cfg.teacher, cfg.data, cfg.teacher_seed)
    teacher_dir = store.path(teacher_cfg)
    ce_cfgs = {seed: stage_run_config(cfg.student, cfg.data, seed) for seed in cfg.seeds}
    chains = {(m.label, seed): method_run_configs(cfg, m, seed, teacher_dir, store)
              for m in cfg.methods for seed in cfg.seeds}
    for run_cfg in [teacher_cfg, *ce_cfgs.values()]:
        check_components(run_cfg)
    for (label, _), chain in chains.items():
        for run_cfg in chain:
            try:
                check_components(run_cfg)
            except ConfigError as exc:
                raise ConfigError(f"methods '{label}': {exc}") from None
    check_models_fit(cfg, chains)

    total = 1 + len(ce_cfgs) + sum(len(c) for c in chains.values())
    overall = tqdm(total=total, desc="kinds study", unit="run", disable=progress is False)
    teacher = store.run(teacher_cfg, progress=progress)
    overall.update()
    log.info("teacher %s: %s params, test accuracy %.4f", _model_label(teacher_cfg.model), f"{teacher['params']:,}",
             teacher["test_accuracy"])
    students = []
    for seed, run_cfg in ce_cfgs.items():
        summary = store.run(run_cfg, progress=progress)
        overall.update()
        students.append(_record(None, "ce", "baseline", run_cfg, seed, summary))
    for m in cfg.methods:
        for seed in cfg.seeds:
            chain = chains[(m.label, seed)]
            for generation, run_cfg in enumerate(chain):
                summary = store.run(run_cfg, progress=progress)
                overall.update()
                if m.scheme is not None and m.scheme.name == "ban":
                    if generation == 0:
                        continue  # generation 0 is the CE student, recorded above
                    label = m.label if generation == len(chain) - 1 else f"{m.label}_gen{generation}"
                    students.append(_record(f"generation {generation - 1}", label, m.kind, run_cfg, seed, summary,
                                            generation=generation))
                else:
                    students.append(_record(_teacher_of(m, teacher_cfg), m.label, m.kind, run_cfg, seed, summary))
            log.info("%s seed %d: test accuracy %.4f", m.label, seed, students[-1]["test_accuracy"])
    overall.close()

    results = assemble(cfg, teacher_cfg, teacher, students)
    from ..report.kinds import write_kinds_report

    return finish_study(results, out, started, store.trained, store.reused, write_kinds_report, _print_summary)


def method_run_configs(cfg: KindsStudyConfig, method: KindsMethod, seed: int, teacher_dir: Path,
                       store: RunStore) -> list[RunConfig]:
    """The run(s) of one method and seed: one run, or a born-again chain (generation 0 = the CE student)."""
    if method.scheme is None:
        base = stage_run_config(cfg.student, cfg.data, seed, loss=method.loss, teacher_run=teacher_dir)
        return [_with(base, features=[t.model_dump(mode="json") for t in method.features],
                      hint_epochs=method.hint_epochs)]
    if method.scheme.name == "ban":
        from ..distill.schemes import born_again_configs

        ce = stage_run_config(cfg.student, cfg.data, seed)
        return born_again_configs(ce, method.scheme.options.get("generations", 2), store.path, loss=method.loss)
    options = dict(method.scheme.options)
    if method.scheme.name == "dml":
        options.setdefault("peers", [cfg.teacher.model.as_dict()])
    if method.scheme.name == "joint":
        options.setdefault("teacher", cfg.teacher.model.as_dict())
    base = stage_run_config(cfg.student, cfg.data, seed, loss=method.loss)
    return [_with(base, scheme={"name": method.scheme.name, **options})]


def check_models_fit(cfg: KindsStudyConfig, chains: dict[tuple[str, int], list[RunConfig]]) -> None:
    """Build every distinct method's objective on fresh models: taps, shapes, adapters, heads are checked before any
    training (a bad tap fails now, not after the teacher has trained)."""
    from ..data import load_dataset
    from ..distill import build_objective, freeze
    from ..losses import build as build_loss
    from ..models import create_model

    d = cfg.data
    data = load_dataset(d.name, data_dir=d.data_dir, val_size=d.val_size, seed=d.seed, train_subset=None, **d.options)
    teacher = freeze(create_model(cfg.teacher.model.name, data.num_classes, data.in_shape, **cfg.teacher.model.options))
    for m in cfg.methods:
        run_cfg = chains[(m.label, cfg.seeds[0])][-1]
        student = create_model(run_cfg.model.name, data.num_classes, data.in_shape, **run_cfg.model.options)
        loss = build_loss(run_cfg.loss.name, **run_cfg.loss.options)
        try:
            objective = build_objective(run_cfg, student, loss, data.num_classes, data.in_shape,
                                        teacher=teacher if run_cfg.teacher is not None else None)
        except ConfigError as exc:
            raise ConfigError(f"methods '{m.label}': {exc}") from None
        objective.close()


def _with(cfg: RunConfig, **fields: Any) -> RunConfig:
    return RunConfig.model_validate({**cfg.to_dict(), **fields})


def _model_label(model: Component) -> str:
    opts = ",".join(f"{k}={v}" for k, v in model.options.items())
    return f"{model.name}({opts})"


def _teacher_of(method: KindsMethod, teacher_cfg: RunConfig) -> str | None:
    if method.scheme is None:
        return _model_label(teacher_cfg.model)
    if method.scheme.name in ("dml", "joint"):
        return f"{_model_label(teacher_cfg.model)}, trained alongside"
    return None


def _record(teacher: str | None, method: str, kind: str, run_cfg: RunConfig, seed: int, summary: dict[str, Any],
            generation: int | None = None) -> dict[str, Any]:
    record = {"teacher": teacher, "method": method, "kind": kind, "hyperparams": run_cfg.loss.as_dict(),
              "features": [t.model_dump(mode="json") for t in run_cfg.features],
              "scheme": run_cfg.scheme.as_dict() if run_cfg.scheme else None, "seed": seed,
              "test_accuracy": summary["test_accuracy"], "seconds": summary.get("seconds"),
              "run_dir": summary["run_dir"]}
    if generation is not None:
        record["generation"] = generation
    return record


def _by_seed(students: list[dict[str, Any]], method: str) -> dict[int, float]:
    return {s["seed"]: s["test_accuracy"] for s in students if s["method"] == method}


def assemble(cfg: KindsStudyConfig, teacher_cfg: RunConfig, teacher: dict[str, Any],
             students: list[dict[str, Any]]) -> dict[str, Any]:
    """results.json's content (without timing): teacher, students, per-method table, BAN generations, claims."""
    ce = _by_seed(students, "ce")
    ref = _by_seed(students, cfg.reference)
    table: dict[str, dict[str, Any]] = {}
    for m in cfg.methods:
        accs = _by_seed(students, m.label)
        seconds = [s["seconds"] for s in students if s["method"] == m.label and s.get("seconds") is not None]
        table[m.label] = {"kind": m.kind, "scheme": m.scheme.name if m.scheme else "offline",
                          "test_accuracy": mean_std(list(accs.values())), "minus_ce": paired_by_seed(accs, ce),
                          "minus_reference": paired_by_seed(accs, ref), "seconds": mean_std(seconds)}
    generations = {}
    for m in cfg.methods:
        if m.scheme is not None and m.scheme.name == "ban":
            count = m.scheme.options.get("generations", 2)
            labels = ["ce"] + [f"{m.label}_gen{g}" for g in range(1, count)] + [m.label]
            generations[m.label] = [mean_std(list(_by_seed(students, label).values())) for label in labels]
    return {
        "study": "kinds",
        "dataset": cfg.data.name,
        "config": cfg.model_dump(mode="json"),
        "teacher": {"name": _model_label(teacher_cfg.model), "model": teacher_cfg.model.as_dict(),
                    "params": teacher["params"], "test_accuracy": teacher["test_accuracy"],
                    "run_dir": teacher["run_dir"]},
        "students": students,
        "ce_student": mean_std(list(ce.values())),
        "table": table,
        "ban_generations": generations,
        "claims": claims(cfg, table),
    }


def claims(cfg: KindsStudyConfig, table: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each claim with a verdict by the rules of docs/studies/kinds.md (fixed before running)."""
    out = []
    ref = cfg.reference
    out.append(_beats(f"offline response KD ({ref}) beats CE for this pair", table[ref]["minus_ce"], f"{ref} - CE"))
    for kind in ("feature", "relation"):
        labels = [m.label for m in cfg.methods if m.kind == kind]
        if labels:
            out.append(_any_beats(f"{kind}-based KD beats response KD ({ref}) for this pair",
                                  {label: table[label]["minus_reference"] for label in labels}, ref))
    for m in cfg.methods:
        if m.kind == "online":
            out.append(_matches(f"online distillation ({m.label}) matches offline KD ({ref})",
                                table[m.label]["minus_reference"], f"{m.label} - {ref}", cfg.match_margin))
    for m in cfg.methods:
        if m.kind == "self":
            out.append(_beats(f"self-distillation ({m.label}) improves over CE", table[m.label]["minus_ce"],
                              f"{m.label} - CE"))
    return out


def _beats(claim: str, diff: dict[str, Any], what: str) -> dict[str, Any]:
    """Holds if the paired interval is above 0; does not hold if the mean difference is <= 0; else undecided
    (also with a single seed: no interval)."""
    if diff["n"] < 2:
        holds = None
    elif diff["low"] > 0:
        holds = True
    elif diff["mean"] <= 0:
        holds = False
    else:
        holds = None
    return {"claim": claim, "holds": holds,
            "evidence": f"{what} = {format_interval(diff)} points (paired over {diff['n']} seeds, 95% t interval; "
                        "rule: holds if the interval is above 0, does not hold if the mean is <= 0)"}


def _any_beats(claim: str, diffs: dict[str, dict[str, Any]], ref: str) -> dict[str, Any]:
    """Holds if any method's interval against the reference is above 0; does not hold if every method's mean
    difference is <= 0; else undecided (also with a single seed)."""
    n = min(d["n"] for d in diffs.values())
    if n < 2:
        holds = None
    elif any(d["low"] > 0 for d in diffs.values()):
        holds = True
    elif all(d["mean"] <= 0 for d in diffs.values()):
        holds = False
    else:
        holds = None
    listed = "; ".join(f"{label} - {ref} = {format_interval(d)}" for label, d in diffs.items())
    return {"claim": claim, "holds": holds,
            "evidence": f"{listed} points (paired over {n} seeds, 95% t interval; rule: holds if any method's "
                        "interval is above 0, does not hold if every method's mean is <= 0)"}


def _matches(claim: str, diff: dict[str, Any], what: str, margin: float) -> dict[str, Any]:
    """Holds if the paired interval lies within [-margin, +margin]; does not hold if it lies entirely outside
    (above +margin or below -margin); else undecided (also with a single seed)."""
    if diff["n"] < 2:
        holds = None
    elif -margin <= diff["low"] and diff["high"] <= margin:
        holds = True
    elif diff["low"] > margin or diff["high"] < -margin:
        holds = False
    else:
        holds = None
    return {"claim": claim, "holds": holds,
            "evidence": f"{what} = {format_interval(diff)} points (paired over {diff['n']} seeds, 95% t interval; "
                        f"rule: holds if the interval lies within ±{margin * 100:g} points, does not hold if it lies "
                        "entirely outside)"}


def _print_summary(results: dict[str, Any], out: Path) -> None:
    t = results["teacher"]
    print(f"\nteacher {t['name']} ({t['params']:,} params): test acc {t['test_accuracy'] * 100:.2f}%")
    ce = results["ce_student"]
    print(f"student CE only: {ce['mean'] * 100:.2f} ± {ce['std'] * 100:.2f}")
    for label, row in results["table"].items():
        acc = row["test_accuracy"]
        print(f"  {label:<14} {row['kind']:<9} {row['scheme']:<8} {acc['mean'] * 100:6.2f} ± {acc['std'] * 100:4.2f}"
              f"   - CE {format_interval(row['minus_ce'])}")
    for claim in results["claims"]:
        print(f"claim [{ {True: 'holds', False: 'does not hold', None: 'undecided'}[claim['holds']] }] "
              f"{claim['claim']}: {claim['evidence']}")
    print(f"\nresults: {out / 'results.json'}   report: {out / 'report.html'}")
