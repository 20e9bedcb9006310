"""Theory study: why distillation works, measured on a Gaussian mixture whose Bayes posterior is exact.

Three explanations from the survey's sections 6-8, each as a measurement with a claim decided by a rule fixed in
advance (docs/studies/theory.md):

1. Risk variance (Menon, Rawat, Reddi, Kim, Kumar, "A Statistical Perspective on Distillation", ICML 2021): for a fixed
   predictor f, the Bayes-distilled empirical risk varies less over resampled datasets than the one-hot empirical
   risk, V[R*_hat(f)] <= V[R_hat(f)]; measured also for a trained teacher's distilled risk.
2. The distillation bound (Hsu, Ji, Telgarsky, Wang, "Generalization Bounds via Distillation", ICLR 2021; the survey's
   Lemma): a teacher f distilled into students g of several sizes; test error of f against training surrogate +
   distillation error + complexity of each student's class, term by term; is the teacher's bound tighter through a
   student than through itself?
3. The neural tangent kernel (Jacot, Gabriel, Hongler, NeurIPS 2018): how far the empirical NTK moves during
   full-batch gradient descent as the width grows, and how well kernel regression with the initial NTK predicts the
   trained network.

Recipe: sample the mixture -> train the teacher (CE) and distil each student size per seed (KD, cached teacher
logits, ``kdlab.train.fit``; runs are reused from ``<out>/runs``) -> bound terms -> risk variance of a fixed student
-> NTK widths x seeds (own full-batch loop: the NTK theory's setting) -> claims -> results.json, plots, report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, field_validator
from torch import nn

from ..config import Component, OptimConfig, RunConfig, ScheduleConfig, Section, TrainConfig
from ..errors import ConfigError
from .base import STUDIES
from .common import finish_study, load_study_config
from ..analysis.stats import mean_std

log = logging.getLogger("kdlab")


class MixtureConfig(Section):
    """The Gaussian mixture every part of the study samples from (kdlab.data.GaussianMixture)."""

    num_classes: int = Field(4, ge=2)
    dim: int = Field(16, ge=1)
    separation: float = Field(3.0, ge=0)
    sigma: float = Field(1.0, gt=0)
    seed: int = 0


class TrainStage(Section):
    """How one group of models is trained in memory through ``kdlab.train.fit``."""

    model: Component
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=1)
    optim: OptimConfig = Field(default_factory=lambda: OptimConfig(name="sgd", lr=0.05))
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    # resumable checkpoint every k epochs and after the last (these runs take seconds; per-epoch writes dominated)
    checkpoint_every: int = Field(10, ge=1)


class BoundConfig(Section):
    """Teacher f, students g of several sizes distilled from it, and the Lemma's constants."""

    n_train: int = Field(5000, ge=2)
    n_test: int = Field(20000, ge=1)
    teacher: TrainStage
    student: TrainStage
    # each entry's keys override the student model's options; the list is the family of architectures A
    capacities: list[dict[str, Any]] = Field(min_length=1)
    loss: Component = Field(default_factory=lambda: Component(name="kd", temperature=2.0, alpha=0.9))
    gamma: float = Field(2.0, gt=0)
    delta: float = Field(0.05, gt=0, lt=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    teacher_seed: int = 0

    @field_validator("teacher", "student")
    @classmethod
    def _mlp_only(cls, stage: TrainStage) -> TrainStage:
        if stage.model.name != "mlp" or stage.model.options.get("activation", "relu") != "relu":
            raise ValueError(f"model {stage.model.as_dict()} is not allowed: the norm-based Rademacher bound is "
                             "implemented for ReLU 'mlp' models only")
        return stage


class VarianceConfig(Section):
    sizes: list[int] = Field(default_factory=lambda: [25, 50, 100, 200, 400], min_length=1)
    replicates: int = Field(1000, ge=10)
    num_bootstrap: int = Field(2000, ge=100)
    confidence: float = Field(0.95, gt=0, lt=1)
    seed: int = 0

    @field_validator("sizes")
    @classmethod
    def _positive(cls, sizes: list[int]) -> list[int]:
        if any(s < 1 for s in sizes):
            raise ValueError(f"every dataset size must be >= 1, got {sizes}")
        return sizes


class NTKConfig(Section):
    widths: list[int] = Field(default_factory=lambda: [32, 128, 512, 2048], min_length=2)
    depth: int = Field(1, ge=1)
    n_train: int = Field(64, ge=2)
    n_test: int = Field(128, ge=1)
    lr: float = Field(1.0, gt=0)
    steps: int = Field(300, ge=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)

    @field_validator("widths")
    @classmethod
    def _increasing(cls, widths: list[int]) -> list[int]:
        if any(w < 1 for w in widths) or sorted(set(widths)) != widths:
            raise ValueError(f"widths must be distinct positive ints in increasing order, got {widths}")
        return widths


class TheoryStudyConfig(Section):
    mixture: MixtureConfig = Field(default_factory=MixtureConfig)
    bound: BoundConfig
    variance: VarianceConfig = Field(default_factory=VarianceConfig)
    ntk: NTKConfig = Field(default_factory=NTKConfig)
    # torch intra-op threads (None: leave as is); the models are small, so one thread avoids contention
    num_threads: int | None = Field(1, ge=1)


DEFAULTS: dict[str, Any] = {
    "mixture": {"num_classes": 4, "dim": 16, "separation": 3.0, "sigma": 1.0, "seed": 0},
    "bound": {
        "n_train": 5000, "n_test": 20000,
        "teacher": {"model": {"name": "mlp", "width": 256, "depth": 2}, "epochs": 20, "batch_size": 128,
                    "optim": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "cosine"}},
        "student": {"model": {"name": "mlp", "width": 16, "depth": 1}, "epochs": 20, "batch_size": 128,
                    "optim": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "cosine"}},
        # a linear student, then 1-hidden-layer students of growing width
        "capacities": [{"depth": 0}, {"width": 4}, {"width": 16}, {"width": 64}],
        "loss": {"name": "kd", "temperature": 2.0, "alpha": 0.9},
        "gamma": 2.0, "delta": 0.05, "seeds": [0, 1, 2],
    },
    "variance": {"sizes": [25, 50, 100, 200, 400], "replicates": 1000},
    "ntk": {"widths": [32, 128, 512, 2048], "n_train": 64, "n_test": 128, "lr": 1.0, "steps": 300,
            "seeds": [0, 1, 2]},
}

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "bound": {"n_train": 1000, "n_test": 4000, "teacher": {"epochs": 4, "model": {"width": 64}},
                  "student": {"epochs": 4}, "capacities": [{"depth": 0}, {"width": 8}, {"width": 32}],
                  "seeds": [0, 1]},
        "variance": {"sizes": [25, 100], "replicates": 200, "num_bootstrap": 500},
        "ntk": {"widths": [16, 128, 512], "n_train": 24, "n_test": 32, "steps": 60, "seeds": [0, 1]},
    },
}


