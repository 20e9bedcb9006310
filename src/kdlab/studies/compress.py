"""Compression study: at equal parameter budgets, does distillation beat pruning, low-rank factorisation and
training the small model from scratch?

Distillation is one of several ways to shrink a trained network; node pruning and low-rank factorisation are the
others (Cheng, Wang, Zhou & Zhang, "A Survey of Model Compression and Acceleration for Deep Neural Networks",
arXiv 1710.09282, 2017). From one teacher, students at each budget (a fraction of the teacher's parameters) are made by

- ``magnitude``: unstructured magnitude pruning to the budget counted in non-zero parameters, masks kept while
  fine-tuning (Han, Pool, Tran & Dally, NeurIPS 2015);
- ``structured``: neuron pruning by the L1 norm of each unit's weights to a smaller dense model (Li et al., ICLR 2017);
- ``lowrank``: truncated-SVD factorisation of the layers with one shared energy threshold (Denton et al., NeurIPS
  2014);
- ``kd``: the member of the student family with the largest size that fits the budget, distilled from the teacher
  (Hinton, Vinyals & Dean, 2015);
- ``scratch``: the same small model trained with cross-entropy only.

The compressed models are fine-tuned (:class:`CompressFinetuneJob`, a run-store job) and the
small models trained for the same number of epochs on the same data (budgets and defaults in docs/studies/compress.md,
where the claims' rules are generated from the declarations below). Accuracy against parameters and MACs on one
Pareto plot, mean ± std over seeds, and claims as paired differences with 95% t intervals.
"""

from __future__ import annotations

import copy
import math
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

from pydantic import Field, field_validator, model_validator

from ..analysis.stats import mean_std, paired_by_seed
from ..analysis.verdict import Claim, NotApplicable, Rule, paired_measurement
from ..compress.budget import COMPRESSION_METHODS, CompressionOptions, compress_to_budget, size_to_budget
from ..compress.finetune import finetune
from ..config import Component, DataConfig, OptimConfig, RunConfig, ScheduleConfig, Section, TrainConfig
from ..data import TensorLoader, load_dataset
from ..distill import cached_teacher_logits, freeze, teacher_weights_path
from ..errors import ConfigError
from ..losses import build as build_loss
from ..models import count_params, create_model, load_model_weights
from ..report import Report
from ..report.figures import PALETTE
from ..report.format import format_interval, format_pm, model_name
from ..store import Job, RunStore
from ..train import evaluate
from ..validate import check_components
from .base import STUDIES
from .common import StageConfig, stage_run_config
from .driver import Planned, RunSet, Study, StudyConfig, Wave

METHODS = ("magnitude", "structured", "lowrank", "kd", "scratch")
BUDGET_POSITIONS = ("largest", "middle", "smallest")


class StudentsConfig(Section):
    """How every student is trained: the same epochs and data for fine-tuning and for training from scratch."""

    # the family of the KD and scratch students; `size_option` (an integer option) is sized to each budget
    family: Component
    size_option: str = "width"
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(128, ge=1)
    train_subset: int | None = Field(None, ge=1)
    # small models from random weights (kd, scratch) and compressed models from the teacher's weights
    scratch_optim: OptimConfig = Field(default_factory=OptimConfig)
    finetune_optim: OptimConfig = Field(default_factory=lambda: OptimConfig(lr=0.01))
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)


class ClaimSpec(Section):
    """'method a beats method b at budget ...' (a budget position or an index into the sorted budgets)."""

    a: str
    b: str
    budget: Union[Literal["largest", "middle", "smallest"], int]


