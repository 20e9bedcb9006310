"""Fit study: is a model too simple (high bias), too complex (high variance), or right -- and what fixes it?

Capacity mismatch is first a plain deep-learning problem: a model too simple for the task underfits, a model too
complex overfits; the remedies are a change of architecture, regularisation (dropout, weight decay, early stopping),
and reading learning curves and cross-validation (Goodfellow, Bengio & Courville, "Deep Learning", 2016, ch. 5.2,
7 and 11.4; Hastie, Tibshirani & Friedman, "The Elements of Statistical Learning", 2009, ch. 7).

Recipe (rules and budgets in docs/studies/fit.md):

1. capacity sweep: one family at several sizes, trained without regularisation on a small labelled subset (so
   over-capacity shows within a cheap budget), every size over the same seeds -> learning curves (train/validation
   loss and accuracy per epoch, from each run's metrics.jsonl), a validation curve against parameters, and a verdict
   per size (:func:`kdlab.analysis.sweep_verdicts` on the seed-mean curves);
2. regularisation of the over-capacity models: dropout and weight decay (new runs, same seeds) and early stopping
   (computed from the curves: the epoch where validation accuracy last improved before ``patience`` epochs without
   improvement; its weights are the run's best checkpoint, or come from a replay of the run that keeps that epoch);
3. stratified k-fold cross-validation of a sweep on the small bundled ``digits`` dataset (mean ± std over folds);
4. the recommended capacity (:func:`kdlab.analysis.recommend_capacity`, one-standard-error rule) for both;
5. claims declared below (rules generated into docs/studies/fit.md) -> results.json, plots, report.

Every run goes through the run store: sweep and regularisation runs are RunConfigs, each cross-validation run a
:class:`KFoldJob`. The regularisation wave depends on the sweep (which models are over-capacity, which epoch early
stopping keeps), so it is built after the sweep has trained.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field, field_validator

from ..analysis import fit_verdict, kfold_indices, recommend_capacity, sweep_verdicts
from ..analysis.stats import mean_std, paired_difference
from ..analysis.verdict import Claim, Measurement, NotApplicable, Rule, paired_measurement
from ..compress.finetune import finetune
from ..config import Component, DataConfig, RunConfig, Section, parse_config
from ..data import TensorLoader, load_dataset
from ..distill.teacher import load_epoch_weights
from ..errors import ConfigError, KdlabError
from ..models import create_model, load_model_weights
from ..report import Report
from ..report.figures import PALETTE
from ..report.format import format_interval, format_pm, model_name
from ..store import Job, RunStore
from ..train import evaluate
from ..validate import check_components
from .base import STUDIES
from .common import StageConfig, stage_run_config
from .driver import Planned, RunSet, Study, StudyConfig, Wave

NONE_ARM = "none"
EARLY_STOPPING_ARM = "early_stopping"


class CapacitySweep(StageConfig):
    """A training recipe plus the sizes to sweep: each entry's keys override the base model's options."""

    capacities: list[dict[str, Any]] = Field(min_length=2)


class Remedy(Section):
    """A regularised variant of a sweep run: overrides of the model's options and of the optimiser."""

    label: str
    model: dict[str, Any] = Field(default_factory=dict)
    optim: dict[str, Any] = Field(default_factory=dict)


class RegulariseConfig(Section):
    """How over-capacity models are regularised: the remedies, early stopping's patience, how many models."""
    remedies: list[Remedy] = Field(default_factory=list)
    # early stopping: stop after this many epochs without a new best validation accuracy, keep the best epoch
    patience: int = Field(5, ge=1)
    # regularise the largest this many over-capacity models (the largest model when none is over-capacity)
    max_models: int = Field(2, ge=1)

    @field_validator("remedies")
    @classmethod
    def _unique_labels(cls, remedies: list[Remedy]) -> list[Remedy]:
        labels = [r.label for r in remedies]
        if len(set(labels)) != len(labels) or {NONE_ARM, EARLY_STOPPING_ARM} & set(labels):
            raise ValueError(f"remedy labels must be unique and not '{NONE_ARM}' or '{EARLY_STOPPING_ARM}' "
                             f"(those arms always exist): {labels}")
        return remedies


class VerdictConfig(Section):
    """Thresholds of :func:`kdlab.analysis.fit_verdict` (its defaults; documented there and in docs/studies/fit.md)."""

    underfit_train_acc: float = Field(0.95, ge=0, le=1)
    overfit_gap: float = Field(0.05, ge=0, le=1)
    large_gap: float = Field(0.15, ge=0, le=1)
    gap_trend_epochs: int = Field(5, ge=2)
    val_loss_rise: float = Field(0.05, ge=0)


class CrossValidation(CapacitySweep):
    """k-fold cross-validation of a capacity sweep on a small dataset (folds of its training split)."""

    enabled: bool = True
    data: DataConfig = Field(default_factory=lambda: DataConfig(name="digits", val_size=0))
    k: int = Field(5, ge=2)
    fold_seed: int = 0
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)


class FitStudyConfig(StudyConfig):
    """The fit study's config: the capacity sweep, regularisation, verdict thresholds and cross-validation."""
    data: DataConfig = Field(default_factory=DataConfig)
    sweep: CapacitySweep
    regularise: RegulariseConfig = Field(default_factory=RegulariseConfig)
    verdict: VerdictConfig = Field(default_factory=VerdictConfig)
    cv: CrossValidation
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    # tolerance of the capacity recommendation in accuracy units; null = one standard error of the best model
    recommend_tolerance: float | None = Field(None, ge=0)
    # "a smaller model is as good": its interval against the largest model lies above -margin (accuracy fraction)
    as_good_margin: float = Field(0.01, gt=0, lt=1)


