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

The compressed models are fine-tuned and the small models trained for the same number of epochs on the same data
(rules, budgets and defaults in docs/studies/compress.md). Accuracy against parameters and MACs on one Pareto plot,
mean ± std over seeds, and claims as paired differences with 95% t intervals.
"""

from __future__ import annotations

import copy
import logging
import math
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import Field, field_validator, model_validator
from tqdm.auto import tqdm

from ..config import Component, DataConfig, OptimConfig, RunConfig, ScheduleConfig, Section, TrainConfig
from ..errors import ConfigError
from .base import STUDIES
from .common import StageConfig, finish_study, open_study, stage_run_config
from ..analysis.stats import mean_std, paired_difference
from ..report.format import format_interval, format_pm
from ..store import RunStore
from ..validate import check_components

log = logging.getLogger("kdlab")

METHODS = ("magnitude", "structured", "lowrank", "kd", "scratch")
COMPRESSION_METHODS = ("magnitude", "structured", "lowrank")
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


class CompressionOptions(Section):
    # global magnitude pruning ranks the classifier's weights with all others (the threshold decides)
    magnitude_prune_head: bool = True
    structured_importance: Literal["l1", "l2"] = "l1"
    # a shared energy threshold would cut the classifier (<1% of the parameters, ~flat spectrum) to rank 1-4
    lowrank_factorize_head: bool = False
    # the loss compressed models are fine-tuned with (ce; or kd from the same teacher)
    finetune_loss: Component = Field(default_factory=lambda: Component(name="ce"))


class ClaimSpec(Section):
    """'method a beats method b at budget ...' (a budget position or an index into the sorted budgets)."""

    a: str
    b: str
    budget: Union[Literal["largest", "middle", "smallest"], int]


class CompressStudyConfig(Section):
    # run store shared between studies (content-addressed); default: <out>/runs
    store: str | None = None
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


@STUDIES.register("compress")
def run_compress(config: str | Path | None = None, out: str | Path = "runs/compress", preset: str | None = None,
                 overrides: list[str] | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Run the compression study; write results.json, plots, report.md and report.html into ``out``."""
    from ..data import load_dataset
    from ..losses import build as build_loss

    cfg, out, store, started = open_study(CompressStudyConfig, DEFAULTS, PRESETS, config, preset, overrides, out)

    # everything that can be checked is checked before the teacher trains
    teacher_cfg = stage_run_config(cfg.teacher, cfg.data, cfg.teacher_seed)
    check_components(teacher_cfg)
    try:
        finetune_loss = build_loss(cfg.compression.finetune_loss.name, **cfg.compression.finetune_loss.options)
    except ConfigError as exc:
        raise ConfigError(f"compression.finetune_loss: {exc}") from None
    d = cfg.data
    data = load_dataset(d.name, data_dir=d.data_dir, val_size=d.val_size, seed=d.seed,
                        train_subset=cfg.students.train_subset, **d.options)
    budgets = _plan_budgets(cfg, data.num_classes, data.in_shape)
    small_cfgs = _small_student_configs(cfg, budgets, store.path(teacher_cfg))

    teacher_summary = store.run(teacher_cfg, progress=progress)
    ctx = _Context(cfg, store, data, _load_teacher_copy(store.path(teacher_cfg)), finetune_loss, progress)
    log.info("teacher %s: %s params, test accuracy %.4f", ctx.teacher_label, f"{teacher_summary['params']:,}",
             teacher_summary["test_accuracy"])

    bar = tqdm(total=len(budgets) * len(cfg.methods) * len(cfg.seeds), desc="compress study", unit="run",
               disable=progress is False)
    students = []
    for bi, budget in enumerate(budgets):
        for method in cfg.methods:
            if method in COMPRESSION_METHODS:
                records = _train_compressed(ctx, budget, method, bar)
            else:
                records = _train_small(ctx, budget, method, [small_cfgs[bi, method, s] for s in cfg.seeds], bar)
            students += records
            log.info("budget %s %s: test accuracy %.4f", budget["label"], method,
                     mean_std([s["test_accuracy"] for s in records])["mean"])
    bar.close()

    teacher_entry = {"name": ctx.teacher_label, "model": cfg.teacher.model.as_dict(), "params": teacher_summary["params"],
                     "macs": teacher_summary["macs"], "test_accuracy": teacher_summary["test_accuracy"],
                     "run_dir": teacher_summary["run_dir"]}
    table = _table(cfg, budgets, students)
    results = {
        "study": "compress",
        "dataset": cfg.data.name,
        "config": cfg.model_dump(mode="json"),
        "teacher": teacher_entry,
        "budgets": [{k: v for k, v in b.items() if k != "student_model"} | {"student_model":
                                                                            b["student_model"].as_dict()}
                    for b in budgets],
        "students": students,
        "table": table,
        "pareto": pareto_front([(row["params"], row["test_accuracy"]["mean"], f"{method} @ {label}")
                                for label, methods in table.items() for method, row in methods.items()]),
    }
    results["claims"] = _claims(cfg, budgets, students)
    from ..report.compress import write_compress_report

    return finish_study(results, out, started, store.trained + ctx.trained, store.reused + ctx.reused,
                        write_compress_report, _print_summary)