class CompressStudyConfig(StudyConfig):
    """The compression study's config: teacher, budgets, students, compression options, methods and claims."""
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: StageConfig
    teacher_seed: int = 0
    # parameter budgets as fractions of the teacher's parameters
    budgets: list[float] = Field(min_length=1)
    students: StudentsConfig
    compression: CompressionOptions = Field(default_factory=CompressionOptions)
    kd_loss: Component = Field(default_factory=lambda: Component(name="kd", temperature=4.0, alpha=0.9))
    methods: list[str] = Field(default_factory=lambda: list(METHODS), min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    claims: list[ClaimSpec] = Field(default_factory=list)

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, budgets: list[float]) -> list[float]:
        if any(not 0 < b < 1 for b in budgets) or len(set(budgets)) != len(budgets):
            raise ValueError(f"budgets must be distinct fractions of the teacher's parameters in (0, 1): {budgets}")
        return sorted(budgets, reverse=True)

    @field_validator("methods")
    @classmethod
    def _methods(cls, methods: list[str]) -> list[str]:
        unknown = [m for m in methods if m not in METHODS]
        if unknown or len(set(methods)) != len(methods):
            raise ValueError(f"methods must be distinct names from {', '.join(METHODS)}; got {methods}")
        return methods

    @model_validator(mode="after")
    def _claims_name_methods(self) -> "CompressStudyConfig":
        for i, c in enumerate(self.claims):
            for key in ("a", "b"):
                if getattr(c, key) not in self.methods:
                    raise ValueError(f"claims[{i}].{key}='{getattr(c, key)}' is not one of the study's methods "
                                     f"({', '.join(self.methods)})")
            if isinstance(c.budget, int) and not 0 <= c.budget < len(self.budgets):
                raise ValueError(f"claims[{i}].budget={c.budget} is not an index of the {len(self.budgets)} budgets "
                                 f"(0 = largest) nor one of {', '.join(BUDGET_POSITIONS)}")
        return self


DEFAULTS: dict[str, Any] = {
    "data": {"name": "fashion_mnist", "val_size": 5000, "seed": 0},
    # teacher: a 2-hidden-layer MLP 784-512-512-10 (669,706 params), all 55,000 training images
    "teacher": {"model": {"name": "mlp", "width": 512, "depth": 2}, "epochs": 8, "batch_size": 128,
                "optim": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "cosine"}},
    # 1/4, 1/16 and 1/64 of the teacher: 167,426 / 41,856 / 10,464 parameters
    "budgets": [0.25, 0.0625, 0.015625],
    "students": {"family": {"name": "mlp", "depth": 2}, "size_option": "width", "epochs": 4, "batch_size": 128,
                 "scratch_optim": {"name": "sgd", "lr": 0.05}, "finetune_optim": {"name": "sgd", "lr": 0.01},
                 "schedule": {"name": "cosine"}},
    "kd_loss": {"name": "kd", "temperature": 4.0, "alpha": 0.9},
    "seeds": [0, 1, 2],
    "claims": [
        {"a": "kd", "b": "scratch", "budget": "middle"},
        {"a": "kd", "b": "magnitude", "budget": "smallest"},
        {"a": "kd", "b": "structured", "budget": "smallest"},
        {"a": "kd", "b": "lowrank", "budget": "smallest"},
        {"a": "lowrank", "b": "scratch", "budget": "middle"},
        {"a": "structured", "b": "scratch", "budget": "largest"},
        {"a": "magnitude", "b": "structured", "budget": "largest"},
        {"a": "magnitude", "b": "kd", "budget": "largest"},
    ],
}

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "data": {"val_size": 1000},
        "teacher": {"epochs": 2, "train_subset": 10000},
        "students": {"epochs": 1, "train_subset": 10000},
        "seeds": [0],
    },
}


# ------------------------------------------------------------------------------------------------ budgets


def budget_label(fraction: float) -> str:
    """'1/16' for 0.0625; a decimal when the fraction is not a simple ratio."""
    ratio = Fraction(fraction).limit_denominator(10000)
    return f"{ratio.numerator}/{ratio.denominator}" if abs(float(ratio) - fraction) < 1e-12 else f"{fraction:g}"


