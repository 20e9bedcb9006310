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
5. claims with rules fixed in advance -> results.json, plots, report.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from tqdm.auto import tqdm

from ..config import Component, DataConfig, RunConfig, Section, parse_config
from ..errors import ConfigError, KdlabError
from .base import STUDIES
from .common import StageConfig, finish_study, open_study, stage_run_config
from ..analysis.stats import mean_std, paired_difference
from ..report.format import format_interval, format_pm
from ..store import RunStore
from ..validate import check_components

log = logging.getLogger("kdlab")

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


class FitStudyConfig(Section):
    # run store shared between studies (content-addressed); default: <out>/runs
    store: str | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    sweep: CapacitySweep
    regularise: RegulariseConfig = Field(default_factory=RegulariseConfig)
    verdict: VerdictConfig = Field(default_factory=VerdictConfig)
    cv: CrossValidation
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    # tolerance of the capacity recommendation in accuracy units; null = one standard error of the best model
    recommend_tolerance: float | None = Field(None, ge=0)


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


@STUDIES.register("fit")
def run_fit(config: str | Path | None = None, out: str | Path = "runs/fit", preset: str | None = None,
            overrides: list[str] | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Run the fit study; write results.json, plots, report.md and report.html into ``out``."""
    cfg, out, store, started = open_study(FitStudyConfig, DEFAULTS, PRESETS, config, preset, overrides, out)
    inprocess = {"trained": 0, "reused": 0}

    models = [_capacity_model(cfg.sweep, c) for c in cfg.sweep.capacities]
    cv_models = [_capacity_model(cfg.cv, c) for c in cfg.cv.capacities] if cfg.cv.enabled else []
    sweep_cfgs = [[stage_run_config(cfg.sweep, cfg.data, seed, model=m, keep_epochs=[]) for seed in cfg.seeds]
                  for m in models]
    data, cv_data = _validate(cfg, models, cv_models, sweep_cfgs)

    bar = tqdm(total=len(models) * len(cfg.seeds), desc="fit study: sweep", unit="run", disable=progress is False)
    sweep_runs = []  # [model][seed] -> summary (+ curves)
    for m, row in zip(models, sweep_cfgs):
        runs = []
        for run_cfg in row:
            summary = store.run(run_cfg, progress=progress)
            runs.append({**summary, "curves": read_curves(summary["run_dir"])})
            bar.update()
        sweep_runs.append(runs)
        log.info("sweep %s: %s params, best val %.4f", _label(m), f"{runs[0]['params']:,}",
                 mean_std([r["best_val_accuracy"] for r in runs])["mean"])
    bar.close()

    thresholds = cfg.verdict.model_dump()
    sweep = _sweep_entries(cfg, models, sweep_runs, thresholds)
    reference = sweep[0]["verdict"]["reference_train_acc"]
    regularised = _pick_regularised(cfg, sweep)
    regularisation = [_regularise(cfg, store, models[i], sweep_runs[i], sweep[i], data, thresholds, reference,
                                  progress) for i in regularised]
    recommended = _recommend(cfg, sweep, key="best_val_accuracy")
    cross_validation = _cross_validate(cfg, cv_models, cv_data, store.root / "inprocess", thresholds, inprocess,
                                       progress) if cv_models else None

    students = [_student_record(m, r) for m, runs in zip(models, sweep_runs) for r in runs]
    for reg in regularisation:
        students += reg.pop("_students")
    results = {
        "study": "fit",
        "dataset": cfg.data.name,
        "config": cfg.model_dump(mode="json"),
        "students": students,
        "models": sweep,
        "reference_train_acc": reference,
        "recommended": recommended,
        "regularisation": regularisation,
        "cross_validation": cross_validation,
    }
    results["claims"] = _claims(cfg, results)
    from ..report.fit import write_fit_report

    return finish_study(results, out, started, store.trained + inprocess["trained"], store.reused + inprocess["reused"],
                        write_fit_report, _print_summary)


# ------------------------------------------------------------------------------------------------ configs


def _capacity_model(stage: CapacitySweep, capacity: dict[str, Any]) -> Component:
    return Component(**{**stage.model.as_dict(), **capacity})


def _label(model: Component) -> str:
    opts = ",".join(f"{k}={v}" for k, v in model.options.items())
    return f"{model.name}({opts})"


def _validate(cfg: FitStudyConfig, models: list[Component], cv_models: list[Component],
              sweep_cfgs: list[list[RunConfig]]):
    """Check every run that can be known in advance before anything trains; return the sweep's data splits (for
    evaluating arms) and the cross-validation data (None without cross-validation)."""
    from ..data import load_dataset

    for m in models:  # the remedies apply to whichever models turn out over-capacity: check them on all
        for remedy in cfg.regularise.remedies:
            _remedy_config(cfg, m, remedy, cfg.seeds[0])
    for run_cfg in [*(c for row in sweep_cfgs for c in row),
                    *(_cv_run_config(cfg.cv, m, s) for m in cv_models for s in cfg.cv.seeds)]:
        check_components(run_cfg)
    # option values (a dropout of 2, a width of 0) are checked by the model factories: build each model once
    data = _load_eval_data(cfg)
    for m in models:
        _check_model("sweep.capacities", m, data)
        for remedy in cfg.regularise.remedies:
            _check_model(f"regularise.remedies '{remedy.label}'", Component(**{**m.as_dict(), **remedy.model}), data)
    cv_data = None
    if cv_models:
        d = cfg.cv.data
        cv_data = load_dataset(d.name, data_dir=d.data_dir, val_size=d.val_size, seed=d.seed,
                               train_subset=cfg.cv.train_subset, **d.options)
        for m in cv_models:
            _check_model("cv.capacities", m, cv_data)
    return data, cv_data


def _remedy_config(cfg: FitStudyConfig, model: Component, remedy: Remedy, seed: int) -> RunConfig:
    """The sweep run of ``model`` with the remedy's model and optimiser overrides; errors name the remedy."""
    base = stage_run_config(cfg.sweep, cfg.data, seed, model=model, keep_epochs=[])
    raw = base.to_dict()
    raw["model"] = {**raw["model"], **remedy.model}
    raw["optim"] = {**raw["optim"], **remedy.optim}
    try:
        run_cfg = parse_config(raw)
        check_components(run_cfg)
    except ConfigError as exc:
        raise ConfigError(f"regularise.remedies '{remedy.label}': {exc}") from None
    return run_cfg