@STUDIES.register("theory")
def run_theory(config: str | Path | None = None, out: str | Path = "runs/theory", preset: str | None = None,
               overrides: list[str] | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Run the theory study; write results.json, plots, report.md and report.html into ``out``."""
    from ..data import GaussianMixture
    from ..data.seeding import generator_for

    cfg: TheoryStudyConfig = load_study_config(TheoryStudyConfig, DEFAULTS, PRESETS, config, preset,
                                               list(overrides or []))
    _check_models(cfg)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out = Path(out)
    started = time.perf_counter()
    m = cfg.mixture
    mixture = GaussianMixture(m.num_classes, m.dim, m.separation, m.sigma, m.seed)
    counter = {"trained": 0, "reused": 0}

    x_tr, y_tr = mixture.sample(cfg.bound.n_train, generator_for(m.seed, "theory-train"))
    x_te, y_te = mixture.sample(cfg.bound.n_test, generator_for(m.seed, "theory-test"))
    bound = _bound_part(cfg, x_tr, y_tr, x_te, y_te, out / "runs", counter, progress)
    log.info("bound part done (%.0fs)", time.perf_counter() - started)
    variance = _variance_part(cfg, mixture, bound)
    log.info("variance part done (%.0fs)", time.perf_counter() - started)
    ntk = _ntk_part(cfg, mixture)
    log.info("ntk part done (%.0fs)", time.perf_counter() - started)

    results: dict[str, Any] = {
        "study": "theory",
        "dataset": "gaussian_mixture",
        "config": cfg.model_dump(mode="json"),
        "mixture": {**mixture.spec(), "bayes_error": mixture.bayes_error_estimate(20_000)},
        "students": bound.pop("student_records"),
        "bound": bound,
        "risk_variance": variance,
        "ntk": ntk,
    }
    results["claims"] = _claims(results)
    from ..report.theory import write_theory_report

    return finish_study(results, out, started, counter["trained"], counter["reused"],
                        write_theory_report, _print_summary)


def _check_models(cfg: TheoryStudyConfig) -> None:
    """Build every model once on a dummy shape so bad options fail before anything trains."""
    from ..models import create_model

    k, d = cfg.mixture.num_classes, cfg.mixture.dim
    create_model(cfg.bound.teacher.model.name, k, [d], **cfg.bound.teacher.model.options)
    for i, capacity in enumerate(cfg.bound.capacities):
        opts = {**cfg.bound.student.model.options, **capacity}
        try:
            create_model(cfg.bound.student.model.name, k, [d], **opts)
        except ConfigError as exc:
            raise ConfigError(f"bound.capacities[{i}]={capacity!r}: {exc}") from None
    from ..losses import build as build_loss

    try:
        build_loss(cfg.bound.loss.name, **cfg.bound.loss.options)
    except ConfigError as exc:
        raise ConfigError(f"bound.loss: {exc}") from None


# ------------------------------------------------------------------------------------------ training in memory


def fit_in_memory(model: nn.Module, x: torch.Tensor, y: torch.Tensor, stage: TrainStage, seed: int,
                  runs_dir: Path, name: str, counter: dict[str, int], loss: Component | None = None,
                  teacher_logits: torch.Tensor | None = None, progress: bool | None = None) -> Path:
    """Train ``model`` in place on (x, y) with ``kdlab.train.fit`` through a Distiller; return its run directory.

    The run directory is ``runs_dir/<name>-<digest>``, the digest covering the stage, the seed, the loss, the
    model spec, the data's fingerprint and the teacher logits' bytes, so a finished directory holds exactly this
    run and ``fit`` resumes it (no epoch left: the weights are loaded and nothing trains). No validation split: the
    last epoch's weights are kept.
    """
    from ..data import ArrayDataset, TensorLoader
    from ..distill import Distiller
    from ..losses import build as build_loss
    from ..train import fit

    loss = loss or Component(name="ce")
    data = ArrayDataset(x, y)
    digest = hashlib.sha256()
    digest.update(json.dumps({"stage": stage.model_dump(mode="json"), "seed": seed, "loss": loss.as_dict(),
                              "spec": getattr(model, "spec", repr(model))}, sort_keys=True, default=str).encode())
    digest.update(data.fingerprint().encode())
    if teacher_logits is not None:
        digest.update(teacher_logits.detach().float().contiguous().numpy().tobytes())
    run_dir = runs_dir / f"{name}-{digest.hexdigest()[:16]}"
    run_cfg = RunConfig(model=stage.model, loss=loss, optim=stage.optim, schedule=stage.schedule,
                        train=TrainConfig(epochs=stage.epochs, batch_size=stage.batch_size, seed=seed,
                                          progress=False, checkpoint_every=stage.checkpoint_every))
    finished = (run_dir / "checkpoints" / f"epoch-{stage.epochs:04d}").is_dir()
    distiller = Distiller(model, build_loss(loss.name, **loss.options), teacher_logits=teacher_logits)
    loader = TensorLoader(data, stage.batch_size, shuffle=True, seed=seed)
    fit(distiller, loader, None, run_dir, train=run_cfg.train, optim=run_cfg.optim, schedule=run_cfg.schedule,
        progress=progress if progress is not None else False)
    counter["reused" if finished else "trained"] += 1
    model.eval()
    return run_dir


def _create(model_cfg: Component, num_classes: int, dim: int, seed: int, **overrides: Any) -> nn.Module:
    from ..models import create_model

    torch.manual_seed(seed)  # every student of a seed starts from weights that depend on the seed only
    return create_model(model_cfg.name, num_classes, [dim], **{**model_cfg.options, **overrides})


# ------------------------------------------------------------------------------------------ the bound


def _bound_part(cfg: TheoryStudyConfig, x_tr: torch.Tensor, y_tr: torch.Tensor, x_te: torch.Tensor,
                y_te: torch.Tensor, runs_dir: Path, counter: dict[str, int], progress: bool | None) -> dict[str, Any]:
    from ..analysis.theory import (augmented_layer_norms, generalization_bound, margin_rademacher_bound,
                                   mlp_linears, norm_grid_class)
    from ..models import count_params
    from ..models import predict_logits

    b, k, d = cfg.bound, cfg.mixture.num_classes, cfg.mixture.dim
    teacher = _create(b.teacher.model, k, d, b.teacher_seed)
    fit_in_memory(teacher, x_tr, y_tr, b.teacher, b.teacher_seed, runs_dir, "teacher", counter, progress=progress)
    t_train, t_test = predict_logits(teacher, x_tr), predict_logits(teacher, x_te)
    teacher_test_error = float((t_test.argmax(1) != y_te).float().mean())
    num_arch = len(b.capacities) + 1  # the students' architectures and the teacher's own

    def terms_for(model: nn.Module, logits: torch.Tensor, arch: int) -> dict[str, Any]:
        norms = augmented_layer_norms(mlp_linears(model))
        cls = norm_grid_class(norms, arch, num_arch)
        rad = margin_rademacher_bound(cls["levels"], x_tr, k)
        out = generalization_bound(t_train, logits, y_tr, gamma=b.gamma, delta=b.delta,
                                   prior_weight=cls["prior_weight"], rademacher=rad)
        return {**out, "layer_norms": norms, "norm_levels": cls["levels"]}

    teacher_own = terms_for(teacher, t_train, num_arch - 1)
    rows, records, models = [], [], {}
    for arch, capacity in enumerate(b.capacities):
        label = _label(b.student.model, capacity)
        for seed in b.seeds:
            student = _create(b.student.model, k, d, seed, **capacity)
            run_dir = fit_in_memory(student, x_tr, y_tr, b.student, seed, runs_dir, f"student{arch}", counter,
                                    loss=b.loss, teacher_logits=t_train, progress=progress)
            s_train, s_test = predict_logits(student, x_tr), predict_logits(student, x_te)
            row = {"student": label, "architecture": arch, "seed": seed, "params": count_params(student),
                   "student_test_error": float((s_test.argmax(1) != y_te).float().mean()),
                   "student_train_error": float((s_train.argmax(1) != y_tr).float().mean()),
                   **terms_for(student, s_train, arch)}
            rows.append(row)
            records.append({"teacher": _label(b.teacher.model, {}), "method": "kd", "hyperparams": b.loss.as_dict(),
                            "seed": seed, "student": label, "test_accuracy": 1 - row["student_test_error"],
                            "run_dir": str(run_dir)})
            models[(arch, seed)] = student
            log.info("student %s seed %d: test error %.4f, bound %.3f", label, seed, row["student_test_error"],
                     row["total"])
    summary = {}
    for arch, capacity in enumerate(b.capacities):
        mine = [r for r in rows if r["architecture"] == arch]
        summary[_label(b.student.model, capacity)] = {
            "params": mine[0]["params"],
            **{key: mean_std([r[key] for r in mine]) for key in
               ("total", "training", "distillation_error", "distillation_complexity", "complexity", "phi", "l1",
                "rademacher", "student_test_error", "train_surrogate_teacher")},
        }
    return {
        "teacher": {"name": _label(b.teacher.model, {}), "params": count_params(teacher),
                    "test_error": teacher_test_error,
                    "train_error": float((t_train.argmax(1) != y_tr).float().mean()), "own_bound": teacher_own},
        "rows": rows,
        "summary": summary,
        "student_records": records,
        "_fixed_predictor": models[(0, b.seeds[0])],
        "_teacher": teacher,
    }


def _label(model: Component, capacity: dict[str, Any]) -> str:
    opts = {**model.options, **capacity}
    if opts.get("depth") == 0:
        return f"{model.name}(linear)"
    return f"{model.name}(" + ",".join(f"{k}={v}" for k, v in opts.items()) + ")"


# ------------------------------------------------------------------------------------------ risk variance


def _variance_part(cfg: TheoryStudyConfig, mixture: Any, bound: dict[str, Any]) -> dict[str, Any]:
    from ..analysis.theory import risk_variance

    v = cfg.variance
    predictor = bound.pop("_fixed_predictor")
    teacher = bound.pop("_teacher")
    rows = risk_variance(predictor, mixture, v.sizes, v.replicates, teacher=teacher, seed=v.seed,
                         confidence=v.confidence, num_bootstrap=v.num_bootstrap)
    return {"predictor": f"{_label(cfg.bound.student.model, cfg.bound.capacities[0])} (seed {cfg.bound.seeds[0]})",
            "teacher": bound["teacher"]["name"], "rows": rows}


# ------------------------------------------------------------------------------------------ NTK


def _ntk_part(cfg: TheoryStudyConfig, mixture: Any) -> dict[str, Any]:
    from ..analysis.ntk import NTKParamMLP, empirical_ntk, linearized_predictions, ntk_drift
    from ..data.seeding import derive_seed, generator_for

    c, k = cfg.ntk, cfg.mixture.num_classes
    x_tr, y_tr = mixture.sample(c.n_train, generator_for(cfg.mixture.seed, "ntk-train"))
    x_te, y_te = mixture.sample(c.n_test, generator_for(cfg.mixture.seed, "ntk-test"))
    x_all = torch.cat([x_tr, x_te])
    n = c.n_train
    # squared loss on centred one-hot targets: the regression setting of the NTK theory
    target = torch.nn.functional.one_hot(y_tr, k).float() - 1.0 / k
    rows = []
    for width in c.widths:
        for seed in c.seeds:
            net = NTKParamMLP(cfg.mixture.dim, width, k, depth=c.depth, seed=derive_seed(seed, "ntk", width))
            with torch.no_grad():
                f0 = net(x_all)
            k0 = empirical_ntk(net, x_all, mode="full")
            loss_curve = _gradient_descent(net, x_tr, target, c.lr, c.steps)
            kt = empirical_ntk(net, x_tr, mode="full")
            with torch.no_grad():
                ft_te, ft_tr = net(x_te).double(), net(x_tr).double()
            lin = linearized_predictions(k0[:n, :n], k0[n:, :n], target, f0[:n], f0[n:], c.lr, c.steps)
            moved = float((ft_te - f0[n:].double()).norm())
            rows.append({
                "width": width, "seed": seed,
                "drift": ntk_drift(k0[:n, :n], kt),
                "linearization_error": float((ft_te - lin["test"]).norm()) / max(moved, 1e-12),
                "argmax_agreement": float((ft_te.argmax(1) == lin["test"].argmax(1)).float().mean()),
                "net_test_accuracy": float((ft_te.argmax(1) == y_te).float().mean()),
                "kernel_test_accuracy": float((lin["test"].argmax(1) == y_te).float().mean()),
                "net_train_loss": loss_curve[-1],
                "kernel_train_loss": float(0.5 * (lin["train"] - target.double()).pow(2).sum(1).mean()),
                "train_fit_gap": float((ft_tr - lin["train"]).norm() / max(float((ft_tr - target).norm()), 1e-12)),
            })
            log.info("ntk width %d seed %d: drift %.4f, linearisation error %.4f", width, seed, rows[-1]["drift"],
                     rows[-1]["linearization_error"])
    summary = {str(w): {key: mean_std([r[key] for r in rows if r["width"] == w])
                        for key in ("drift", "linearization_error", "argmax_agreement", "net_test_accuracy",
                                    "kernel_test_accuracy")} for w in c.widths}
    return {"rows": rows, "summary": summary, "kernel_mode": "full"}


def _gradient_descent(net: nn.Module, x: torch.Tensor, target: torch.Tensor, lr: float, steps: int) -> list[float]:
    """Full-batch gradient descent on L = (1/(2n)) sum_i ||f(x_i) - y_i||^2, the loss ``linearized_predictions``
    assumes. Not ``kdlab.train.fit``: the NTK theory is about plain full-batch GD (no momentum, no weight decay,
    no schedule), and fit would write a checkpoint after every one of the hundreds of steps."""
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.0, weight_decay=0.0)
    curve = []
    for _ in range(steps):
        loss = 0.5 * (net(x) - target).pow(2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        curve.append(float(loss.detach()))
    if not math.isfinite(curve[-1]):
        raise ConfigError(f"ntk.lr={lr} made full-batch gradient descent diverge (loss {curve[-1]}); lower ntk.lr")
    return curve


# ------------------------------------------------------------------------------------------ claims


def _claims(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each claim with a verdict by a rule fixed in advance (docs/studies/theory.md)."""
    from ..analysis import spearman_correlation

    claims = []
    rows = results["risk_variance"]["rows"]
    for key, claim in (("bayes", "the Bayes-distilled risk of a fixed predictor varies less over resampled datasets "
                                 "than its one-hot empirical risk, V[R*_hat(f)] <= V[R_hat(f)]"),
                       ("teacher", "a trained teacher's distilled risk also varies less than the one-hot empirical "
                                   "risk")):
        ratios = [r[f"{key}_over_onehot"] for r in rows]
        if all(q["high"] < 1 for q in ratios):
            holds: bool | None = True
        elif any(q["low"] >= 1 for q in ratios):
            holds = False
        else:
            holds = None
        claims.append({"claim": claim, "holds": holds, "evidence": (
            "variance ratio against the one-hot risk (95% paired bootstrap interval) at n = "
            + ", ".join(f"{r['n']}: {q['ratio']:.3f} [{q['low']:.3f}, {q['high']:.3f}]" for r, q in zip(rows, ratios))
            + f" over {rows[0]['replicates']} datasets per size (rule: holds if every interval is below 1, does not "
              "hold if any interval is at or above 1)")})

    bound = results["bound"]
    own = bound["teacher"]["own_bound"]["total"]
    seeds = sorted({r["seed"] for r in bound["rows"]})
    best_by_seed = {s: min(r["total"] for r in bound["rows"] if r["seed"] == s) for s in seeds}
    mean_best = sum(best_by_seed.values()) / len(best_by_seed)
    if all(v < own for v in best_by_seed.values()):
        holds = True
    elif mean_best >= own:
        holds = False
    else:
        holds = None
    claims.append({"claim": "distilling the teacher into a small student gives a tighter bound on the teacher's test "
                            "error than the teacher's own complexity (Hsu et al.)", "holds": holds, "evidence": (
        "smallest bound through a student per seed: " + ", ".join(f"seed {s}: {v:.3g}" for s, v in
                                                                    best_by_seed.items())
        + f"; the teacher's own bound (g = f, Phi = 0): {own:.3g} (rule: holds if every seed's smallest student bound "
          "is below the teacher's own, does not hold if their mean is not)")})

    summary = bound["summary"]
    best_label = min(summary, key=lambda s: summary[s]["total"]["mean"])
    best_total = summary[best_label]["total"]["mean"]
    teacher_err = bound["teacher"]["test_error"]
    violated = [r for r in bound["rows"] if r["total"] < teacher_err]
    claims.append({"claim": "the distillation bound is non-vacuous (below 1) for at least one student",
                   "holds": bool(best_total < 1), "evidence": (
        f"smallest mean bound {best_total:.3g} ({best_label}: training {summary[best_label]['training']['mean']:.3f}"
        f" + distillation error {summary[best_label]['distillation_error']['mean']:.3f} + complexity "
        f"{summary[best_label]['distillation_complexity']['mean']:.3g}); the teacher's measured test error is "
        f"{teacher_err:.4f} and {len(violated)} of {len(bound['rows'])} bounds fall below it (rule: holds if the "
        "smallest mean bound is < 1)")})

    labels = list(summary)
    params = [summary[s]["params"] for s in labels]
    rho_c = spearman_correlation(params, [summary[s]["complexity"]["mean"] for s in labels])
    rho_p = spearman_correlation(params, [summary[s]["phi"]["mean"] for s in labels])
    if len(labels) < 3 or math.isnan(rho_c) or math.isnan(rho_p):
        holds = None
    elif rho_c >= 0.8 and rho_p <= -0.8:
        holds = True
    elif rho_c <= 0 or rho_p >= 0:
        holds = False
    else:
        holds = None
    claims.append({"claim": "a smaller student has a smaller complexity term but a larger distillation error (the "
                            "trade-off inside the bound)", "holds": holds, "evidence": (
        f"over {len(labels)} student sizes, Spearman(params, complexity) = {rho_c:+.2f}, Spearman(params, Phi) = "
        f"{rho_p:+.2f}; Phi: " + ", ".join(f"{s} {summary[s]['phi']['mean']:.4f}" for s in labels)
        + " (rule: holds if rho_complexity >= 0.8 and rho_Phi <= -0.8, does not hold if either has the wrong sign; "
          "needs >= 3 sizes)")})

    ntk = results["ntk"]["summary"]
    widths = [int(w) for w in ntk]
    drift = [ntk[str(w)]["drift"]["mean"] for w in widths]
    rho = spearman_correlation(widths, drift)
    if rho <= -0.8 and drift[-1] < 0.5 * drift[0]:
        holds = True
    elif rho >= 0:
        holds = False
    else:
        holds = None
    claims.append({"claim": "the empirical NTK moves less during training as the width grows (lazy training)",
                   "holds": holds, "evidence": (
        "relative drift ||K_T - K_0||_F / ||K_0||_F at width "
        + ", ".join(f"{w}: {v:.4f}" for w, v in zip(widths, drift))
        + f"; Spearman(width, drift) = {rho:+.2f} (rule: holds if rho <= -0.8 and the widest drift is below half "
          "the narrowest, does not hold if rho >= 0)")})

    err = [ntk[str(w)]["linearization_error"]["mean"] for w in widths]
    rho = spearman_correlation(widths, err)
    if err[-1] <= 0.1 and rho <= -0.8:
        holds = True
    elif err[-1] > 0.5 or rho >= 0:
        holds = False
    else:
        holds = None
    claims.append({"claim": "a wide network trained by gradient descent is predicted by kernel regression with its "
                            "initial NTK", "holds": holds, "evidence": (
        "test-set linearisation error ||f_T - f_lin||_F / ||f_T - f_0||_F at width "
        + ", ".join(f"{w}: {v:.4f}" for w, v in zip(widths, err))
        + f"; argmax agreement at the widest {ntk[str(widths[-1])]['argmax_agreement']['mean'] * 100:.1f}%; "
          f"Spearman(width, error) = {rho:+.2f} (rule: holds if the widest error <= 0.1 and rho <= -0.8, does not "
          "hold if the widest error > 0.5 or rho >= 0)")})
    return claims


def _print_summary(results: dict[str, Any], out: Path) -> None:
    b = results["bound"]
    print(f"\nteacher {b['teacher']['name']}: test error {b['teacher']['test_error']:.4f}, own bound "
          f"{b['teacher']['own_bound']['total']:.3g}")
    for label, s in b["summary"].items():
        print(f"  student {label:<28} bound {s['total']['mean']:10.3g} = training {s['training']['mean']:.3f} + "
              f"distillation {s['distillation_error']['mean']:.3f} + complexity "
              f"{s['distillation_complexity']['mean']:.3g}; student test error {s['student_test_error']['mean']:.4f}")
    for r in results["risk_variance"]["rows"]:
        q = r["bayes_over_onehot"]
        print(f"  n={r['n']:<5} V[R*]/V[R] = {q['ratio']:.3f} [{q['low']:.3f}, {q['high']:.3f}]")
    for w, s in results["ntk"]["summary"].items():
        print(f"  NTK width {w:>6}: drift {s['drift']['mean']:.4f}, linearisation error "
              f"{s['linearization_error']['mean']:.4f}")
    for claim in results["claims"]:
        print(f"claim [{ {True: 'holds', False: 'does not hold', None: 'undecided'}[claim['holds']] }] "
              f"{claim['claim']}: {claim['evidence']}")
    print(f"\nresults: {out / 'results.json'}   report: {out / 'report.html'}")