def plan_budgets(cfg: CompressStudyConfig) -> list[dict[str, Any]]:
    """Per budget: target parameters, the sized student model, and a dry run of every compression method on an
    untrained teacher (reachability depends on the architecture only), so a budget no method can reach is a
    ConfigError before anything trains."""
    d = cfg.data
    data = load_dataset(d.name, data_dir=d.data_dir, val_size=d.val_size, seed=d.seed, train_subset=None,
                        **d.options)
    num_classes, in_shape = data.num_classes, data.in_shape
    teacher = create_model(cfg.teacher.model.name, num_classes, in_shape, **cfg.teacher.model.options)
    total = count_params(teacher)
    budgets = []
    for i, fraction in enumerate(cfg.budgets):
        target = math.floor(fraction * total)
        entry: dict[str, Any] = {"fraction": fraction, "label": budget_label(fraction), "target_params": target}
        if {"kd", "scratch"} & set(cfg.methods):
            try:
                size, params = size_to_budget(cfg.students.family, cfg.students.size_option, target, num_classes,
                                              in_shape)
            except ConfigError as exc:
                raise ConfigError(f"budgets[{i}]={fraction}: {exc}") from None
            except TypeError as exc:
                raise ConfigError(f"students.size_option='{cfg.students.size_option}' is not an integer option of "
                                  f"model '{cfg.students.family.name}': {exc}") from None
            entry["student_model"] = {**cfg.students.family.as_dict(), cfg.students.size_option: size}
            entry["student_params"] = params
        else:
            entry["student_model"] = cfg.students.family.as_dict()
        for method in COMPRESSION_METHODS:
            if method in cfg.methods:
                try:
                    compress_to_budget(method, teacher, target, cfg.compression)
                except (ValueError, NotImplementedError) as exc:
                    raise ConfigError(f"budgets[{i}]={fraction} ({target:,} of {total:,} teacher parameters) is not "
                                      f"reachable by '{method}': {exc}") from None
        budgets.append(entry)
    return budgets


def _finetune_run_config(cfg: CompressStudyConfig, seed: int) -> RunConfig:
    s = cfg.students
    return RunConfig(data=cfg.data.model_copy(update={"train_subset": s.train_subset}), model=cfg.teacher.model,
                     loss=cfg.compression.finetune_loss, optim=s.finetune_optim, schedule=s.schedule,
                     train=TrainConfig(epochs=s.epochs, batch_size=s.batch_size, seed=seed))


class CompressFinetuneJob(Job):
    """A trained teacher compressed to a parameter budget, then fine-tuned: a run-store job.

    ``teacher_run``: the teacher's run directory; ``method``: magnitude, structured or lowrank
    (:func:`kdlab.compress.budget.compress_to_budget`); ``target_params``: the budget; ``options``: how each method
    compresses and the fine-tuning loss; ``run``: the fine-tuning recipe (its data with the training subset, optimiser,
    schedule, epochs, batch size and seed; its ``model`` is the teacher's, recorded). The summary adds
    ``pre_finetune_test_accuracy`` and ``compression`` (what the method did: sparsity, widths or ranks).
    """

    kind: ClassVar[str] = "compress_finetune"
    teacher_run: str
    method: Literal["magnitude", "structured", "lowrank"]
    target_params: int
    options: CompressionOptions
    run: RunConfig

    def trained_loss(self) -> Component:
        """The fine-tuning loss (its revision is checked before a finished run is reused)."""
        return self.options.finetune_loss

    def check(self) -> None:
        """Registry names and options of the fine-tuning run and its loss."""
        check_components(self.run)
        try:
            build_loss(self.options.finetune_loss.name, **self.options.finetune_loss.options)
        except ConfigError as exc:
            raise ConfigError(f"compression.finetune_loss: {exc}") from None

    def train(self, out_dir: Path, *, progress: bool | None = None,
              teacher_cache_dir: str | Path | None = None) -> dict[str, Any]:
        """Compress the teacher (deterministic, so a resumed run rebuilds the same model) and fine-tune it in
        ``out_dir`` (called under the directory's lock by :meth:`kdlab.store.Job.run_or_reuse`)."""
        d = self.run.data
        data = load_dataset(d.name, data_dir=d.data_dir, val_size=d.val_size, seed=d.seed,
                            train_subset=d.train_subset, **d.options)
        teacher = load_model_weights(teacher_weights_path(self.teacher_run))
        # compression is deterministic: a resumed run rebuilds the same model (and masks) before loading its state
        model, info = compress_to_budget(self.method, teacher, self.target_params, self.options)
        pre = evaluate(model, TensorLoader(data.test, 1024))["accuracy"]
        loss = build_loss(self.options.finetune_loss.name, **self.options.finetune_loss.options)
        logits = None
        if loss.requires_teacher:
            logits = cached_teacher_logits(freeze(copy.deepcopy(teacher)), data.train.x, data.train.fingerprint(),
                                           cache_dir=teacher_cache_dir)
        return finetune(model, data.train, data.val, self.run, out_dir, test=data.test, loss=loss,
                        teacher_logits=logits, progress=progress,
                        summary_extra={"pre_finetune_test_accuracy": pre, "compression": info})