DEFAULTS: dict[str, Any] = {
    "data": {"name": "fashion_mnist", "val_size": 5000, "seed": 0},
    # 2-hidden-layer MLPs from 1.6k to 670k parameters, no regularisation at all (weight decay 0, dropout 0), on a
    # 2,000-image labelled subset: small enough that the large models memorise it within 30 epochs.
    "sweep": {"model": {"name": "mlp", "depth": 2},
              "capacities": [{"width": 2}, {"width": 8}, {"width": 32}, {"width": 128}, {"width": 512}],
              "epochs": 30, "batch_size": 128, "train_subset": 2000, "checkpoint_every": 10,
              "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0},
              "schedule": {"name": "cosine"}},
    "regularise": {"patience": 5, "max_models": 2,
                   "remedies": [{"label": "dropout", "model": {"dropout": 0.5}},
                                # (lambda / 2) ||w||^2 at initialisation ~ 1/3 of the initial cross-entropy for
                                # the width-512 model: strong within 480 steps, not dominant (docs/studies/fit.md)
                                {"label": "weight_decay", "optim": {"weight_decay": 0.005}}]},
    # digits: 1,437 training images of 8x8 -> 5 folds of ~287; 1-hidden-layer MLPs from 85 to 19k parameters
    "cv": {"data": {"name": "digits", "val_size": 0, "seed": 0}, "model": {"name": "mlp", "depth": 1},
           "capacities": [{"width": 1}, {"width": 4}, {"width": 16}, {"width": 64}, {"width": 256}],
           "k": 5, "epochs": 30, "batch_size": 64, "seeds": [0, 1, 2], "checkpoint_every": 10,
           "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0},
           "schedule": {"name": "cosine"}},
    "seeds": [0, 1, 2],
}

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "data": {"val_size": 1000},
        "sweep": {"epochs": 10, "train_subset": 1000, "capacities": [{"width": 2}, {"width": 32}, {"width": 256}]},
        "regularise": {"max_models": 1, "patience": 3},
        "cv": {"capacities": [{"width": 2}, {"width": 32}], "k": 3, "epochs": 8, "seeds": [0]},
        "seeds": [0],
    },
}




# ------------------------------------------------------------------------------------------------ plan


def _capacity_model(stage: CapacitySweep, capacity: dict[str, Any]) -> Component:
    return Component(**{**stage.model.as_dict(), **capacity})


def _label(model: Component, params: int | None = None) -> str:
    return model_name(model.as_dict(), params)


def _sweep_config(cfg: FitStudyConfig, model: Component, seed: int, keep_epochs: list[int] | None = None) -> RunConfig:
    return stage_run_config(cfg.sweep, cfg.data, seed, model=model, keep_epochs=keep_epochs or [])


def _remedy_config(cfg: FitStudyConfig, model: Component, remedy: Remedy, seed: int) -> RunConfig:
    """The sweep run of ``model`` with the remedy's model and optimiser overrides; errors name the remedy."""
    raw = _sweep_config(cfg, model, seed).to_dict()
    raw["model"] = {**raw["model"], **remedy.model}
    raw["optim"] = {**raw["optim"], **remedy.optim}
    try:
        run_cfg = parse_config(raw)
        check_components(run_cfg)
    except ConfigError as exc:
        raise ConfigError(f"regularise.remedies '{remedy.label}': {exc}") from None
    return run_cfg


class KFoldJob(Job):
    """One cross-validation run: ``run`` trained on k - 1 folds of its data's training split, scored on fold
    ``fold`` (stratified folds by ``fold_seed``, :func:`kdlab.analysis.kfold_indices`)."""

    kind: ClassVar[str] = "kfold"
    run: RunConfig
    k: int
    fold: int
    fold_seed: int

    def trained_loss(self) -> Component:
        """CE: :func:`kdlab.compress.finetune.finetune`'s default, which :meth:`train` uses (the run's loss section is
        CE too, :func:`_cv_job`)."""
        return Component(name="ce")

    def check(self) -> None:
        """Registry names and options of the run, and a fold inside [0, k)."""
        check_components(self.run)
        if not 0 <= self.fold < self.k:
            raise ConfigError(f"fold={self.fold} is not allowed; allowed: 0 <= fold < k={self.k}")

    def train(self, out_dir: Path, *, progress: bool | None = None,
              teacher_cache_dir: str | Path | None = None) -> dict[str, Any]:
        """Train the run on every fold but ``fold`` and score it on ``fold`` (called under the directory's lock)."""
        d = self.run.data
        data = load_dataset(d.name, data_dir=d.data_dir, val_size=d.val_size, seed=d.seed,
                            train_subset=d.train_subset, **d.options)
        train_idx, val_idx = kfold_indices(data.train.y, self.k, seed=self.fold_seed)[self.fold]
        torch.manual_seed(self.run.train.seed)
        net = create_model(self.run.model.name, data.num_classes, data.in_shape, **self.run.model.options)
        return finetune(net, data.train.subset(train_idx), data.train.subset(val_idx), self.run, out_dir,
                        progress=progress, summary_extra={"fold": self.fold, "k": self.k,
                                                          "num_train": len(data.train)})


def _cv_job(cv: CrossValidation, model: Component, fold: int, seed: int) -> KFoldJob:
    return KFoldJob(run=stage_run_config(cv, cv.data, seed, model=model, keep_epochs=[]), k=cv.k, fold=fold,
                    fold_seed=cv.fold_seed)


def plan(cfg: FitStudyConfig, store: RunStore) -> list[Wave]:
    """The sweep; the cross-validation runs; then (built from the sweep) the regularisation of the over-capacity
    models: each remedy per seed, and a replay of a run when early stopping keeps an epoch its best checkpoint does
    not hold."""
    models = [_capacity_model(cfg.sweep, c) for c in cfg.sweep.capacities]
    sweep = [Planned({"role": "sweep", "model": i, "seed": seed}, _sweep_config(cfg, m, seed))
             for i, m in enumerate(models) for seed in cfg.seeds]
    cv = []
    if cfg.cv.enabled:
        cv_models = [_capacity_model(cfg.cv, c) for c in cfg.cv.capacities]
        cv = [Planned({"role": "cv", "model": i, "fold": f, "seed": seed}, _cv_job(cfg.cv, m, f, seed))
              for i, m in enumerate(cv_models) for f in range(cfg.cv.k) for seed in cfg.cv.seeds]
    # the remedies apply to whichever models turn out over-capacity: preview them on every model
    preview = [Planned({"role": "remedy", "model": i, "arm": r.label, "seed": cfg.seeds[0]},
                       _remedy_config(cfg, m, r, cfg.seeds[0])) for i, m in enumerate(models)
               for r in cfg.regularise.remedies]

    def regularisation(runs: RunSet) -> list[Planned]:
        entries = _sweep_entries(cfg, models, runs)
        planned = []
        for i in _pick_regularised(cfg, entries):
            for seed in cfg.seeds:
                planned += [Planned({"role": "remedy", "model": i, "arm": r.label, "seed": seed},
                                    _remedy_config(cfg, models[i], r, seed)) for r in cfg.regularise.remedies]
                run = runs.one(role="sweep", model=i, seed=seed)
                stop = early_stopping_epoch(read_curves(run.run_dir)["val_acc"], cfg.regularise.patience)
                if stop["epoch"] != run.summary["best_epoch"]:
                    # a later epoch beat it: replay the same run keeping that epoch (the loop is deterministic on CPU)
                    planned.append(Planned({"role": "replay", "model": i, "seed": seed, "epoch": stop["epoch"]},
                                           _sweep_config(cfg, models[i], seed, keep_epochs=[stop["epoch"]])))
        return planned

    return [Wave("capacity sweep", sweep), Wave("cross-validation", cv),
            Wave("regularisation", build=regularisation, preview=preview)]