def _check_model(key: str, model: Component, data) -> None:
    """Build ``model`` for ``data`` (weights are thrown away) so that a bad option value fails before training."""
    from ..models import create_model

    try:
        create_model(model.name, data.num_classes, data.in_shape, **model.options)
    except (ConfigError, ValueError, TypeError) as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _cv_run_config(cv: CrossValidation, model: Component, seed: int) -> RunConfig:
    """What one cross-validation run trains with (its data split is the fold, given separately)."""
    return stage_run_config(cv, cv.data, seed, model=model, keep_epochs=[])


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


def _sweep_entries(cfg: FitStudyConfig, models: list[Component], runs: list[list[dict[str, Any]]],
                   thresholds: dict[str, Any]) -> list[dict[str, Any]]:
    """Per model: seed-mean curves, the verdict on them, per-seed verdicts, and summary statistics over seeds."""
    from ..analysis import fit_verdict, sweep_verdicts

    means = [mean_curves([r["curves"] for r in model_runs]) for model_runs in runs]
    verdicts = sweep_verdicts([_verdict_inputs(m) for m in means], **thresholds)
    reference = verdicts[0]["reference_train_acc"]
    entries = []
    for model, model_runs, curves, verdict in zip(models, runs, means, verdicts):
        seed_verdicts = [fit_verdict(**_verdict_inputs(r["curves"]), reference_train_acc=reference,
                                     **thresholds)["verdict"] for r in model_runs]
        entries.append({
            "name": _label(model),
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
    from ..analysis import recommend_capacity

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
    from ..data import load_dataset

    d = cfg.data
    return load_dataset(d.name, data_dir=d.data_dir, val_size=d.val_size, seed=d.seed,
                        train_subset=cfg.sweep.train_subset, **d.options)


def _evaluate_point(model, data, epoch: int, val_accuracy: float) -> dict[str, Any]:
    """The evaluated model of an arm: accuracy on the training subset and on test, both in eval mode.

    The loop's per-epoch train accuracy is a running average over the epoch in train mode (dropout active, weights
    still moving), which understates how well a dropout model fits its training data; the gap of an arm is therefore
    ``train accuracy in eval mode - validation accuracy`` of the model that arm returns.
    """
    from ..data import TensorLoader
    from ..models import load_model_weights
    from ..train import evaluate

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


def _regularise(cfg: FitStudyConfig, store: RunStore, model: Component, runs: list[dict[str, Any]],
                entry: dict[str, Any], data, thresholds: dict[str, Any], reference: float,
                progress: bool | None) -> dict[str, Any]:
    """The arms of one model: none (last epoch), early stopping (from the curves), and each remedy (last epoch)."""
    from ..distill.teacher import load_epoch_weights
    from ..models import load_model_weights

    patience = cfg.regularise.patience
    arms: dict[str, dict[str, Any]] = {}

    # none: the unregularised run as it ends (no early stopping, no best-checkpoint selection)
    points = []
    for run in runs:
        last = len(run["curves"]["val_acc"])
        point = _evaluate_point(Path(run["run_dir"]) / "checkpoints" / "last.safetensors", data, last,
                                run["curves"]["val_acc"][-1])
        points.append({**point, "run_dir": run["run_dir"]})
    arms[NONE_ARM] = {"points": points, "curves": entry["curves"], "hyperparams": {}}

    # early stopping with `patience`, computed from each seed's validation curve
    points = []
    for seed, run in zip(cfg.seeds, runs):
        stop = early_stopping_epoch(run["curves"]["val_acc"], patience)
        val = run["curves"]["val_acc"][stop["epoch"] - 1]
        if stop["epoch"] == run["best_epoch"]:
            # the loop's best checkpoint holds exactly that epoch's weights
            point = _evaluate_point(Path(run["run_dir"]) / "checkpoints" / "best.safetensors", data, stop["epoch"], val)
            source, run_dir = "best checkpoint", run["run_dir"]
        else:
            # a later epoch beat it: replay the same run keeping that epoch (the loop is deterministic on CPU)
            replay_cfg = stage_run_config(cfg.sweep, cfg.data, seed, model=model, keep_epochs=[stop["epoch"]])
            replay = store.run(replay_cfg, progress=progress)
            if read_curves(replay["run_dir"])["val_acc"] != run["curves"]["val_acc"]:
                raise KdlabError(f"the replay {replay['run_dir']} of {run['run_dir']} did not reproduce its "
                                 f"validation curve (training is not deterministic here); set train.deterministic "
                                 f"in the sweep, or delete the replay to try again")
            net = load_model_weights(Path(replay["run_dir"]) / "checkpoints" / "last.safetensors")
            load_epoch_weights(replay["run_dir"], stop["epoch"], net)
            point = _evaluate_point(net, data, stop["epoch"], val)
            source, run_dir = f"replay keeping epoch {stop['epoch']}", replay["run_dir"]
        points.append({**point, "stopped_at": stop["stopped_at"], "weights_from": source, "run_dir": run_dir})
    arms[EARLY_STOPPING_ARM] = {"points": points, "curves": entry["curves"], "hyperparams": {"patience": patience}}

    # each remedy: a new run per seed, evaluated at its last epoch like `none`
    for remedy in cfg.regularise.remedies:
        points, curves = [], []
        for seed in cfg.seeds:
            summary = store.run(_remedy_config(cfg, model, remedy, seed), progress=progress)
            run_curves = read_curves(summary["run_dir"])
            point = _evaluate_point(Path(summary["run_dir"]) / "checkpoints" / "last.safetensors", data,
                                    len(run_curves["val_acc"]), run_curves["val_acc"][-1])
            points.append({**point, "best_checkpoint_test_accuracy": summary["test_accuracy"],
                           "run_dir": summary["run_dir"]})
            curves.append(run_curves)
        arms[remedy.label] = {"points": points, "curves": mean_curves(curves),
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
                             "test_accuracy": p["test_accuracy"], "epoch": p["epoch"], "run_dir": p["run_dir"]})
    return {"model": entry["name"], "params": entry["params"], "sweep_verdict": entry["verdict"]["verdict"],
            "patience": patience, "arms": arms, "_students": students}


# ------------------------------------------------------------------------------------------------ cross-validation


def _cross_validate(cfg: FitStudyConfig, models: list[Component], data, root: Path, thresholds: dict[str, Any],
                    counter: dict[str, int], progress: bool | None) -> dict[str, Any]:
    """k-fold CV of the ``cv`` sweep: every model x fold x seed trained on k-1 folds, scored on the held-out fold.

    Score of a run: the held-out fold's accuracy after the last epoch (the fold chooses nothing, so the score is
    unbiased). Per model: the seed-mean score of each fold, then mean ± std over the k folds and the standard error
    std / sqrt(k). Verdict: the rules on the fold-and-seed-mean curves (held-out fold as validation).
    """
    import torch

    from ..analysis import kfold_indices, sweep_verdicts
    from ..compress.finetune import finetune
    from ..models import count_params, create_model

    cv = cfg.cv
    d = cv.data
    folds = kfold_indices(data.train.y, cv.k, seed=cv.fold_seed)
    bar = tqdm(total=len(models) * cv.k * len(cv.seeds), desc="fit study: k-fold", unit="run",
               disable=progress is False)
    entries, curves_per_model = [], []
    for model in models:
        fold_scores, curves, params = [], [], 0
        for f, (train_idx, val_idx) in enumerate(folds):
            seed_scores = []
            for seed in cv.seeds:
                torch.manual_seed(seed)
                net = create_model(model.name, data.num_classes, data.in_shape, **model.options)
                params = count_params(net)
                run_cfg = _cv_run_config(cv, model, seed)
                payload = {"kind": "kfold", "k": cv.k, "fold": f, "fold_seed": cv.fold_seed,
                           "data": data.train.fingerprint()}
                summary = finetune(net, data.train.subset(train_idx), data.train.subset(val_idx), run_cfg, root,
                                   payload, progress=progress)
                counter["reused" if summary["reused"] else "trained"] += 1
                seed_scores.append(summary["final"]["val_accuracy"])
                curves.append(read_curves(summary["run_dir"]))
                bar.update()
            fold_scores.append(sum(seed_scores) / len(seed_scores))
        stats = mean_std(fold_scores)
        curves_per_model.append(mean_curves(curves))
        entries.append({"name": _label(model), "model": model.as_dict(), "params": params,
                        "fold_scores": fold_scores, "cv_accuracy": stats,
                        "standard_error": stats["std"] / math.sqrt(cv.k)})
    bar.close()
    verdicts = sweep_verdicts([_verdict_inputs(c) for c in curves_per_model], **thresholds)
    for entry, verdict, curves in zip(entries, verdicts, curves_per_model):
        entry["verdict"] = verdict
        entry["curves"] = curves
    from ..analysis import recommend_capacity

    best = max(range(len(entries)), key=lambda i: entries[i]["cv_accuracy"]["mean"])
    tolerance = cfg.recommend_tolerance if cfg.recommend_tolerance is not None else entries[best]["standard_error"]
    index = recommend_capacity([{"val_accuracy": e["cv_accuracy"]["mean"], "params": e["params"]} for e in entries],
                               tolerance)
    return {"dataset": d.name, "k": cv.k, "seeds": cv.seeds, "num_train": len(data.train), "models": entries,
            "recommended": {"index": index, "name": entries[index]["name"], "params": entries[index]["params"],
                            "score": entries[index]["cv_accuracy"]["mean"], "best_index": best,
                            "best_name": entries[best]["name"], "best_score": entries[best]["cv_accuracy"]["mean"],
                            "tolerance": tolerance,
                            "rule": "one standard error of the best model" if cfg.recommend_tolerance is None
                            else "fixed tolerance"}}


# ------------------------------------------------------------------------------------------------ claims


def _student_record(model: Component, summary: dict[str, Any]) -> dict[str, Any]:
    """A sweep run as a ``students`` entry (its best-validation checkpoint, as every kdlab run reports)."""
    return {"teacher": None, "method": "sweep", "model": _label(model),
            "hyperparams": {"loss": {"name": "ce"}}, "seed": summary["seed"],
            "test_accuracy": summary["test_accuracy"], "params": summary["params"], "run_dir": summary["run_dir"]}


def _claims(cfg: FitStudyConfig, results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each claim with a verdict by a rule fixed in advance (docs/studies/fit.md)."""
    models = results["models"]
    claims = []
    smallest = min(models, key=lambda m: m["params"])
    largest = max(models, key=lambda m: m["params"])
    for entry, wanted, text in ((smallest, "under-capacity", "the smallest model underfits (under-capacity: high "
                                                             "bias)"),
                                (largest, "over-capacity", "the largest model overfits (over-capacity: high "
                                                           "variance)")):
        v = entry["verdict"]
        counts = _counts(entry["seed_verdicts"].values())
        claims.append({
            "claim": text,
            "holds": v["verdict"] == wanted,
            "evidence": f"{entry['name']} ({entry['params']:,} params), seed-mean curves: final train accuracy "
                        f"{v['final_train_acc'] * 100:.2f}% (reference {v['reference_train_acc'] * 100:.2f}%), "
                        f"train-val gap {v['final_gap'] * 100:.2f} points (trend {v['gap_trend'] * 100:+.2f}/epoch) "
                        f"-> {v['verdict']} by rule '{v['rule']}'; per seed: {counts} (rule: holds if the verdict "
                        f"on the seed-mean curves is {wanted})",
        })

    reg = results["regularisation"][0] if results["regularisation"] else None
    overfit = reg is not None and reg["sweep_verdict"] == "over-capacity"
    arm_labels = [EARLY_STOPPING_ARM, *(r.label for r in cfg.regularise.remedies)]
    for label in arm_labels:
        text = f"{label.replace('_', ' ')} narrows the train-validation gap of the over-capacity model"
        if not overfit:
            claims.append({"claim": text, "holds": None, "evidence": _no_overfit(results, reg)})
            continue
        arm = reg["arms"][label]
        diff = arm["minus_none"]["gap"]
        claims.append({
            "claim": text,
            "holds": _interval_rule(diff, negative=True),
            "evidence": f"{reg['model']}: gap {format_pm(arm['gap'])} with {label} vs "
                        f"{format_pm(reg['arms'][NONE_ARM]['gap'])} without; paired difference "
                        f"{format_interval(diff)} points (rule: holds if the 95% interval is below 0, does not hold "
                        f"if the mean difference >= 0)",
        })
    text = "regularisation improves the test accuracy of the over-capacity model"
    if not overfit:
        claims.append({"claim": text, "holds": None, "evidence": _no_overfit(results, reg)})
    else:
        # the arm a practitioner would pick: best mean validation accuracy (never the test set)
        pick = max(arm_labels, key=lambda a: reg["arms"][a]["val_accuracy"]["mean"])
        diff = reg["arms"][pick]["minus_none"]["test_accuracy"]
        claims.append({
            "claim": text,
            "holds": _interval_rule(diff, negative=False),
            "evidence": f"{reg['model']}: the arm with the best validation accuracy is {pick} "
                        f"({format_pm(reg['arms'][pick]['val_accuracy'])}% val); test accuracy "
                        f"{format_pm(reg['arms'][pick]['test_accuracy'])} vs "
                        f"{format_pm(reg['arms'][NONE_ARM]['test_accuracy'])} without; paired difference "
                        f"{format_interval(diff)} points (rule: holds if the 95% interval is above 0, does not hold "
                        f"if the mean difference <= 0)",
        })
    text = "regularisation closes the gap of the over-capacity model (a remedy turns its verdict into good fit)"
    if not overfit:
        claims.append({"claim": text, "holds": None, "evidence": _no_overfit(results, reg)})
    else:
        verdicts = {a: reg["arms"][a]["verdict"] for a in arm_labels}
        claims.append({
            "claim": text,
            "holds": any(v["verdict"] == "good fit" for v in verdicts.values()),
            "evidence": f"{reg['model']}: " + "; ".join(
                f"{a}: {v['verdict']} (train {v['train_accuracy'] * 100:.2f}% in eval mode, gap {v['gap'] * 100:.2f} "
                f"points)" for a, v in verdicts.items())
            + f" (rule: holds if the evaluated model of some arm is a good fit: train accuracy >= "
              f"{next(iter(verdicts.values()))['floor'] * 100:.2f}% and gap <= "
              f"{next(iter(verdicts.values()))['overfit_gap'] * 100:.0f} points)",
        })
    rec = results["recommended"]
    claims.append({
        "claim": "a model smaller than the largest is as good as the best (recommended capacity < largest)",
        "holds": rec["index"] != max(range(len(models)), key=lambda i: models[i]["params"]),
        "evidence": f"best mean best-checkpoint validation accuracy {rec['best_score'] * 100:.2f}% "
                    f"({rec['best_name']}); recommended {rec['name']} ({rec['params']:,} params, "
                    f"{rec['score'] * 100:.2f}%) with tolerance {rec['tolerance'] * 100:.2f} points ({rec['rule']})",
    })
    cvr = results["cross_validation"]
    if cvr is not None:
        rec = cvr["recommended"]
        cv_models = cvr["models"]
        claims.append({
            "claim": f"{cvr['k']}-fold cross-validation on {cvr['dataset']}: a model smaller than the largest is "
                     f"as good as the best",
            "holds": rec["index"] != max(range(len(cv_models)), key=lambda i: cv_models[i]["params"]),
            "evidence": f"best cross-validated accuracy {rec['best_score'] * 100:.2f}% ({rec['best_name']}); "
                        f"recommended {rec['name']} ({rec['params']:,} params, {rec['score'] * 100:.2f}%) with "
                        f"tolerance {rec['tolerance'] * 100:.2f} points ({rec['rule']})",
        })
    return claims


def _interval_rule(diff: dict[str, Any], negative: bool) -> bool | None:
    """True when the 95% interval lies on the claimed side of 0, False when the mean is not, else undecided."""
    mean, low, high = diff["mean"], diff["low"], diff["high"]
    if negative:
        if mean >= 0:
            return False
        return True if diff["n"] > 1 and high < 0 else None
    if mean <= 0:
        return False
    return True if diff["n"] > 1 and low > 0 else None


def _counts(verdicts) -> str:
    out: dict[str, int] = {}
    for v in verdicts:
        out[v] = out.get(v, 0) + 1
    return ", ".join(f"{n} {v}" for v, n in out.items())


def _no_overfit(results: dict[str, Any], reg: dict[str, Any] | None) -> str:
    largest = max(results["models"], key=lambda m: m["params"])
    return (f"no model of the sweep is over-capacity (largest: {largest['name']}, verdict "
            f"{largest['verdict']['verdict']}); the remedies were measured on it but the claim is undecided")


def _print_summary(results: dict[str, Any], out: Path) -> None:
    print(f"\ncapacity sweep ({results['dataset']}):")
    for m in results["models"]:
        print(f"  {m['name']:<28} {m['params']:>10,} params  final train {format_pm(m['final_train_accuracy'])}  "
              f"val {format_pm(m['final_val_accuracy'])}  -> {m['verdict']['verdict']} ({m['verdict']['rule']})")
    print(f"recommended: {results['recommended']['name']}")
    for reg in results["regularisation"]:
        print(f"regularisation of {reg['model']}:")
        for label, arm in reg["arms"].items():
            print(f"  {label:<16} test {format_pm(arm['test_accuracy'])}  gap {format_pm(arm['gap'])}  "
                  f"-> {arm['verdict']['verdict']}")
    if results["cross_validation"]:
        cvr = results["cross_validation"]
        print(f"{cvr['k']}-fold CV on {cvr['dataset']}:")
        for m in cvr["models"]:
            print(f"  {m['name']:<28} {m['params']:>8,} params  {format_pm(m['cv_accuracy'])}  -> "
                  f"{m['verdict']['verdict']}")
    for claim in results["claims"]:
        print(f"claim [{ {True: 'holds', False: 'does not hold', None: 'undecided'}[claim['holds']] }] "
              f"{claim['claim']}: {claim['evidence']}")
    print(f"\nresults: {out / 'results.json'}   report: {out / 'report.html'}")