def plan(cfg: CompressStudyConfig, store: RunStore) -> list[Wave]:
    """The teacher; then per budget, method and seed: a compressed-and-fine-tuned teacher or a small model trained
    from random weights (kd from the teacher, or scratch)."""
    teacher = stage_run_config(cfg.teacher, cfg.data, cfg.teacher_seed)
    teacher_dir = store.path(teacher)
    stage = StageConfig(model=cfg.students.family, epochs=cfg.students.epochs, batch_size=cfg.students.batch_size,
                        train_subset=cfg.students.train_subset, optim=cfg.students.scratch_optim,
                        schedule=cfg.students.schedule)
    students = []
    for budget in plan_budgets(cfg):
        for method in cfg.methods:
            for seed in cfg.seeds:
                tags = {"role": "student", "budget": budget["label"], "method": method, "seed": seed}
                if method in COMPRESSION_METHODS:
                    job: Any = CompressFinetuneJob(teacher_run=str(teacher_dir), method=method,
                                                   target_params=budget["target_params"], options=cfg.compression,
                                                   run=_finetune_run_config(cfg, seed))
                else:
                    job = stage_run_config(stage, cfg.data, seed, model=Component(**budget["student_model"]),
                                           loss=cfg.kd_loss if method == "kd" else None,
                                           teacher_run=teacher_dir if method == "kd" else None, keep_epochs=[])
                students.append(Planned(tags, job))
    return [Wave("teacher", [Planned({"role": "teacher"}, teacher)]), Wave("students", students)]


# ------------------------------------------------------------------------------------------------ results


def analyse(cfg: CompressStudyConfig, runs: RunSet) -> dict[str, Any]:
    """Every student's parameters, MACs and accuracy, the budget x method table, paired differences, Pareto front."""
    teacher = runs.one(role="teacher")
    teacher_name = model_name(cfg.teacher.model.as_dict(), teacher.summary["params"])
    budgets = plan_budgets(cfg)
    by_label = {b["label"]: b for b in budgets}
    students = []
    for r in runs.select(role="student"):
        method, budget, summary = r.tags["method"], by_label[r.tags["budget"]], r.summary
        if method in COMPRESSION_METHODS:
            params = summary["nonzero_params"] if method == "magnitude" else summary["params"]
            hyperparams = {"loss": cfg.compression.finetune_loss.as_dict(), "compression": summary["compression"]}
            pre, effective = summary["pre_finetune_test_accuracy"], summary["effective_macs"]
        else:
            params = summary["params"]
            loss = cfg.kd_loss if method == "kd" else Component(name="ce")
            hyperparams = {"loss": loss.as_dict(), "model": budget["student_model"]}
            # a trained dense model has no exact zeros: its effective MACs are its dense MACs
            pre, effective = None, summary["macs"]
        students.append({
            "teacher": None if method == "scratch" else teacher_name, "method": method, "hyperparams": hyperparams,
            "seed": r.tags["seed"], "test_accuracy": r.test_accuracy, "val_accuracy": r.val_accuracy,
            "run_dir": r.run_dir, "budget": budget["label"], "budget_fraction": budget["fraction"],
            "target_params": budget["target_params"], "params": params, "stored_params": summary["params"],
            "macs": summary["macs"], "effective_macs": effective, "pre_finetune_test_accuracy": pre,
            "best_epoch": summary["best_epoch"]})
    table = _table(cfg, budgets, students)
    return {
        "dataset": cfg.data.name,
        "config": cfg.model_dump(mode="json"),
        "teacher": {"name": teacher_name, "model": cfg.teacher.model.as_dict(), "params": teacher.summary["params"],
                    "macs": teacher.summary["macs"], "test_accuracy": teacher.test_accuracy,
                    "run_dir": teacher.run_dir},
        "budgets": budgets,
        "students": students,
        "table": table,
        "differences": _differences(cfg, budgets, students),
        "pareto": pareto_front([(row["params"], row["test_accuracy"]["mean"], f"{method} @ {label}")
                                for label, methods in table.items() for method, row in methods.items()]),
    }


