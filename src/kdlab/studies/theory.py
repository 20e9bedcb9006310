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

Plan: the teacher (CE) on a sample of the mixture; each student size per seed distilled from it (KD with the
teacher's logits); each NTK width per seed trained by its own full-batch loop (the NTK theory's setting) and measured.
Every one is a run-store job (:class:`MixtureFitJob`, :class:`NTKJob`), so runs are reused and resumed like all
others. Analysis: bound terms, risk variance of a fixed student, NTK drift. Claims are declared below (rules
generated into docs/studies/theory.md).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field, field_validator
from torch import nn

from ..analysis import spearman_correlation
from ..analysis.ntk import NTKParamMLP, empirical_ntk, linearized_predictions, ntk_drift
from ..analysis.stats import bootstrap_over_groups, mean_std, paired_difference
from ..analysis.theory import (augmented_layer_norms, generalization_bound, margin_rademacher_bound, mlp_linears,
                               norm_grid_class, risk_variance)
from ..analysis.verdict import Claim, Measurement, Rule
from ..compress.finetune import finetune
from ..config import Component, OptimConfig, RunConfig, ScheduleConfig, Section, TrainConfig
from ..data import ArrayDataset, GaussianMixture
from ..data.seeding import derive_seed, generator_for
from ..errors import ConfigError
from ..io import atomic_write_json
from ..losses import build as build_loss
from ..models import count_params, create_model, load_model_weights, predict_logits
from ..recipe import SUMMARY
from ..report import Report
from ..report.format import format_pm, model_name
from ..store import Job, RunStore
from .base import STUDIES
from .driver import Planned, RunSet, Study, StudyConfig, Wave

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
    """Dataset sizes, replicates and bootstrap of the risk-variance measurement."""
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
    """Widths, data, learning rate, steps and seeds of the NTK measurement."""
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


class TheoryStudyConfig(StudyConfig):
    """The theory study's config: the mixture, the bound, the risk variance and the NTK parts."""
    mixture: MixtureConfig = Field(default_factory=MixtureConfig)
    bound: BoundConfig
    variance: VarianceConfig = Field(default_factory=VarianceConfig)
    ntk: NTKConfig = Field(default_factory=NTKConfig)


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


def check_models(cfg: TheoryStudyConfig, planned: list[Planned]) -> None:
    """Build every model once on a dummy shape so bad options fail before anything trains."""
    k, d = cfg.mixture.num_classes, cfg.mixture.dim
    create_model(cfg.bound.teacher.model.name, k, [d], **cfg.bound.teacher.model.options)
    for i, capacity in enumerate(cfg.bound.capacities):
        opts = {**cfg.bound.student.model.options, **capacity}
        try:
            create_model(cfg.bound.student.model.name, k, [d], **opts)
        except ConfigError as exc:
            raise ConfigError(f"bound.capacities[{i}]={capacity!r}: {exc}") from None
    try:
        build_loss(cfg.bound.loss.name, **cfg.bound.loss.options)
    except ConfigError as exc:
        raise ConfigError(f"bound.loss: {exc}") from None


# ------------------------------------------------------------------------------------------ jobs


def stage_run_config(stage: TrainStage, seed: int, loss: Component | None = None) -> RunConfig:
    """What ``kdlab.train.fit`` needs of a stage: optimiser, schedule, epochs, batch size, seed (no data section)."""
    return RunConfig(model=stage.model, loss=loss or Component(name="ce"), optim=stage.optim, schedule=stage.schedule,
                     train=TrainConfig(epochs=stage.epochs, batch_size=stage.batch_size, seed=seed, progress=False,
                                       checkpoint_every=stage.checkpoint_every))


def mixture_of(m: MixtureConfig):
    """The Gaussian mixture a config describes."""
    return GaussianMixture(m.num_classes, m.dim, m.separation, m.sigma, m.seed)