def check_models(cfg: FitStudyConfig, planned: list[Planned]) -> None:
    """Build every model once (a dropout of 2 or a width of 0 is refused by the model factories) before training."""
    def build(key: str, model: Component, data) -> None:
        try:
            create_model(model.name, data.num_classes, data.in_shape, **model.options)
        except (ConfigError, ValueError, TypeError) as exc:
            raise ConfigError(f"{key}: {exc}") from None

    data = _load_eval_data(cfg)
    for m in (_capacity_model(cfg.sweep, c) for c in cfg.sweep.capacities):
        build("sweep.capacities", m, data)
        for remedy in cfg.regularise.remedies:
            build(f"regularise.remedies '{remedy.label}'", Component(**{**m.as_dict(), **remedy.model}), data)
    if cfg.cv.enabled:
        d = cfg.cv.data
        cv_data = load_dataset(d.name, data_dir=d.data_dir, val_size=d.val_size, seed=d.seed,
                               train_subset=cfg.cv.train_subset, **d.options)
        for m in (_capacity_model(cfg.cv, c) for c in cfg.cv.capacities):
            build("cv.capacities", m, cv_data)


# ------------------------------------------------------------------------------------------------ curves


def read_curves(run_dir: str | Path) -> dict[str, list[float]]:
    """Per-epoch ``train_acc``, ``val_acc``, ``train_loss``, ``val_loss`` of a run, from its metrics.jsonl."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows.sort(key=lambda r: r["epoch"])
    return {"train_acc": [r["train_accuracy"] for r in rows], "val_acc": [r["val_accuracy"] for r in rows],
            "train_loss": [r["train_loss"] for r in rows], "val_loss": [r["val_loss"] for r in rows]}


def mean_curves(curves: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """Element-wise mean and sample std over runs of equal length: ``{key: mean, key + "_std": std}``."""
    out: dict[str, list[float]] = {}
    for key in curves[0]:
        columns = list(zip(*(c[key] for c in curves)))
        stats = [mean_std(col) for col in columns]
        out[key] = [s["mean"] for s in stats]
        out[key + "_std"] = [s["std"] for s in stats]
    return out


def early_stopping_epoch(val_acc: list[float], patience: int) -> dict[str, int]:
    """Early stopping computed from a validation-accuracy curve (1-based epochs).

    Walk the epochs keeping ``best`` = the first epoch reaching the running maximum (a new best needs a strictly
    higher accuracy, as the training loop's best checkpoint does). Training stops after the first epoch ``t`` that
    is ``patience`` epochs past ``best`` without a new best (``t - best = patience``) and returns the weights of
    epoch ``best`` ("restore the best weights"; Prechelt, "Early Stopping -- But When?", Neural Networks: Tricks of
    the Trade, 1998). Without such a ``t`` the run ends at the last epoch and returns ``best``.
    Returns ``{"epoch": best, "stopped_at": t or the last epoch}``.
    """
    best, best_acc = 1, val_acc[0]
    for t in range(2, len(val_acc) + 1):
        if val_acc[t - 1] > best_acc:
            best, best_acc = t, val_acc[t - 1]
        elif t - best >= patience:
            return {"epoch": best, "stopped_at": t}
    return {"epoch": best, "stopped_at": len(val_acc)}


def _verdict_inputs(curves: dict[str, list[float]]) -> dict[str, list[float]]:
    return {k: curves[k] for k in ("train_acc", "val_acc", "train_loss", "val_loss")}


# ------------------------------------------------------------------------------------------------ sweep


def _sweep_entries(cfg: FitStudyConfig, models: list[Component], run_set: RunSet) -> list[dict[str, Any]]:
    """Per model: seed-mean curves, the verdict on them, per-seed verdicts, and summary statistics over seeds."""
    thresholds = cfg.verdict.model_dump()
    runs = [[{**r.summary, "curves": read_curves(r.run_dir)} for r in
             (run_set.one(role="sweep", model=i, seed=seed) for seed in cfg.seeds)] for i in range(len(models))]
    means = [mean_curves([r["curves"] for r in model_runs]) for model_runs in runs]
    verdicts = sweep_verdicts([_verdict_inputs(m) for m in means], **thresholds)
    reference = verdicts[0]["reference_train_acc"]
    entries = []
    for model, model_runs, curves, verdict in zip(models, runs, means, verdicts):
        seed_verdicts = [fit_verdict(**_verdict_inputs(r["curves"]), reference_train_acc=reference,
                                     **thresholds)["verdict"] for r in model_runs]
        entries.append({
            "name": _label(model, model_runs[0]["params"]),
            "model": model.as_dict(),
            "params": model_runs[0]["params"],
            "macs": model_runs[0]["macs"],
            "verdict": verdict,
            "seed_verdicts": dict(zip(map(str, cfg.seeds), seed_verdicts)),
            "curves": curves,
            "final_train_accuracy": mean_std([r["curves"]["train_acc"][-1] for r in model_runs]),
            "final_val_accuracy": mean_std([r["curves"]["val_acc"][-1] for r in model_runs]),
            "final_gap": mean_std([r["curves"]["train_acc"][-1] - r["curves"]["val_acc"][-1] for r in model_runs]),
            "best_val_accuracy": mean_std([r["best_val_accuracy"] for r in model_runs]),
            "final_train_accuracy_per_seed": [r["curves"]["train_acc"][-1] for r in model_runs],
            "final_gap_per_seed": [r["curves"]["train_acc"][-1] - r["curves"]["val_acc"][-1] for r in model_runs],
            "best_val_accuracy_per_seed": [r["best_val_accuracy"] for r in model_runs],
            "test_accuracy_per_seed": [r["test_accuracy"] for r in model_runs],
            "best_epoch": [r["best_epoch"] for r in model_runs],
            "test_accuracy": mean_std([r["test_accuracy"] for r in model_runs]),
            "run_dirs": [r["run_dir"] for r in model_runs],
        })
    return entries


def _pick_regularised(cfg: FitStudyConfig, sweep: list[dict[str, Any]]) -> list[int]:
    """Indices of the models to regularise: the ``max_models`` largest over-capacity ones, largest first; the
    largest model when none is over-capacity (so every remedy is always measured; claims then stay undecided)."""
    over = [i for i, m in enumerate(sweep) if m["verdict"]["verdict"] == "over-capacity"]
    if not over:
        return [max(range(len(sweep)), key=lambda i: sweep[i]["params"])]
    return sorted(over, key=lambda i: -sweep[i]["params"])[:cfg.regularise.max_models]


def _recommend(cfg: FitStudyConfig, entries: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Smallest model within ``tolerance`` of the best mean score; tolerance = one standard error of the best."""
    scores = [{"val_accuracy": e[key]["mean"], "params": e["params"]} for e in entries]
    best = max(range(len(entries)), key=lambda i: entries[i][key]["mean"])
    n = entries[best][key]["n"]
    se = entries[best][key]["std"] / math.sqrt(n) if n > 1 else 0.0
    tolerance = cfg.recommend_tolerance if cfg.recommend_tolerance is not None else se
    index = recommend_capacity(scores, tolerance)
    return {"index": index, "name": entries[index]["name"], "params": entries[index]["params"],
            "score": entries[index][key]["mean"], "best_index": best, "best_name": entries[best]["name"],
            "best_score": entries[best][key]["mean"], "tolerance": tolerance, "score_key": key,
            "rule": "one standard error of the best model" if cfg.recommend_tolerance is None else "fixed tolerance"}


# ------------------------------------------------------------------------------------------------ regularisation


def _load_eval_data(cfg: FitStudyConfig):
    d = cfg.data
    return load_dataset(d.name, data_dir=d.data_dir, val_size=d.val_size, seed=d.seed,
                        train_subset=cfg.sweep.train_subset, **d.options)


def _evaluate_point(model, data, epoch: int, val_accuracy: float) -> dict[str, Any]:
    """The evaluated model of an arm: accuracy on the training subset and on test, both in eval mode.

    The loop's per-epoch train accuracy is a running average over the epoch in train mode (dropout active, weights
    still moving), which understates how well a dropout model fits its training data; the gap of an arm is therefore
    ``train accuracy in eval mode - validation accuracy`` of the model that arm returns.
    """
    if isinstance(model, (str, Path)):
        model = load_model_weights(model)
    train = evaluate(model, TensorLoader(data.train, 1024))["accuracy"]
    test = evaluate(model, TensorLoader(data.test, 1024))["accuracy"]
    return {"epoch": epoch, "train_accuracy": train, "val_accuracy": val_accuracy, "gap": train - val_accuracy,
            "test_accuracy": test}


def point_verdict(train_accuracy: float, val_accuracy: float, reference: float,
                  thresholds: dict[str, Any]) -> dict[str, Any]:
    """Verdict of one evaluated model (no curve, so no trend): the first rule that fires.

    1. under-capacity if ``train_accuracy < underfit_train_acc * reference`` (as rule 1 of
       :func:`kdlab.analysis.fit_verdict`, with the sweep's reference);
    2. over-capacity if ``train_accuracy - val_accuracy > overfit_gap`` (without a trend the stricter of the two gap
       thresholds applies);
    3. good fit otherwise.
    """
    floor = thresholds["underfit_train_acc"] * reference
    gap = train_accuracy - val_accuracy
    if train_accuracy < floor:
        verdict, rule = "under-capacity", "low_train_accuracy"
    elif gap > thresholds["overfit_gap"]:
        verdict, rule = "over-capacity", "gap"
    else:
        verdict, rule = "good fit", "none"
    return {"verdict": verdict, "rule": rule, "train_accuracy": train_accuracy, "val_accuracy": val_accuracy,
            "gap": gap, "floor": floor, "overfit_gap": thresholds["overfit_gap"]}


def _regularise(cfg: FitStudyConfig, index: int, entry: dict[str, Any], run_set: RunSet, data,
                reference: float) -> dict[str, Any]:
    """The arms of one model: none (last epoch), early stopping (from the curves), and each remedy (last epoch)."""
    thresholds = cfg.verdict.model_dump()
    patience = cfg.regularise.patience
    runs = [run_set.one(role="sweep", model=index, seed=seed) for seed in cfg.seeds]
    curves = [read_curves(r.run_dir) for r in runs]
    arms: dict[str, dict[str, Any]] = {}

    # none: the unregularised run as it ends (no early stopping, no best-checkpoint selection)
    points = []
    for run, curve in zip(runs, curves):
        point = _evaluate_point(Path(run.run_dir) / "checkpoints" / "last.safetensors", data, len(curve["val_acc"]),
                                curve["val_acc"][-1])
        points.append({**point, "run_dir": run.run_dir})
    arms[NONE_ARM] = {"points": points, "curves": entry["curves"], "hyperparams": {}}

    # early stopping with `patience`, computed from each seed's validation curve
    points = []
    for seed, run, curve in zip(cfg.seeds, runs, curves):
        stop = early_stopping_epoch(curve["val_acc"], patience)
        val = curve["val_acc"][stop["epoch"] - 1]
        if stop["epoch"] == run.summary["best_epoch"]:
            # the loop's best checkpoint holds exactly that epoch's weights
            point = _evaluate_point(Path(run.run_dir) / "checkpoints" / "best.safetensors", data, stop["epoch"], val)
            source, run_dir = "best checkpoint", run.run_dir
        else:
            replay = run_set.one(role="replay", model=index, seed=seed)
            if read_curves(replay.run_dir)["val_acc"] != curve["val_acc"]:
                raise KdlabError(f"the replay {replay.run_dir} of {run.run_dir} did not reproduce its validation "
                                 f"curve (training is not deterministic here); set train.deterministic in the sweep, "
                                 f"or delete the replay to try again")
            net = load_model_weights(Path(replay.run_dir) / "checkpoints" / "last.safetensors")
            load_epoch_weights(replay.run_dir, stop["epoch"], net)
            point = _evaluate_point(net, data, stop["epoch"], val)
            source, run_dir = f"replay keeping epoch {stop['epoch']}", replay.run_dir
        points.append({**point, "stopped_at": stop["stopped_at"], "weights_from": source, "run_dir": run_dir})
    arms[EARLY_STOPPING_ARM] = {"points": points, "curves": entry["curves"], "hyperparams": {"patience": patience}}

    # each remedy: a new run per seed, evaluated at its last epoch like `none`
    for remedy in cfg.regularise.remedies:
        points, remedy_curves = [], []
        for seed in cfg.seeds:
            run = run_set.one(role="remedy", model=index, arm=remedy.label, seed=seed)
            run_curves = read_curves(run.run_dir)
            point = _evaluate_point(Path(run.run_dir) / "checkpoints" / "last.safetensors", data,
                                    len(run_curves["val_acc"]), run_curves["val_acc"][-1])
            points.append({**point, "best_checkpoint_test_accuracy": run.test_accuracy, "run_dir": run.run_dir})
            remedy_curves.append(run_curves)
        arms[remedy.label] = {"points": points, "curves": mean_curves(remedy_curves),
                              "hyperparams": {"model": remedy.model, "optim": remedy.optim}}

    none = arms[NONE_ARM]["points"]
    students = []
    for label, arm in arms.items():
        for stat in ("test_accuracy", "val_accuracy", "train_accuracy", "gap"):
            arm[stat] = mean_std([p[stat] for p in arm["points"]])
        arm["minus_none"] = {stat: paired_difference([p[stat] for p in arm["points"]], [p[stat] for p in none])
                             for stat in ("test_accuracy", "gap")}
        arm["verdict"] = point_verdict(arm["train_accuracy"]["mean"], arm["val_accuracy"]["mean"], reference,
                                       thresholds)
        for seed, p in zip(cfg.seeds, arm["points"]):
            students.append({"teacher": None, "method": label, "model": entry["name"],
                             "hyperparams": {"loss": {"name": "ce"}, **arm["hyperparams"]}, "seed": seed,
                             "test_accuracy": p["test_accuracy"], "val_accuracy": p["val_accuracy"],
                             "epoch": p["epoch"], "run_dir": p["run_dir"]})
    return {"model": entry["name"], "params": entry["params"], "sweep_verdict": entry["verdict"]["verdict"],
            "patience": patience, "arms": arms, "_students": students}


# ------------------------------------------------------------------------------------------------ cross-validation


def _cross_validate(cfg: FitStudyConfig, run_set: RunSet) -> dict[str, Any]:
    """k-fold CV of the ``cv`` sweep: every model x fold x seed trained on k-1 folds, scored on the held-out fold.

    Score of a run: the held-out fold's accuracy after the last epoch (the fold chooses nothing, so the score is
    unbiased). Per model: the seed-mean score of each fold, then mean ± std over the k folds and the standard error
    std / sqrt(k). Verdict: the rules on the fold-and-seed-mean curves (held-out fold as validation).
    """
    cv = cfg.cv
    models = [_capacity_model(cv, c) for c in cv.capacities]
    entries, curves_per_model = [], []
    for i, model in enumerate(models):
        fold_scores, curves, params = [], [], 0
        for f in range(cv.k):
            runs = [run_set.one(role="cv", model=i, fold=f, seed=seed) for seed in cv.seeds]
            params = runs[0].summary["params"]
            fold_scores.append(sum(r.summary["final"]["val_accuracy"] for r in runs) / len(runs))
            curves += [read_curves(r.run_dir) for r in runs]
        stats = mean_std(fold_scores)
        curves_per_model.append(mean_curves(curves))
        entries.append({"name": _label(model, params), "model": model.as_dict(), "params": params,
                        "fold_scores": fold_scores, "cv_accuracy": stats,
                        "standard_error": stats["std"] / math.sqrt(cv.k)})
    thresholds = cfg.verdict.model_dump()
    verdicts = sweep_verdicts([_verdict_inputs(c) for c in curves_per_model], **thresholds)
    for entry, verdict, curves in zip(entries, verdicts, curves_per_model):
        entry["verdict"] = verdict
        entry["curves"] = curves
    best = max(range(len(entries)), key=lambda i: entries[i]["cv_accuracy"]["mean"])
    tolerance = cfg.recommend_tolerance if cfg.recommend_tolerance is not None else entries[best]["standard_error"]
    index = recommend_capacity([{"val_accuracy": e["cv_accuracy"]["mean"], "params": e["params"]} for e in entries],
                               tolerance)
    num_train = run_set.one(role="cv", model=0, fold=0, seed=cv.seeds[0]).summary["num_train"]
    return {"dataset": cv.data.name, "k": cv.k, "seeds": cv.seeds, "num_train": num_train, "models": entries,
            "recommended": {"index": index, "name": entries[index]["name"], "params": entries[index]["params"],
                            "score": entries[index]["cv_accuracy"]["mean"], "best_index": best,
                            "best_name": entries[best]["name"], "best_score": entries[best]["cv_accuracy"]["mean"],
                            "tolerance": tolerance,
                            "rule": "one standard error of the best model" if cfg.recommend_tolerance is None
                            else "fixed tolerance"}}


# ------------------------------------------------------------------------------------------------ analysis


def analyse(cfg: FitStudyConfig, runs: RunSet) -> dict[str, Any]:
    """Sweep verdicts, the recommendation, each regularised model's arms and the cross-validation."""
    models = [_capacity_model(cfg.sweep, c) for c in cfg.sweep.capacities]
    sweep = _sweep_entries(cfg, models, runs)
    reference = sweep[0]["verdict"]["reference_train_acc"]
    data = _load_eval_data(cfg)
    regularisation = [_regularise(cfg, i, sweep[i], runs, data, reference) for i in _pick_regularised(cfg, sweep)]
    students = [{"teacher": None, "method": "sweep", "model": sweep[r.tags["model"]]["name"],
                 "hyperparams": {"loss": {"name": "ce"}}, "seed": r.tags["seed"], "test_accuracy": r.test_accuracy,
                 "val_accuracy": r.val_accuracy, "params": r.summary["params"], "run_dir": r.run_dir}
                for r in runs.select(role="sweep")]
    for reg in regularisation:
        students += reg.pop("_students")
    return {
        "dataset": cfg.data.name,
        "config": cfg.model_dump(mode="json"),
        "students": students,
        "models": sweep,
        "reference_train_acc": reference,
        "recommended": _recommend(cfg, sweep, key="best_val_accuracy"),
        "regularisation": regularisation,
        "cross_validation": _cross_validate(cfg, runs) if cfg.cv.enabled else None,
    }


# ------------------------------------------------------------------------------------------------ claims

POINTS = {"unit": "points", "scale": 100.0}
VALIDATION = "validation accuracy (mean over seeds)"
TEXTBOOK = "Goodfellow, Bengio & Courville, Deep Learning, 2016, ch. 5.2 and 7"


def _one_sample(values: list[float], reference: float) -> dict[str, Any]:
    """mean(values) - reference with a t interval over the values (a paired difference against a constant)."""
    return paired_difference(values, [reference] * len(values))


def _smallest_underfits(results: dict[str, Any]) -> Measurement:
    m = min(results["models"], key=lambda e: e["params"])
    v = m["verdict"]
    floor = v["thresholds"]["underfit_train_acc"] * v["reference_train_acc"]
    return paired_measurement(_one_sample(m["final_train_accuracy_per_seed"], floor),
                              f"{m['name']}: final train accuracy {format_pm(m['final_train_accuracy'])}% against the "
                              f"floor {floor * 100:.2f}% ({v['thresholds']['underfit_train_acc']:g} x the sweep's best "
                              f"{v['reference_train_acc'] * 100:.2f}%); curve verdict {v['verdict']} ({v['rule']})")


def _largest_overfits(results: dict[str, Any]) -> Measurement:
    m = max(results["models"], key=lambda e: e["params"])
    v = m["verdict"]
    return paired_measurement(_one_sample(m["final_gap_per_seed"], 0.0),
                              f"{m['name']}: gap trend {v['gap_trend'] * 100:+.2f} points/epoch; curve verdict "
                              f"{v['verdict']} ({v['rule']})")


def _over_capacity(results: dict[str, Any]) -> dict[str, Any] | NotApplicable:
    """The regularised model when the sweep found one over-capacity, else why the claim does not apply."""
    reg = results["regularisation"][0] if results["regularisation"] else None
    if reg is not None and reg["sweep_verdict"] == "over-capacity":
        return reg
    largest = max(results["models"], key=lambda m: m["params"])
    return NotApplicable(f"no model of the sweep is over-capacity (largest: {largest['name']}, curve verdict "
                         f"{largest['verdict']['verdict']}); the remedies were measured on it for the report")


def _narrows(arm: str):
    def measure(results: dict[str, Any]):
        reg = _over_capacity(results)
        if isinstance(reg, NotApplicable):
            return reg
        a = reg["arms"][arm]
        return paired_measurement(a["minus_none"]["gap"], f"{reg['model']}: gap {format_pm(a['gap'])} with {arm} vs "
                                                          f"{format_pm(reg['arms'][NONE_ARM]['gap'])} without")
    return measure


def _chosen_arm(reg: dict[str, Any]) -> str:
    """The regularisation arm a practitioner would pick: the best mean validation accuracy (never the test set)."""
    return max((a for a in reg["arms"] if a != NONE_ARM), key=lambda a: reg["arms"][a]["val_accuracy"]["mean"])


def _improves_test(results: dict[str, Any]):
    reg = _over_capacity(results)
    if isinstance(reg, NotApplicable):
        return reg
    pick = _chosen_arm(reg)
    arms = reg["arms"]
    return paired_measurement(arms[pick]["minus_none"]["test_accuracy"],
                              f"{reg['model']}: validation accuracy " + ", ".join(
                                  f"{a} {arms[a]['val_accuracy']['mean'] * 100:.2f}%" for a in arms)
                              + f"; test accuracy {format_pm(arms[pick]['test_accuracy'])} with {pick} vs "
                              f"{format_pm(arms[NONE_ARM]['test_accuracy'])} without",
                              {"regularisation arm": pick}, VALIDATION)


def _closes_gap(results: dict[str, Any]):
    reg = _over_capacity(results)
    if isinstance(reg, NotApplicable):
        return reg
    pick = _chosen_arm(reg)
    arm = reg["arms"][pick]
    v = arm["verdict"]
    return paired_measurement(_one_sample([p["gap"] for p in arm["points"]], 0.0),
                              f"{reg['model']} with {pick}: train accuracy {v['train_accuracy'] * 100:.2f}% in eval "
                              f"mode (floor {v['floor'] * 100:.2f}%), point verdict {v['verdict']}",
                              {"regularisation arm": pick}, VALIDATION)


def _smaller_as_good(results: dict[str, Any]):
    models = results["models"]
    largest = max(range(len(models)), key=lambda i: models[i]["params"])
    smaller = [i for i in range(len(models)) if i != largest]
    if not smaller:
        return NotApplicable("the sweep has a single model")
    pick = max(smaller, key=lambda i: models[i]["best_val_accuracy"]["mean"])
    diff = paired_difference(models[pick]["test_accuracy_per_seed"], models[largest]["test_accuracy_per_seed"])
    return paired_measurement(diff, f"{models[pick]['name']} {format_pm(models[pick]['test_accuracy'])}% vs the "
                                    f"largest {models[largest]['name']} {format_pm(models[largest]['test_accuracy'])}% "
                                    f"on test; one-standard-error recommendation: {results['recommended']['name']}",
                              {"smaller model": models[pick]["name"]}, "best-checkpoint " + VALIDATION)


def _cv_next_size_as_good(results: dict[str, Any]):
    cv = results["cross_validation"]
    models = sorted(cv["models"], key=lambda m: m["params"])
    if len(models) < 2:
        return NotApplicable("cross-validation swept a single model")
    largest, next_down = models[-1], models[-2]
    diff = paired_difference(next_down["fold_scores"], largest["fold_scores"])
    return Measurement(diff["mean"], diff["low"], diff["high"], diff["n"], "95% paired t interval over folds",
                       f"{next_down['name']} {format_pm(next_down['cv_accuracy'])}% vs {largest['name']} "
                       f"{format_pm(largest['cv_accuracy'])}% (held-out fold accuracy); one-standard-error "
                       f"recommendation: {cv['recommended']['name']}")


def claims(cfg: FitStudyConfig) -> list[Claim]:
    """The fit study's claims (textbook statements about capacity and regularisation, decided by intervals)."""
    overfit_gap = cfg.verdict.overfit_gap
    margin = Rule(">", -cfg.as_good_margin, **POINTS)
    over = "the sweep finds an over-capacity model (the largest such model is the one regularised)"
    out = [
        Claim("smallest_underfits", "the smallest model underfits (under-capacity: high bias)",
              "final train accuracy of the smallest model minus the underfit floor (underfit_train_acc x the sweep's "
              "best final train accuracy), over seeds (points)", Rule("<", 0.0, **POINTS), _smallest_underfits,
              source=TEXTBOOK),
        Claim("largest_overfits", "the largest model overfits (over-capacity: high variance)",
              "final train - validation accuracy gap of the largest model, over seeds (points)",
              Rule(">", overfit_gap, **POINTS), _largest_overfits, source=TEXTBOOK),
    ]
    for arm in [EARLY_STOPPING_ARM, *(r.label for r in cfg.regularise.remedies)]:
        out.append(Claim(f"{arm}_narrows_gap", f"{arm.replace('_', ' ')} narrows the train-validation gap of the "
                         "over-capacity model", f"gap with {arm} - gap without regularisation (train accuracy in eval "
                         "mode - validation accuracy), paired over seeds (points)", Rule("<", 0.0, **POINTS),
                         _narrows(arm), precondition=over, source=TEXTBOOK))
    out += [
        Claim("regularisation_improves_test", "regularisation improves the test accuracy of the over-capacity model",
              "test accuracy with the regularisation arm chosen on validation - without, paired over seeds (points)",
              Rule(">", 0.0, **POINTS), _improves_test, precondition=over,
              selection=f"the regularisation arm with the best {VALIDATION}", source=TEXTBOOK),
        Claim("regularisation_closes_gap", "regularisation closes the gap of the over-capacity model (the chosen "
              "arm's train-validation gap falls below the overfit threshold)",
              "train - validation accuracy gap with the regularisation arm chosen on validation, over seeds (points)",
              Rule("<", overfit_gap, **POINTS), _closes_gap, precondition=over,
              selection=f"the regularisation arm with the best {VALIDATION}", source=TEXTBOOK),
        Claim("smaller_as_good", "a model smaller than the largest is as good as the largest",
              "test accuracy of the best smaller model (chosen on validation) - the largest model, paired over seeds "
              "(points)", margin, _smaller_as_good,
              selection=f"the smaller model with the best best-checkpoint {VALIDATION}",
              source="Hastie, Tibshirani & Friedman, The Elements of Statistical Learning, 2009, ch. 7"),
    ]
    if cfg.cv.enabled:
        out.append(Claim("cv_next_size_as_good", f"{cfg.cv.k}-fold cross-validation on {cfg.cv.data.name}: the next "
                         "smaller model is as good as the largest",
                         "held-out fold accuracy of the second-largest model - the largest, paired over folds "
                         "(points)", margin, _cv_next_size_as_good,
                         source="Hastie, Tibshirani & Friedman, The Elements of Statistical Learning, 2009, ch. 7.10"))
    return out


# ------------------------------------------------------------------------------------------------ report

VERDICT_COLORS = {"under-capacity": "#4c78a8", "good fit": "#54a24b", "over-capacity": "#e45756"}


def _learning_curves(models: list[dict[str, Any]], title: str) -> dict[str, Any]:
    """Train (solid) and validation (dashed) accuracy and loss per epoch, one column per model (mean ± std)."""
    n = len(models)
    top, bottom = [], []
    for m in models:
        c = m["curves"]
        x = list(range(1, len(c["train_acc"]) + 1))
        colour = VERDICT_COLORS.get(m["verdict"]["verdict"], "#444")
        top.append({"type": "lines", "title": f"{m['name']}: {m['verdict']['verdict']}", "title_size": 8,
                    "ylabel": "accuracy (%)" if not top else "", "legend": "best" if not top else "none",
                    "series": [{"label": label, "x": x, "y": [v * 100 for v in c[key]], "style": style, "band": True,
                                "err": [v * 100 for v in c.get(f"{key}_std", [0] * len(x))], "color": colour}
                               for key, label, style in (("train_acc", "train", "-"),
                                                         ("val_acc", "validation", "--"))]})
        bottom.append({"type": "lines", "xlabel": "epoch", "ylabel": "cross-entropy" if not bottom else "",
                       "legend": "none",
                       "series": [{"x": x, "y": c[key], "style": style, "band": True, "color": colour,
                                   "err": c.get(f"{key}_std", [0] * len(x))}
                                  for key, style in (("train_loss", "-"), ("val_loss", "--"))]})
    return {"title": title, "layout": [2, n], "size": [3.2 * n, 5.6], "sharey": "row", "panels": top + bottom}


def _validation_curve(results: dict[str, Any]) -> dict[str, Any]:
    models = results["models"]
    params = [m["params"] for m in models]
    rec = results["recommended"]
    thresholds = models[0]["verdict"]["thresholds"]
    top = {"type": "lines", "xscale": "log", "ylabel": "accuracy (%)", "legend": "best",
           "title": "Validation curve: accuracy against capacity (mean ± std over seeds)",
           "series": [{"label": label, "x": params, "y": [m[key]["mean"] * 100 for m in models],
                       "err": [m[key]["std"] * 100 for m in models], "style": "o" + style, "color": "#333"}
                      for key, label, style in (("final_train_accuracy", "train (last epoch)", "-"),
                                                ("final_val_accuracy", "validation (last epoch)", "--"),
                                                ("best_val_accuracy", "validation (best checkpoint)", ":"))]
           + [{"label": verdict, "x": [m["params"] for m in models if m["verdict"]["verdict"] == verdict],
               "y": [m["final_val_accuracy"]["mean"] * 100 for m in models if m["verdict"]["verdict"] == verdict],
               "style": "o", "color": colour, "markersize": 10} for verdict, colour in VERDICT_COLORS.items()
              if any(m["verdict"]["verdict"] == verdict for m in models)],
           "vlines": [{"x": rec["params"], "color": "#54a24b", "alpha": 0.5, "width": 3, "style": "-",
                       "label": f"recommended: {rec['name']}"}]}
    bottom = {"type": "lines", "xscale": "log", "xlabel": "parameters", "ylabel": "train - val gap (points)",
              "series": [{"x": params, "y": [m["final_gap"]["mean"] * 100 for m in models],
                          "err": [m["final_gap"]["std"] * 100 for m in models], "style": "s-", "color": "#444"}],
              "hlines": [{"y": thresholds["overfit_gap"] * 100, "color": "#e45756", "style": ":",
                          "label": "overfit_gap"},
                         {"y": thresholds["large_gap"] * 100, "color": "#e45756", "style": "--", "label": "large_gap"}]}
    return {"layout": [2, 1], "size": [7, 6.5], "sharex": True, "panels": [top, bottom]}


def _regularisation_figure(reg: dict[str, Any]) -> dict[str, Any]:
    arms = reg["arms"]
    labels = list(arms)
    curves = {"type": "lines", "title": f"{reg['model']}: learning curves per arm", "legend_columns": 2,
              "xlabel": "epoch (dotted: early-stopping epoch of each seed)", "ylabel": "accuracy (%, mean over seeds)",
              "series": [s for i, (label, arm) in enumerate(arms.items()) if label != EARLY_STOPPING_ARM
                         for s in ({"label": f"{label} train", "x": list(range(1, len(arm["curves"]["train_acc"]) + 1)),
                                    "y": [v * 100 for v in arm["curves"]["train_acc"]], "style": "-",
                                    "color": _colour(i)},
                                   {"label": f"{label} val", "x": list(range(1, len(arm["curves"]["val_acc"]) + 1)),
                                    "y": [v * 100 for v in arm["curves"]["val_acc"]], "style": "--",
                                    "color": _colour(i)})],
              "vlines": [{"x": p["epoch"]} for p in arms[EARLY_STOPPING_ARM]["points"]]}
    bars = [{"type": "bars", "categories": labels, "legend": "none", "title": title, "ylabel": ylabel,
             "series": [{"values": [arms[a][key]["mean"] * 100 for a in labels],
                         "errors": [arms[a][key]["std"] * 100 for a in labels], "color": colour}]}
            for key, title, ylabel, colour in (("test_accuracy", "evaluated model: test accuracy", "test accuracy (%)",
                                                "#4c78a8"),
                                               ("gap", "evaluated model: train - val gap", "gap (points)", "#e45756"))]
    return {"layout": [1, 3], "size": [15, 4.5], "panels": [curves, *bars]}


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def report(results: dict[str, Any]) -> Report:
    """The fit report: claims, the sweep, learning and validation curves, regularisation, cross-validation."""
    cfg = results["config"]
    sw = cfg["sweep"]
    rep = Report(f"kdlab fit study — {results['dataset']}")
    rep.paragraph(
        f"Capacity sweep: {', '.join(m['name'] for m in results['models'])}, each trained {sw['epochs']} epochs on "
        f"{sw['train_subset'] or 'all'} training images without regularisation (weight decay "
        f"{sw['optim']['weight_decay']}, dropout {sw['model'].get('dropout', 0.0)}), seeds {cfg['seeds']}. "
        f"Verdicts apply the rules of kdlab.analysis.fit_verdict to the seed-mean learning curves, with the best "
        f"final train accuracy of the sweep ({results['reference_train_acc'] * 100:.2f}%) as the reference.")
    rep.claims_section(results)
    rep.heading("Capacity sweep")
    rep.table(["model", "final train acc (%)", "final val acc (%)", "gap (points)", "gap trend / epoch",
               "best val acc (%)", "test acc, best ckpt (%)", "verdict (rule)", "per seed"],
              [[m["name"], format_pm(m["final_train_accuracy"]), format_pm(m["final_val_accuracy"]),
                format_pm(m["final_gap"]), f"{m['verdict']['gap_trend'] * 100:+.2f}", format_pm(m["best_val_accuracy"]),
                format_pm(m["test_accuracy"]), f"{m['verdict']['verdict']} ({m['verdict']['rule']})",
                ", ".join(m["seed_verdicts"].values())] for m in results["models"]])
    rec = results["recommended"]
    rep.paragraph(f"Recommended capacity: {rec['name']} — the smallest model whose mean best-checkpoint validation "
                  f"accuracy ({rec['score'] * 100:.2f}%) is within {rec['tolerance'] * 100:.2f} points "
                  f"({rec['rule']}) of the best, {rec['best_name']} ({rec['best_score'] * 100:.2f}%).")
    rep.figure("learning_curves.png", _learning_curves(results["models"], f"Learning curves on {results['dataset']} "
                                                                            "(mean ± std over seeds)"),
               "learning curves per model")
    rep.figure("validation_curve.png", _validation_curve(results), "validation curve against capacity")
    rep.heading("Regularisation of the over-capacity models")
    rep.paragraph("Arms: none = the unregularised run at its last epoch; early_stopping = the same run stopped "
                  "after `patience` epochs without a new best validation accuracy, keeping its best epoch; each "
                  "remedy = a new run with that change, at its last epoch. Same seeds, so differences are paired.")
    for i, reg in enumerate(results["regularisation"]):
        rep.heading(f"{reg['model']} (sweep verdict: {reg['sweep_verdict']})", level=3)
        rep.table(["arm", "epoch (per seed)", "train acc (%)", "val acc (%)", "gap (points)", "test acc (%)",
                   "gap - none", "test - none", "verdict"],
                  [[label, ", ".join(str(p["epoch"]) for p in arm["points"]), format_pm(arm["train_accuracy"]),
                    format_pm(arm["val_accuracy"]), format_pm(arm["gap"]), format_pm(arm["test_accuracy"]),
                    format_interval(arm["minus_none"]["gap"]), format_interval(arm["minus_none"]["test_accuracy"]),
                    f"{arm['verdict']['verdict']} ({arm['verdict']['rule']})"] for label, arm in reg["arms"].items()])
        rep.figure(f"regularisation_{i + 1}.png", _regularisation_figure(reg), f"regularisation of {reg['model']}")
    cv = results["cross_validation"]
    if cv is not None:
        rep.heading(f"{cv['k']}-fold cross-validation on {cv['dataset']}")
        rep.paragraph(f"{', '.join(m['name'] for m in cv['models'])}; {cfg['cv']['epochs']} epochs, seeds "
                      f"{cv['seeds']}; stratified folds of the {cv['num_train']} training images. Score: the "
                      f"held-out fold's accuracy after the last epoch (seed mean per fold), mean ± std over folds.")
        rep.table(["model", "CV accuracy (%)", "standard error (points)", "fold scores (%)", "verdict"],
                  [[m["name"], format_pm(m["cv_accuracy"]), f"{m['standard_error'] * 100:.2f}",
                    ", ".join(f"{s * 100:.1f}" for s in m["fold_scores"]),
                    f"{m['verdict']['verdict']} ({m['verdict']['rule']})"] for m in cv["models"]])
        r = cv["recommended"]
        rep.paragraph(f"Recommended capacity on {cv['dataset']}: {r['name']} ({r['score'] * 100:.2f}%), tolerance "
                      f"{r['tolerance'] * 100:.2f} points ({r['rule']}).")
        models = cv["models"]
        params = [m["params"] for m in models]
        rep.figure("cross_validation.png", {"size": [7, 4.2], "panels": [{
            "type": "lines", "xscale": "log", "xlabel": "parameters", "ylabel": "accuracy (%)",
            "title": f"{cv['k']}-fold cross-validation on {cv['dataset']}",
            "series": [{"label": "held-out fold accuracy (mean ± std over folds)", "x": params,
                        "y": [m["cv_accuracy"]["mean"] * 100 for m in models],
                        "err": [m["cv_accuracy"]["std"] * 100 for m in models], "color": "#333"},
                       {"label": "fold scores", "x": [m["params"] for m in models for _ in m["fold_scores"]],
                        "y": [s * 100 for m in models for s in m["fold_scores"]], "style": "o", "color": "#999",
                        "markersize": 3},
                       {"label": "train accuracy (last epoch)", "x": params,
                        "y": [m["curves"]["train_acc"][-1] * 100 for m in models], "style": "s-", "color": "#888"}],
            "vlines": [{"x": r["params"], "color": "#54a24b", "alpha": 0.5, "width": 3, "style": "-",
                        "label": f"recommended: {r['name']}"}]}]}, "cross-validated accuracy against capacity")
        rep.figure("cv_learning_curves.png", _learning_curves(
            models, f"Learning curves on {cv['dataset']} (held-out fold as validation; mean over folds and seeds)"),
            "learning curves of the cross-validation sweep")
    rep.reproduce(results, reused_where=" from the run store")
    return rep


FIT = STUDIES.register("fit")(Study(
    name="fit", config=FitStudyConfig, defaults=DEFAULTS, presets=PRESETS, plan=plan, analyse=analyse,
    claims=claims, report=report, check=check_models, description=__doc__.splitlines()[0]))