# ------------------------------------------------------------------------------------------------ budgets


def _label(model: Component) -> str:
    opts = ",".join(f"{k}={v}" for k, v in model.options.items())
    return f"{model.name}({opts})"


def budget_label(fraction: float) -> str:
    """'1/16' for 0.0625; a decimal when the fraction is not a simple ratio."""
    ratio = Fraction(fraction).limit_denominator(10000)
    return f"{ratio.numerator}/{ratio.denominator}" if abs(float(ratio) - fraction) < 1e-12 else f"{fraction:g}"


def size_to_budget(family: Component, size_option: str, target_params: int, num_classes: int,
                   in_shape: tuple[int, ...]) -> tuple[int, int]:
    """The largest integer ``size_option`` of ``family`` whose model has at most ``target_params`` parameters.

    Parameters grow with the size option (width), so doubling finds an upper end and bisection the largest size
    that fits. Returns ``(size, params)``; ConfigError when size 1 already exceeds the budget.
    """
    from ..models import count_params, create_model

    def params(size: int) -> int:
        return count_params(create_model(family.name, num_classes, in_shape, **{**family.options, size_option: size}))

    if params(1) > target_params:
        raise ConfigError(f"budget of {target_params:,} parameters is below the smallest {family.name} with "
                          f"{size_option}=1 ({params(1):,} parameters)")
    lo, hi = 1, 2
    while params(hi) <= target_params:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # invariant: params(lo) <= target < params(hi)
        mid = (lo + hi) // 2
        if params(mid) <= target_params:
            lo = mid
        else:
            hi = mid
    return lo, params(lo)


def _plan_budgets(cfg: CompressStudyConfig, num_classes: int, in_shape: tuple[int, ...]) -> list[dict[str, Any]]:
    """Per budget: target parameters, the sized student model, and a dry run of every compression method on an
    untrained teacher (reachability depends on the architecture only), so a budget no method can reach is a
    ConfigError before anything trains."""
    from ..models import count_params, create_model

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
            entry["student_model"] = Component(**{**cfg.students.family.as_dict(), cfg.students.size_option: size})
            entry["student_params"] = params
        else:
            entry["student_model"] = cfg.students.family
        for method in COMPRESSION_METHODS:
            if method in cfg.methods:
                try:
                    compress_to_budget(method, teacher, target, cfg.compression)
                except (ValueError, NotImplementedError) as exc:
                    raise ConfigError(f"budgets[{i}]={fraction} ({target:,} of {total:,} teacher parameters) is not "
                                      f"reachable by '{method}': {exc}") from None
        budgets.append(entry)
    return budgets


# ------------------------------------------------------------------------------------------------ compression


def compress_to_budget(method: str, teacher, target_params: int, options: CompressionOptions):
    """A compressed copy of ``teacher`` with at most ``target_params`` parameters (``magnitude``: non-zero ones).

    Returns ``(model, info)`` where ``info`` is a small JSON-able description: the method, the ``options`` it used
    (part of the fine-tuning run's key) and the result (sparsity, widths or ranks). The teacher is not modified. ValueError / NotImplementedError when the method cannot reach the budget.
    """
    from ..compress import lowrank_to_budget, magnitude_prune_to_budget, nonzero_params, structured_prune_to_budget

    if method == "magnitude":
        model = copy.deepcopy(teacher)
        report = magnitude_prune_to_budget(model, target_params, prune_head=options.magnitude_prune_head)
        info = {"method": method, "options": {"prune_head": options.magnitude_prune_head},
                "sparsity": report["overall"], "nonzero_params": nonzero_params(model),
                "layer_sparsity": {k: v["sparsity"] for k, v in report["layers"].items()}}
    elif method == "structured":
        model, report = structured_prune_to_budget(teacher, target_params, importance=options.structured_importance)
        info = {"method": method, "options": {"importance": options.structured_importance},
                "keep_ratio": report["keep_ratio"], "widths": report["widths_after"], "params": report["params_after"]}
    elif method == "lowrank":
        model, report = lowrank_to_budget(teacher, target_params, factorize_head=options.lowrank_factorize_head)
        info = {"method": method, "options": {"factorize_head": options.lowrank_factorize_head},
                "energy": report["energy"], "params": report["params_after"],
                "ranks": {row["name"]: row["rank"] for row in report["layers"] if row["replaced"]}}
    else:
        raise ValueError(f"method={method!r} is not a compression method; allowed: {', '.join(COMPRESSION_METHODS)}")
    return model, info