def _table(cfg: CompressStudyConfig, budgets: list[dict[str, Any]],
           students: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """budget label -> method -> params, MACs, test accuracy mean ± std (and before fine-tuning)."""
    table: dict[str, dict[str, Any]] = {}
    for budget in budgets:
        row = {}
        for method in cfg.methods:
            runs = [s for s in students if s["budget"] == budget["label"] and s["method"] == method]
            pre = [s["pre_finetune_test_accuracy"] for s in runs if s["pre_finetune_test_accuracy"] is not None]
            row[method] = {"params": max(s["params"] for s in runs), "macs": runs[0]["macs"],
                           "effective_macs": max(s["effective_macs"] for s in runs),
                           "test_accuracy": mean_std([s["test_accuracy"] for s in runs]),
                           "pre_finetune_test_accuracy": pre[0] if pre else None,
                           "structure": _structure(method, runs[0])}
        table[budget["label"]] = row
    return table


def _differences(cfg: CompressStudyConfig, budgets: list[dict[str, Any]],
                 students: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """budget label -> "a - b" -> paired difference of test accuracy over seeds, for every ordered pair of methods."""
    def accs(label: str, method: str) -> dict[int, float]:
        return {s["seed"]: s["test_accuracy"] for s in students if s["budget"] == label and s["method"] == method}

    return {b["label"]: {f"{a} - {other}": paired_by_seed(accs(b["label"], a), accs(b["label"], other))
                         for a in cfg.methods for other in cfg.methods if a != other} for b in budgets}


def _structure(method: str, student: dict[str, Any]) -> str:
    info = student["hyperparams"].get("compression")
    if info is None:
        return ", ".join(f"{k}={v}" for k, v in student["hyperparams"].get("model", {}).items() if k != "name")
    if method == "magnitude":
        return f"sparsity {info['sparsity'] * 100:.1f}%"
    if method == "structured":
        return f"widths {info['widths']}"
    return "ranks " + ", ".join(f"{k}:{v}" for k, v in info["ranks"].items())


def pareto_front(points: list[tuple[float, float, str]]) -> list[str]:
    """Names of the non-dominated points of ``(size, accuracy, name)``: no other point has size <= and accuracy >=
    with at least one strict. Sorted by size."""
    front = []
    for size, acc, name in points:
        dominated = any(s <= size and a >= acc and (s < size or a > acc) for s, a, _ in points)
        if not dominated:
            front.append((size, name))
    return [name for _, name in sorted(front)]


def _budget_index(position: str | int, n: int) -> int:
    """Budgets are sorted largest first: largest = 0, smallest = n - 1, middle = (n - 1) // 2."""
    if isinstance(position, int):
        return position
    return {"largest": 0, "middle": (n - 1) // 2, "smallest": n - 1}[position]


# ------------------------------------------------------------------------------------------------ claims

POINTS = {"unit": "points", "scale": 100.0}


def claims(cfg: CompressStudyConfig) -> list[Claim]:
    """'a beats b at budget x' for every configured claim: paired difference of test accuracy over seeds."""
    out = []
    for spec in cfg.claims:
        index = _budget_index(spec.budget, len(cfg.budgets))
        position = spec.budget if isinstance(spec.budget, str) else f"#{spec.budget}"
        label = budget_label(cfg.budgets[index])

        def measure(results: dict[str, Any], a: str = spec.a, b: str = spec.b, label: str = label):
            diff = results["differences"][label][f"{a} - {b}"]
            if diff["n"] == 0:
                return NotApplicable(f"no seed has both a {a} and a {b} student at budget {label}")
            row = results["table"][label]
            return paired_measurement(diff, f"test accuracy {a} {format_pm(row[a]['test_accuracy'])}% vs {b} "
                                            f"{format_pm(row[b]['test_accuracy'])}%")

        out.append(Claim(f"{spec.a}_beats_{spec.b}_{position}",
                         f"{spec.a} beats {spec.b} at the {position} budget ({label} of the teacher's parameters)",
                         f"{spec.a} - {spec.b}, student test accuracy at budget {label}, paired over seeds (points)",
                         Rule(">", 0.0, **POINTS), measure))
    return out


# ------------------------------------------------------------------------------------------------ report

MARKERS = {"magnitude": "v", "structured": "s", "lowrank": "D", "kd": "o", "scratch": "x"}


def report(results: dict[str, Any]) -> Report:
    """The compression report: claims, accuracy at each budget, the Pareto figure and the students in detail."""
    cfg = results["config"]
    st, t = cfg["students"], results["teacher"]
    table = results["table"]
    methods = list(next(iter(table.values())))
    rep = Report(f"kdlab compression study — {results['dataset']}")
    rep.paragraph(
        f"Teacher {t['name']}: {t['macs']:,} MACs, test accuracy {t['test_accuracy'] * 100:.2f}% "
        f"({cfg['teacher']['epochs']} epochs on {cfg['teacher']['train_subset'] or 'all'} training images). Budgets: "
        + ", ".join(f"{b['label']} = {b['target_params']:,} parameters" for b in results["budgets"])
        + f". Every student gets {st['epochs']} epochs on {st['train_subset'] or 'all'} training images: compressed "
        f"models are fine-tuned from the teacher's weights ({st['finetune_optim']['name']}, lr "
        f"{st['finetune_optim']['lr']}, loss {cfg['compression']['finetune_loss']['name']}); the kd and scratch "
        f"students ({model_name(st['family'])} sized by '{st['size_option']}') start from random weights "
        f"({st['scratch_optim']['name']}, lr {st['scratch_optim']['lr']}; kd loss {cfg['kd_loss']}). Seeds "
        f"{cfg['seeds']}, paired: the same seed gives every method the same batch order (and kd and scratch the same "
        "initial weights). Magnitude-pruned models count their non-zero parameters.")
    rep.claims_section(results)
    rep.heading("Test accuracy at each budget (%, mean ± std over seeds)")
    rep.table(["budget", *methods],
              [[f"{label} ({results['budgets'][i]['target_params']:,})",
                *(f"{format_pm(row[m]['test_accuracy'])} [{row[m]['params']:,}]" for m in methods)]
               for i, (label, row) in enumerate(table.items())])
    rep.paragraph("Brackets: parameters of the student (non-zero parameters for magnitude pruning).")
    rep.figure("pareto.png", _pareto_figure(results, methods), "accuracy against parameters and MACs")
    rep.heading("Students in detail")
    rep.table(["budget", "method", "params", "MACs (dense)", "MACs (non-zero)", "test acc after compression (%)",
               "test acc (%)", "structure"],
              [[label, m, f"{r['params']:,}", f"{r['macs']:,}", f"{r['effective_macs']:,}",
                "-" if r["pre_finetune_test_accuracy"] is None else f"{r['pre_finetune_test_accuracy'] * 100:.2f}",
                format_pm(r["test_accuracy"]), r["structure"]]
               for label, row in table.items() for m, r in row.items()])
    compressed = [m for m in methods if table[next(iter(table))][m]["pre_finetune_test_accuracy"] is not None]
    if compressed:
        labels = list(table)
        rep.figure("finetune_gain.png", {"title": "Compression before and after fine-tuning",
                                         "size": [max(5, 1.6 * len(labels) * len(compressed)), 3.8], "panels": [{
            "type": "bars", "categories": [f"budget {b}" for b in labels], "rotate": 0,
            "ylabel": "test accuracy (%)", "legend_columns": 2,
            "series": [s for j, m in enumerate(compressed) for s in (
                {"label": f"{m}: compressed", "alpha": 0.35, "color": _colour(j),
                 "values": [table[b][m]["pre_finetune_test_accuracy"] * 100 for b in labels]},
                {"label": f"{m}: fine-tuned", "color": _colour(j),
                 "values": [table[b][m]["test_accuracy"]["mean"] * 100 for b in labels]})]}]},
            "compression before and after fine-tuning")
    if "kd" in methods:
        others = [m for m in methods if m != "kd"]
        rep.heading("KD minus each other method (points, paired, 95% t interval)")
        rep.table(["budget", *others], [[label, *(format_interval(results["differences"][label][f"kd - {m}"])
                                                  for m in others)] for label in table])
    rep.paragraph("Pareto front (by parameters; no other student is both smaller and more accurate): "
                  + ", ".join(results["pareto"]) + ".")
    rep.reproduce(results)
    return rep


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _pareto_figure(results: dict[str, Any], methods: list[str]) -> dict[str, Any]:
    """Test accuracy against parameters (left) and effective MACs (right), one line per method over the budgets."""
    table, t = results["table"], results["teacher"]
    front = set(results["pareto"])
    panels = []
    for size_key, xlabel in (("params", "parameters (non-zero for magnitude pruning)"),
                             ("effective_macs", "MACs per sample (zero weights skipped)")):
        series = [{"label": m, "x": [row[m][size_key] for row in table.values()],
                   "y": [row[m]["test_accuracy"]["mean"] * 100 for row in table.values()],
                   "err": [row[m]["test_accuracy"]["std"] * 100 for row in table.values()],
                   "style": MARKERS.get(m, "o") + "-"} for m in methods]
        series.append({"label": "teacher", "x": [t["params"] if size_key == "params" else t["macs"]],
                       "y": [t["test_accuracy"] * 100], "style": "*", "color": "#222", "markersize": 14})
        if size_key == "params":
            front_points = [(row[m]["params"], row[m]["test_accuracy"]["mean"] * 100) for label, row in table.items()
                            for m in methods if f"{m} @ {label}" in front]
            series.append({"label": "Pareto front", "x": [p for p, _ in front_points],
                           "y": [a for _, a in front_points], "style": "o", "color": "#bbb", "markersize": 3})
        panels.append({"type": "lines", "xscale": "log", "xlabel": xlabel, "series": series,
                       "ylabel": "test accuracy (%)" if size_key == "params" else "",
                       "title": "accuracy vs parameters (dotted: budgets)" if size_key == "params" else
                       "accuracy vs compute",
                       "vlines": [{"x": b["target_params"]} for b in results["budgets"]] if size_key == "params"
                       else [], "legend": "best" if size_key != "params" else "none"})
    return {"title": f"Compression at equal budgets on {results['dataset']} (mean ± std over seeds)",
            "size": [12, 4.8], "sharey": True, "panels": panels}


COMPRESS = STUDIES.register("compress")(Study(
    name="compress", config=CompressStudyConfig, defaults=DEFAULTS, presets=PRESETS, plan=plan, analyse=analyse,
    claims=claims, report=report, description=__doc__.splitlines()[0]))