def mixture_sample(m: MixtureConfig, n: int, stream: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points of the mixture from the named random stream (the same points for the same name)."""
    return mixture_of(m).sample(n, generator_for(m.seed, stream))


class MixtureFitJob(Job):
    """A model fitted on a sample of the Gaussian mixture: a run-store job.

    ``model`` (seeded by ``seed`` before it is built) is trained by ``stage`` with ``loss`` on the ``n_train`` points
    of stream ``stream``; a loss that needs a teacher reads the logits of the model saved in ``teacher_run`` on the
    same points. No validation split: the last epoch's weights are kept (``model.safetensors``).
    """

    kind: ClassVar[str] = "mixture_fit"
    mixture: MixtureConfig
    n_train: int
    stream: str = "theory-train"
    stage: TrainStage
    model: Component
    loss: Component = Field(default_factory=lambda: Component(name="ce"))
    seed: int
    teacher_run: str | None = None

    def trained_loss(self) -> Component:
        """The loss it trains with (its revision is checked before a finished run is reused)."""
        return self.loss

    def train(self, out_dir: Path, *, progress: bool | None = None,
              teacher_cache_dir: str | Path | None = None) -> dict[str, Any]:
        x, y = mixture_sample(self.mixture, self.n_train, self.stream)
        teacher_logits = None
        if self.teacher_run is not None:
            teacher_logits = predict_logits(load_model_weights(Path(self.teacher_run) / "model.safetensors"), x)
        torch.manual_seed(self.seed)  # every student of a seed starts from weights that depend on the seed only
        model = create_model(self.model.name, self.mixture.num_classes, [self.mixture.dim], **self.model.options)
        return finetune(model, ArrayDataset(x, y), None, stage_run_config(self.stage, self.seed, self.loss), out_dir,
                        loss=build_loss(self.loss.name, **self.loss.options), teacher_logits=teacher_logits,
                        keep="last", progress=progress)


class NTKJob(Job):
    """An NTK-parameterised MLP of one width trained by full-batch gradient descent, and what its kernel did: a
    run-store job whose summary holds the measurements (drift, linearisation error, accuracies)."""

    kind: ClassVar[str] = "ntk"
    mixture: MixtureConfig
    ntk: NTKConfig
    width: int
    seed: int

    def train(self, out_dir: Path, *, progress: bool | None = None,
              teacher_cache_dir: str | Path | None = None) -> dict[str, Any]:
        c, k = self.ntk, self.mixture.num_classes
        x_tr, y_tr = mixture_sample(self.mixture, c.n_train, "ntk-train")
        x_te, y_te = mixture_sample(self.mixture, c.n_test, "ntk-test")
        x_all = torch.cat([x_tr, x_te])
        n = c.n_train
        # squared loss on centred one-hot targets: the regression setting of the NTK theory
        target = torch.nn.functional.one_hot(y_tr, k).float() - 1.0 / k
        net = NTKParamMLP(self.mixture.dim, self.width, k, depth=c.depth, seed=derive_seed(self.seed, "ntk",
                                                                                          self.width))
        with torch.no_grad():
            f0 = net(x_all)
        k0 = empirical_ntk(net, x_all, mode="full")
        loss_curve = _gradient_descent(net, x_tr, target, c.lr, c.steps)
        kt = empirical_ntk(net, x_tr, mode="full")
        with torch.no_grad():
            ft_te, ft_tr = net(x_te).double(), net(x_tr).double()
        lin = linearized_predictions(k0[:n, :n], k0[n:, :n], target, f0[:n], f0[n:], c.lr, c.steps)
        moved = float((ft_te - f0[n:].double()).norm())
        summary = {
            "width": self.width, "seed": self.seed,
            "drift": ntk_drift(k0[:n, :n], kt),
            "linearization_error": float((ft_te - lin["test"]).norm()) / max(moved, 1e-12),
            "argmax_agreement": float((ft_te.argmax(1) == lin["test"].argmax(1)).float().mean()),
            "net_test_accuracy": float((ft_te.argmax(1) == y_te).float().mean()),
            "kernel_test_accuracy": float((lin["test"].argmax(1) == y_te).float().mean()),
            "net_train_loss": loss_curve[-1],
            "kernel_train_loss": float(0.5 * (lin["train"] - target.double()).pow(2).sum(1).mean()),
            "train_fit_gap": float((ft_tr - lin["train"]).norm() / max(float((ft_tr - target).norm()), 1e-12)),
        }
        atomic_write_json(Path(out_dir) / SUMMARY, summary)
        return summary


def plan(cfg: TheoryStudyConfig, store: RunStore) -> list[Wave]:
    """The teacher and the NTK widths first; then every student size per seed, distilled from the teacher."""
    b = cfg.bound
    teacher = MixtureFitJob(mixture=cfg.mixture, n_train=b.n_train, stage=b.teacher, model=b.teacher.model,
                            seed=b.teacher_seed)
    students = [Planned({"role": "student", "architecture": arch, "seed": seed},
                        MixtureFitJob(mixture=cfg.mixture, n_train=b.n_train, stage=b.student,
                                      model=Component(**{**b.student.model.as_dict(), **capacity}), loss=b.loss,
                                      seed=seed, teacher_run=str(store.path(teacher))))
                for arch, capacity in enumerate(b.capacities) for seed in b.seeds]
    ntk = [Planned({"role": "ntk", "width": w, "seed": seed}, NTKJob(mixture=cfg.mixture, ntk=cfg.ntk, width=w,
                                                                      seed=seed))
           for w in cfg.ntk.widths for seed in cfg.ntk.seeds]
    return [Wave("teacher and NTK widths", [Planned({"role": "teacher"}, teacher), *ntk]),
            Wave("students", students)]


# ------------------------------------------------------------------------------------------ analysis


def _label(model: Component, capacity: dict[str, Any], params: int | None = None) -> str:
    return model_name({**model.as_dict(), **capacity}, params)


def _load(run: Any) -> nn.Module:
    model = load_model_weights(Path(run.run_dir) / "model.safetensors")
    model.eval()
    return model


def _bound_part(cfg: TheoryStudyConfig, runs: RunSet) -> dict[str, Any]:
    b, k = cfg.bound, cfg.mixture.num_classes
    x_tr, y_tr = mixture_sample(cfg.mixture, b.n_train, "theory-train")
    x_te, y_te = mixture_sample(cfg.mixture, b.n_test, "theory-test")
    teacher_run = runs.one(role="teacher")
    teacher = _load(teacher_run)
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
    teacher_name = _label(b.teacher.model, {}, count_params(teacher))
    rows, records = [], []
    for arch, capacity in enumerate(b.capacities):
        for seed in b.seeds:
            run = runs.one(role="student", architecture=arch, seed=seed)
            student = _load(run)
            label = _label(b.student.model, capacity, count_params(student))
            s_train, s_test = predict_logits(student, x_tr), predict_logits(student, x_te)
            row = {"student": label, "architecture": arch, "seed": seed, "params": count_params(student),
                   "student_test_error": float((s_test.argmax(1) != y_te).float().mean()),
                   "student_train_error": float((s_train.argmax(1) != y_tr).float().mean()),
                   **terms_for(student, s_train, arch)}
            rows.append(row)
            records.append({"teacher": teacher_name, "method": "kd", "hyperparams": b.loss.as_dict(), "seed": seed,
                            "student": label, "test_accuracy": 1 - row["student_test_error"],
                            "run_dir": run.run_dir})
    summary = {}
    for arch in range(len(b.capacities)):
        mine = [r for r in rows if r["architecture"] == arch]
        summary[mine[0]["student"]] = {
            "params": mine[0]["params"],
            **{key: mean_std([r[key] for r in mine]) for key in
               ("total", "training", "distillation_error", "distillation_complexity", "complexity", "phi", "l1",
                "rademacher", "student_test_error", "train_surrogate_teacher")},
            "per_seed": {key: [r[key] for r in mine] for key in ("total", "complexity", "phi")},
        }
    return {"teacher": {"name": teacher_name, "params": count_params(teacher), "test_error": teacher_test_error,
                        "train_error": float((t_train.argmax(1) != y_tr).float().mean()), "own_bound": teacher_own,
                        "run_dir": teacher_run.run_dir},
            "rows": rows, "summary": summary, "student_records": records}


def _variance_part(cfg: TheoryStudyConfig, runs: RunSet, bound: dict[str, Any]) -> dict[str, Any]:
    v, b = cfg.variance, cfg.bound
    predictor = _load(runs.one(role="student", architecture=0, seed=b.seeds[0]))
    teacher = _load(runs.one(role="teacher"))
    rows = risk_variance(predictor, mixture_of(cfg.mixture), v.sizes, v.replicates, teacher=teacher, seed=v.seed,
                         confidence=v.confidence, num_bootstrap=v.num_bootstrap)
    first = next(iter(bound["summary"]))
    return {"predictor": f"{first} (seed {b.seeds[0]})", "teacher": bound["teacher"]["name"], "rows": rows}


def _ntk_part(cfg: TheoryStudyConfig, runs: RunSet) -> dict[str, Any]:
    rows = [{k: v for k, v in r.summary.items() if k != "run_dir"} for r in runs.select(role="ntk")]
    keys = ("drift", "linearization_error", "argmax_agreement", "net_test_accuracy", "kernel_test_accuracy")
    summary = {str(w): {key: mean_std([r[key] for r in rows if r["width"] == w]) for key in keys}
               for w in cfg.ntk.widths}
    per_seed = {str(w): {key: [r[key] for r in rows if r["width"] == w] for key in ("drift", "linearization_error")}
                for w in cfg.ntk.widths}
    return {"rows": rows, "summary": summary, "per_seed": per_seed, "kernel_mode": "full"}


def analyse(cfg: TheoryStudyConfig, runs: RunSet) -> dict[str, Any]:
    """The bound terms, the risk variance of a fixed student and the NTK measurements."""
    mixture = mixture_of(cfg.mixture)
    bound = _bound_part(cfg, runs)
    return {
        "dataset": "gaussian_mixture",
        "config": cfg.model_dump(mode="json"),
        "mixture": {**mixture.spec(), "bayes_error": mixture.bayes_error_estimate(20_000)},
        "students": bound.pop("student_records"),
        "bound": bound,
        "risk_variance": _variance_part(cfg, runs, bound),
        "ntk": _ntk_part(cfg, runs),
    }


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

MENON = "Menon, Rawat, Reddi, Kim, Kumar, ICML 2021"
HSU = "Hsu, Ji, Telgarsky, Wang, ICLR 2021"
JACOT = "Jacot, Gabriel, Hongler, NeurIPS 2018"


def _largest_ratio(key: str):
    """The largest variance ratio over dataset sizes, with [largest lower end, largest upper end] of the per-size
    intervals: the ratio is below 1 at every size exactly when the upper end of this interval is."""
    def measure(results: dict[str, Any]) -> Measurement:
        rows = results["risk_variance"]["rows"]
        ratios = [r[f"{key}_over_onehot"] for r in rows]
        worst = max(ratios, key=lambda q: q["ratio"])
        return Measurement(worst["ratio"], max(q["low"] for q in ratios), max(q["high"] for q in ratios),
                           rows[0]["replicates"], "per-size 95% paired bootstrap intervals over resampled datasets",
                           "ratio at n = " + ", ".join(f"{r['n']}: {q['ratio']:.3f} [{q['low']:.3f}, {q['high']:.3f}]"
                                                       for r, q in zip(rows, ratios)))
    return measure


def _student_bound_minus_own(results: dict[str, Any]) -> Measurement:
    bound = results["bound"]
    own = bound["teacher"]["own_bound"]["total"]
    seeds = sorted({r["seed"] for r in bound["rows"]})
    best = [min(r["total"] for r in bound["rows"] if r["seed"] == s) for s in seeds]
    diff = paired_difference(best, [own] * len(best))
    return Measurement(diff["mean"], diff["low"], diff["high"], diff["n"], "95% t interval over seeds",
                       "smallest bound through a student per seed: " + ", ".join(f"seed {s}: {v:.3g}"
                                                                                 for s, v in zip(seeds, best))
                       + f"; the teacher's own bound (g = f, Phi = 0): {own:.3g}")


def _smallest_bound(results: dict[str, Any]) -> Measurement:
    summary = results["bound"]["summary"]
    best = min(summary, key=lambda s: summary[s]["total"]["mean"])
    values = summary[best]["per_seed"]["total"]
    diff = paired_difference(values, [0.0] * len(values))
    teacher_err = results["bound"]["teacher"]["test_error"]
    return Measurement(diff["mean"], diff["low"], diff["high"], diff["n"], "95% t interval over seeds",
                       f"{best}: training {summary[best]['training']['mean']:.3f} + distillation error "
                       f"{summary[best]['distillation_error']['mean']:.3f} + complexity "
                       f"{summary[best]['distillation_complexity']['mean']:.3g}; the teacher's measured test error is "
                       f"{teacher_err:.4f}", {"student": best}, "the bound itself (training data; test never read)")


def _rho_over_seeds(values_of, sizes_of, what: str):
    """Spearman correlation of a size with a per-seed quantity, bootstrapped over seeds within each size."""
    def measure(results: dict[str, Any]) -> Measurement:
        sizes, groups = sizes_of(results), values_of(results)

        def rho(sample: list[list[float]]) -> float:
            return spearman_correlation(sizes, [sum(g) / len(g) for g in sample])

        out = bootstrap_over_groups(groups, rho, num_bootstrap=2000, seed=0)
        means = [sum(g) / len(g) for g in groups]
        return Measurement(out["estimate"], out["low"], out["high"], out["n"],
                           "95% bootstrap over seeds within each size",
                           f"{what} (mean over seeds) by size: " + ", ".join(f"{s}: {m:.4g}" for s, m in
                                                                             zip(sizes, means)))
    return measure


def _bound_sizes(results: dict[str, Any]) -> list[int]:
    return [v["params"] for v in results["bound"]["summary"].values()]


def _widths(results: dict[str, Any]) -> list[int]:
    return [int(w) for w in results["ntk"]["per_seed"]]


def _widest_error(results: dict[str, Any]) -> Measurement:
    per_seed = results["ntk"]["per_seed"]
    widest = max(per_seed, key=int)
    values = per_seed[widest]["linearization_error"]
    diff = paired_difference(values, [0.0] * len(values)) if len(values) > 1 else {
        "mean": values[0], "low": math.nan, "high": math.nan, "n": 1}
    agreement = results["ntk"]["summary"][widest]["argmax_agreement"]["mean"]
    return Measurement(diff["mean"], diff["low"], diff["high"], diff["n"], "95% t interval over seeds",
                       f"width {widest}; argmax agreement {agreement * 100:.1f}%; errors by width: " + ", ".join(
                           f"{w}: {results['ntk']['summary'][w]['linearization_error']['mean']:.4f}" for w in per_seed))


def claims(cfg: TheoryStudyConfig) -> list[Claim]:
    """The theory study's claims (Menon et al. 2021; Hsu et al. 2021; Jacot et al. 2018)."""
    return [
        Claim("bayes_variance", "the Bayes-distilled risk of a fixed predictor varies less over resampled datasets "
              "than its one-hot empirical risk, V[R*_hat(f)] <= V[R_hat(f)]",
              "largest variance ratio V[R*_hat] / V[R_hat] over the dataset sizes (the interval spans the largest "
              "lower and the largest upper end of the per-size intervals)", Rule("<", 1.0, digits=3),
              _largest_ratio("bayes"), source=MENON),
        Claim("teacher_variance", "a trained teacher's distilled risk also varies less than the one-hot empirical "
              "risk", "largest variance ratio V[R_teacher_hat] / V[R_hat] over the dataset sizes (as above)",
              Rule("<", 1.0, digits=3), _largest_ratio("teacher"), source=MENON),
        Claim("student_bound_tighter", "distilling the teacher into a small student gives a tighter bound on the "
              "teacher's test error than the teacher's own complexity",
              "smallest bound through a student (per seed) - the teacher's own bound", Rule("<", 0.0, digits=3),
              _student_bound_minus_own, selection="per seed, the student whose bound is smallest (the bound is "
              "computed on training data)", source=HSU),
        Claim("bound_non_vacuous", "the distillation bound is non-vacuous (below 1) for at least one student",
              "bound of the student size with the smallest mean bound, over seeds", Rule("<", 1.0, digits=3),
              _smallest_bound, selection="the student size with the smallest mean bound", source=HSU),
        Claim("complexity_grows", "a larger student has a larger complexity term",
              "Spearman correlation of student parameters with the complexity term", Rule(">=", 0.8),
              _rho_over_seeds(lambda r: [v["per_seed"]["complexity"] for v in r["bound"]["summary"].values()],
                              _bound_sizes, "complexity"), source=HSU),
        Claim("distillation_error_shrinks", "a smaller student has a larger distillation error (the trade-off inside "
              "the bound)", "Spearman correlation of student parameters with the distillation error Phi",
              Rule("<=", -0.8),
              _rho_over_seeds(lambda r: [v["per_seed"]["phi"] for v in r["bound"]["summary"].values()],
                              _bound_sizes, "Phi"), source=HSU),
        Claim("ntk_lazy", "the empirical NTK moves less during training as the width grows (lazy training)",
              "Spearman correlation of width with the relative kernel drift ||K_T - K_0||_F / ||K_0||_F",
              Rule("<=", -0.8), _rho_over_seeds(lambda r: [v["drift"] for v in r["ntk"]["per_seed"].values()],
                                                _widths, "drift"), source=JACOT),
        Claim("ntk_linear", "a wide network trained by gradient descent is predicted by kernel regression with its "
              "initial NTK", "test-set linearisation error ||f_T - f_lin||_F / ||f_T - f_0||_F at the widest width, "
              "over seeds", Rule("<=", 0.1, digits=4), _widest_error, source=JACOT),
    ]


# ------------------------------------------------------------------------------------------ report


def report(results: dict[str, Any]) -> Report:
    """The theory report: claims, then the risk variance, the bound and the NTK with their figures."""
    cfg, bound = results["config"], results["bound"]
    mix = results["mixture"]
    rep = Report("kdlab theory study — why distillation works, measured")
    rep.paragraph(
        f"Data: a Gaussian mixture with {mix['num_classes']} classes in {mix['dim']} dimensions (separation "
        f"{mix['separation']}, sigma {mix['sigma']}), whose Bayes posterior p*(y|x) is exact; Bayes error "
        f"{mix['bayes_error'] * 100:.2f}%.")
    rep.claims_section(results)

    rep.heading("1. Risk variance (survey section 6; Menon et al., ICML 2021)")
    var = results["risk_variance"]
    rep.paragraph(
        f"Fixed predictor f = {var['predictor']}; teacher = {var['teacher']}. For each size n, "
        f"{var['rows'][0]['replicates']} datasets drawn afresh; on each the one-hot risk (1/n) sum l(y_i, f(x_i)), the "
        "Bayes-distilled risk (1/n) sum_i sum_c p*(c|x_i) l(c, f(x_i)) and the teacher-distilled risk (teacher "
        "probabilities in place of p*), with l the softmax cross-entropy. Variance intervals: chi-square (normal "
        "replicates); ratio intervals: paired percentile bootstrap over replicates.")
    rows = var["rows"]
    rep.table(["n", "mean R_hat", "V[R_hat]", "V[R*_hat]", "V[R_teacher]", "V[R*]/V[R] [95%]", "V[R_t]/V[R] [95%]"],
              [[r["n"], f"{r['onehot']['mean']:.4f}", f"{r['onehot']['variance']:.3g}",
                f"{r['bayes']['variance']:.3g}", f"{r['teacher']['variance']:.3g}",
                f"{r['bayes_over_onehot']['ratio']:.3f} [{r['bayes_over_onehot']['low']:.3f}, "
                f"{r['bayes_over_onehot']['high']:.3f}]",
                f"{r['teacher_over_onehot']['ratio']:.3f} [{r['teacher_over_onehot']['low']:.3f}, "
                f"{r['teacher_over_onehot']['high']:.3f}]"] for r in rows])
    n = [r["n"] for r in rows]
    rep.figure("risk_variance.png", {"size": [10, 4], "panels": [
        {"type": "lines", "xscale": "log", "yscale": "log", "xlabel": "dataset size n",
         "ylabel": "variance over resampled datasets", "title": "V[empirical risk] (95% chi-square intervals)",
         "series": [{"label": name, "x": n, "y": [r[key]["variance"] for r in rows],
                     "err": [[r[key]["variance"] - r[key]["low"] for r in rows],
                             [r[key]["high"] - r[key]["variance"] for r in rows]]}
                    for key, name in (("onehot", "one-hot R_hat"), ("bayes", "Bayes-distilled R*_hat"),
                                      ("teacher", "teacher-distilled"))]},
        {"type": "lines", "xscale": "log", "xlabel": "dataset size n", "ylabel": "variance ratio",
         "title": "Ratio (95% paired bootstrap intervals)", "hlines": [{"y": 1.0}],
         "series": [{"label": name, "x": n, "y": [r[key]["ratio"] for r in rows],
                     "err": [[r[key]["ratio"] - r[key]["low"] for r in rows],
                             [r[key]["high"] - r[key]["ratio"] for r in rows]]}
                    for key, name in (("bayes_over_onehot", "Bayes / one-hot"),
                                      ("teacher_over_onehot", "teacher / one-hot"))]}]},
        "variance of the empirical risks against dataset size")

    rep.heading("2. The distillation bound (survey section 7; Hsu, Ji, Telgarsky, Wang, ICLR 2021)")
    b, t = cfg["bound"], bound["teacher"]
    rep.paragraph(
        f"Teacher f = {t['name']} trained with CE on n = {b['n_train']} points: train error "
        f"{t['train_error'] * 100:.2f}%, test error {t['test_error'] * 100:.2f}% (on {b['n_test']} fresh points). "
        f"Students distilled from it with {b['loss']} over seeds {b['seeds']}; gamma = {b['gamma']}, delta = "
        f"{b['delta']}. The Rademacher term is the norm-based upper bound for ReLU MLPs (Maurer's vector contraction "
        "+ Golowich, Rakhlin & Shamir, COLT 2018) at the student's class G_j, the powers of two above its layer "
        "norms; p_j is the prior over architectures and norm levels (kdlab.analysis.theory.norm_grid_class).")
    rep.table(["student", "student test err (%)", "training", "8 Phi", "Phi", "L1", "(1/gamma) Rad",
               "complexity (all)", "bound"],
              [[s, format_pm(v["student_test_error"]), f"{v['training']['mean']:.3f}",
                f"{v['distillation_error']['mean']:.3f}", f"{v['phi']['mean']:.4f}", f"{v['l1']['mean']:.4f}",
                f"{v['complexity']['mean']:.3g}", f"{v['distillation_complexity']['mean']:.3g}",
                f"{v['total']['mean']:.3g} ± {v['total']['std']:.2g}"] for s, v in bound["summary"].items()]
              + [["teacher itself (g = f)", f"{t['test_error'] * 100:.2f}", f"{t['own_bound']['training']:.3f}",
                  "0", "0", "0", f"{t['own_bound']['complexity']:.3g}",
                  f"{t['own_bound']['distillation_complexity']:.3g}", f"{t['own_bound']['total']:.3g}"]])
    labels = list(bound["summary"])
    x = list(range(len(labels)))
    rep.figure("bound_terms.png", {"size": [7.5, 4.5], "panels": [{
        "type": "lines", "yscale": "log", "ylabel": "error / bound term", "xticks": [x, labels], "xtick_rotation": 15,
        "title": "Teacher test error <= training + distillation error + complexity (per student)",
        "series": [{"label": name, "x": x, "y": [max(bound["summary"][s][key]["mean"], 1e-6) for s in labels],
                    "err": [bound["summary"][s][key]["std"] for s in labels], "style": style}
                   for key, name, style in (("total", "bound (total)", "o-"), ("training", "training surrogate", "s--"),
                                            ("distillation_error", "8 x distillation error", "^--"),
                                            ("distillation_complexity", "complexity terms", "v--"),
                                            ("student_test_error", "student test error", "d:"))],
        "hlines": [{"y": t["test_error"], "style": "-", "label": "teacher test error"},
                   {"y": t["own_bound"]["total"], "color": "#b3261e", "style": "-.", "label": "teacher's own bound"},
                   {"y": 1.0, "color": "#888", "style": ":"}]}]}, "bound terms per student size")

    rep.heading("3. Neural tangent kernel (survey section 8)")
    nk = cfg["ntk"]
    rep.paragraph(
        f"NTK-parameterised ReLU MLPs (depth {nk['depth']}) of widths {nk['widths']}, trained by full-batch gradient "
        f"descent (lr {nk['lr']}, {nk['steps']} steps) on the squared loss with centred one-hot targets, "
        f"{nk['n_train']} training and {nk['n_test']} test points, seeds {nk['seeds']}. The kernel is the full "
        "empirical NTK (all output pairs); the kernel prediction is the network linearised at initialisation after "
        "the same GD steps (closed form with K_0).")
    summary = results["ntk"]["summary"]
    rep.table(["width", "drift", "linearisation error", "argmax agreement (%)", "net test acc (%)",
               "kernel test acc (%)"],
              [[w, format_pm(s["drift"], 1, 4), format_pm(s["linearization_error"], 1, 4),
                format_pm(s["argmax_agreement"]), format_pm(s["net_test_accuracy"]),
                format_pm(s["kernel_test_accuracy"])] for w, s in summary.items()])
    widths = [int(w) for w in summary]
    rep.figure("ntk_drift.png", {
        "title": "Wider networks: the NTK moves less and kernel regression predicts the network", "size": [10, 4],
        "panels": [{"type": "lines", "xscale": "log2", "yscale": "log", "xlabel": "width", "title": title,
                    "ylabel": "relative change" if key == "drift" else "", "legend": "none",
                    "series": [{"x": widths, "y": [summary[str(w)][key]["mean"] for w in widths],
                                "err": [summary[str(w)][key]["std"] for w in widths]}]}
                   for key, title in (("drift", "||K_T - K_0||_F / ||K_0||_F"),
                                      ("linearization_error", "||f_T - f_lin||_F / ||f_T - f_0||_F (test)"))]},
        "NTK drift and linearisation error against width")
    rep.reproduce(results)
    return rep


THEORY = STUDIES.register("theory")(Study(
    name="theory", config=TheoryStudyConfig, defaults=DEFAULTS, presets=PRESETS, plan=plan, analyse=analyse,
    claims=claims, report=report, check=check_models, description=__doc__.splitlines()[0]))