def _load_teacher_copy(run_dir: Path):
    """The trained teacher as a trainable model (compression needs gradients later; load_teacher freezes)."""
    from ..distill import teacher_weights_path
    from ..models import load_model_weights

    return load_model_weights(teacher_weights_path(run_dir))


def _finetune_run_config(cfg: CompressStudyConfig, seed: int) -> RunConfig:
    s = cfg.students
    return RunConfig(data=cfg.data.model_copy(update={"train_subset": s.train_subset}), model=cfg.teacher.model,
                     loss=cfg.compression.finetune_loss, optim=s.finetune_optim, schedule=s.schedule,
                     train=TrainConfig(epochs=s.epochs, batch_size=s.batch_size, seed=seed))


def _test_accuracy(model, data) -> float:
    from ..data import TensorLoader
    from ..train import evaluate

    return evaluate(model, TensorLoader(data.test, 1024))["accuracy"]


# ------------------------------------------------------------------------------------------------ training


class _Context:
    """What every student's training needs: config, store, data, the trained teacher (and what derives from it)."""

    def __init__(self, cfg: CompressStudyConfig, store: RunStore, data, teacher, finetune_loss,
                 progress: bool | None) -> None:
        from ..distill import cached_teacher_logits, freeze, weights_digest

        self.cfg, self.store, self.data, self.teacher, self.progress = cfg, store, data, teacher, progress
        self.finetune_loss = finetune_loss
        self.teacher_label = _label(cfg.teacher.model)
        # the teacher's identity for the fine-tuning runs' keys: its weights, not the path it was trained in
        self.teacher_digest = weights_digest(teacher)
        self.teacher_logits = None
        if getattr(finetune_loss, "requires_teacher", True):
            self.teacher_logits = cached_teacher_logits(freeze(copy.deepcopy(teacher)), data.train.x,
                                                        data.train.fingerprint())
        self.trained = self.reused = 0


def _small_student_configs(cfg: CompressStudyConfig, budgets: list[dict[str, Any]],
                           teacher_dir: Path) -> dict[tuple[int, str, int], RunConfig]:
    """(budget index, method, seed) -> the checked RunConfig of each kd / scratch student."""
    stage = StageConfig(model=cfg.students.family, epochs=cfg.students.epochs, batch_size=cfg.students.batch_size,
                        train_subset=cfg.students.train_subset, optim=cfg.students.scratch_optim,
                        schedule=cfg.students.schedule)
    configs = {}
    for bi, budget in enumerate(budgets):
        for method in ("kd", "scratch"):
            if method not in cfg.methods:
                continue
            for seed in cfg.seeds:
                run_cfg = stage_run_config(stage, cfg.data, seed, model=budget["student_model"],
                                           loss=cfg.kd_loss if method == "kd" else None,
                                           teacher_run=teacher_dir if method == "kd" else None, keep_epochs=[])
                check_components(run_cfg)
                configs[bi, method, seed] = run_cfg
    return configs


def _train_compressed(ctx: _Context, budget: dict[str, Any], method: str, bar) -> list[dict[str, Any]]:
    """Compress the teacher once (deterministic), then fine-tune a copy per seed in a content-addressed run."""
    from ..compress.finetune import finetune

    cfg, data = ctx.cfg, ctx.data
    compressed, info = compress_to_budget(method, ctx.teacher, budget["target_params"], cfg.compression)
    pre = _test_accuracy(compressed, data)
    payload = {"kind": "compress", "method": method, "target_params": budget["target_params"],
               "options": info["options"], "teacher_weights": ctx.teacher_digest, "data": data.train.fingerprint()}
    records = []
    for seed in cfg.seeds:
        summary = finetune(copy.deepcopy(compressed), data.train, data.val, _finetune_run_config(cfg, seed),
                           ctx.store.root / "inprocess", payload, test=data.test, loss=ctx.finetune_loss,
                           teacher_logits=ctx.teacher_logits, progress=ctx.progress)
        if summary["reused"]:
            ctx.reused += 1
        else:
            ctx.trained += 1
        params = summary["nonzero_params"] if method == "magnitude" else summary["params"]
        records.append(_record(ctx.teacher_label, method, budget, seed, summary, params,
                               hyperparams={"loss": cfg.compression.finetune_loss.as_dict(), "compression": info},
                               pre_finetune=pre))
        bar.update()
    return records


def _train_small(ctx: _Context, budget: dict[str, Any], method: str, run_cfgs: list[RunConfig],
                 bar) -> list[dict[str, Any]]:
    """The kd / scratch students of one budget through the run store, one per seed."""
    records = []
    loss = ctx.cfg.kd_loss if method == "kd" else Component(name="ce")
    for seed, run_cfg in zip(ctx.cfg.seeds, run_cfgs):
        summary = ctx.store.run(run_cfg, progress=ctx.progress)
        # a trained dense model has no exact zeros: its effective MACs are its dense MACs
        summary = {**summary, "effective_macs": summary["macs"]}
        records.append(_record(ctx.teacher_label if method == "kd" else None, method, budget, seed, summary,
                               summary["params"], hyperparams={"loss": loss.as_dict(),
                                                               "model": budget["student_model"].as_dict()},
                               pre_finetune=None))
        bar.update()
    return records


# ------------------------------------------------------------------------------------------------ results


def _record(teacher: str | None, method: str, budget: dict[str, Any], seed: int, summary: dict[str, Any],
            params: int, hyperparams: dict[str, Any], pre_finetune: float | None) -> dict[str, Any]:
    return {"teacher": teacher, "method": method, "hyperparams": hyperparams, "seed": seed,
            "test_accuracy": summary["test_accuracy"], "run_dir": summary["run_dir"],
            "budget": budget["label"], "budget_fraction": budget["fraction"], "target_params": budget["target_params"],
            "params": params, "stored_params": summary["params"], "macs": summary["macs"],
            "effective_macs": summary["effective_macs"], "pre_finetune_test_accuracy": pre_finetune,
            "best_epoch": summary["best_epoch"]}


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
                           "pre_finetune_test_accuracy": pre[0] if pre else None}
        table[budget["label"]] = row
    return table


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


def _claims(cfg: CompressStudyConfig, budgets: list[dict[str, Any]],
            students: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """'a beats b at budget x' for every configured claim: paired difference of test accuracy over seeds.

    Rule (docs/studies/compress.md): holds if the 95% t interval of mean(acc_a - acc_b) lies above 0; does not hold
    if the mean difference is <= 0; undecided otherwise (including a single seed).
    """
    claims = []
    for spec in cfg.claims:
        budget = budgets[_budget_index(spec.budget, len(budgets))]

        def accs(method: str) -> dict[int, float]:
            return {s["seed"]: s["test_accuracy"] for s in students
                    if s["method"] == method and s["budget"] == budget["label"]}

        a, b = accs(spec.a), accs(spec.b)
        seeds = sorted(set(a) & set(b))
        diff = paired_difference([a[s] for s in seeds], [b[s] for s in seeds])
        if diff["mean"] <= 0:
            holds: bool | None = False
        else:
            holds = True if diff["n"] > 1 and diff["low"] > 0 else None
        position = spec.budget if isinstance(spec.budget, str) else f"#{spec.budget}"
        claims.append({
            "claim": f"{spec.a} beats {spec.b} at the {position} budget ({budget['label']} of the teacher, "
                     f"{budget['target_params']:,} parameters)",
            "holds": holds,
            "evidence": f"test accuracy {spec.a} {format_pm(mean_std(list(a.values())))}% vs {spec.b} "
                        f"{format_pm(mean_std(list(b.values())))}%; paired difference {format_interval(diff)} points "
                        f"over {diff['n']} seeds (rule: holds if the 95% t interval is above 0, does not hold if the "
                        f"mean difference <= 0)",
            "budget": budget["label"], "a": spec.a, "b": spec.b, "difference": diff,
        })
    return claims


def _print_summary(results: dict[str, Any], out: Path) -> None:
    t = results["teacher"]
    print(f"\nteacher {t['name']}: {t['params']:,} params, test accuracy {t['test_accuracy'] * 100:.2f}%")
    methods = list(next(iter(results["table"].values())))
    print("test accuracy (%) by budget x method (params in brackets):")
    for label, row in results["table"].items():
        cells = "  ".join(f"{m} {row[m]['test_accuracy']['mean'] * 100:.2f}±{row[m]['test_accuracy']['std'] * 100:.2f}"
                          f" [{row[m]['params']:,}]" for m in methods)
        print(f"  {label:>6}: {cells}")
    for claim in results["claims"]:
        print(f"claim [{ {True: 'holds', False: 'does not hold', None: 'undecided'}[claim['holds']] }] "
              f"{claim['claim']}: {claim['evidence']}")
    print(f"\nresults: {out / 'results.json'}   report: {out / 'report.html'}")
