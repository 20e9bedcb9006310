"""Multi-view study: a single network learns one feature per class, an ensemble learns them all, KD passes them on.

The survey's section 9, after Allen-Zhu & Li, "Towards Understanding Ensemble, Knowledge Distillation and
Self-Distillation in Deep Learning", ICLR 2023. On multi-view data (``kdlab.data.multiview``: two features per class,
80% of samples show both, 10% only the first, 10% only the second) a network trained from random initialisation
picks up one feature per class (whichever wins the race from its initial weights) and memorises the single-view
samples that lack it, through their noise; independently initialised networks pick different features, so their
ensemble uses both; a student distilled from the ensemble's logits learns both and is more accurate at test time.

Plan per seed: M members trained with CE from independent initialisations (member 0 is "the single model"); then
a student (member 0's architecture, its own initialisation) distilled from the ensemble's logits (the mean of the
members') on the training inputs. Each is a run-store job (:class:`MultiViewFitJob`). Analysis: test accuracy and
per-feature probes for the single model, the ensemble and the student; paired differences over seeds. Claims are
declared below (rules generated into docs/studies/multiview.md).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from ..analysis.stats import binomial_interval, mean_std, paired_difference
from ..analysis.verdict import Claim, Measurement, Rule, paired_measurement
from ..compress.finetune import finetune
from ..config import Component, Section
from ..data import ArrayDataset
from ..data.multiview import MultiViewData
from ..data.seeding import derive_seed, generator_for
from ..errors import ConfigError
from ..losses import build as build_loss
from ..models import load_model_weights, predict_logits
from ..report import Report
from ..report.format import format_pm
from ..store import Job, RunStore
from .base import STUDIES
from .driver import Planned, RunSet, Study, StudyConfig, Wave
from .theory import TrainStage, stage_run_config


def smoothed_relu(z: Tensor, rho: float, power: int) -> Tensor:
    """The smoothed ReLU of Allen-Zhu & Li (ICLR 2023):

        0                              for z <= 0
        z^q / (q rho^(q-1))            for 0 < z <= rho
        z - (1 - 1/q) rho              for z > rho
    continuous with a continuous derivative at rho (both pieces have value rho/q and slope 1 there). The polynomial
    start makes a feature's growth rate grow with its current strength, so the feature with the larger initial
    correlation wins the race: the mechanism behind "one feature per class".
    """
    zc = z.clamp(min=0)
    return torch.where(zc <= rho, zc.pow(power) / (power * rho ** (power - 1)), zc - (1 - 1 / power) * rho)


class PatchSmoothReLUNet(nn.Module):
    """The two-layer convolutional network of Allen-Zhu & Li: F_c(X) = sum_{r<=m} sum_{p<=P} ReLU~(<w_{c,r}, x_p>).

    Weights W [k, m, d] shared over the P patches of an input [N, P, d]; init N(0, init_std^2). No bias.
    """

    def __init__(self, num_classes: int, patch_dim: int, neurons: int = 4, rho: float = 0.5, power: int = 4,
                 init_std: float = 0.03) -> None:
        super().__init__()
        for name, value, minimum in (("num_classes", num_classes, 2), ("patch_dim", patch_dim, 1),
                                     ("neurons", neurons, 1), ("power", power, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name}={value!r} is not allowed; allowed: an int >= {minimum}")
        if not rho > 0 or not init_std > 0:
            raise ValueError(f"rho={rho!r} and init_std={init_std!r} must both be > 0")
        self.weight = nn.Parameter(init_std * torch.randn(num_classes, neurons, patch_dim))
        self.rho, self.power = float(rho), int(power)
        self.spec = {"name": "patch_smooth_relu", "num_classes": num_classes, "patch_dim": patch_dim,
                     "neurons": neurons, "rho": rho, "power": power, "init_std": init_std}

    def forward(self, x: Tensor) -> Tensor:
        """Logits [N, k] of inputs [N, P, d]."""
        if x.dim() != 3 or x.shape[2] != self.weight.shape[2]:
            raise ValueError(f"x of shape {list(x.shape)} is not allowed; expected [N, P, {self.weight.shape[2]}]")
        n, p, d = x.shape
        k, m, _ = self.weight.shape
        # one matmul over all patches: [n P, d] x [d, k m]
        z = x.reshape(n * p, d) @ self.weight.reshape(k * m, d).T
        return smoothed_relu(z, self.rho, self.power).view(n, p, k, m).sum(dim=(1, 3))


class MultiViewDataConfig(Section):
    """``kdlab.data.multiview.MultiViewData`` parameters; noise is given as the per-patch noise norm."""

    num_classes: int = Field(2, ge=2)
    num_patches: int = Field(64, ge=1)
    patch_dim: int = Field(1024, ge=4)
    patches_per_feature: int = Field(1, ge=1)
    # E||noise of one patch|| = noise_norm (noise_std = noise_norm / sqrt(patch_dim)); features have norm 1
    noise_norm: float = Field(2.0, ge=0)
    other_strength: float = Field(0.1, ge=0, lt=1)
    n_train: int = Field(200, ge=10)
    n_test: int = Field(1000, ge=10)
    probe_per_class: int = Field(100, ge=10)


class NetConfig(Section):
    """The patch network's neurons per class and smoothed ReLU."""
    neurons: int = Field(4, ge=1)
    rho: float = Field(1.0, gt=0)
    power: int = Field(4, ge=2)
    init_std: float = Field(0.05, gt=0)


class MultiViewStudyConfig(StudyConfig):
    """The multi-view study's config: data, network, training, members, loss and seeds."""
    data: MultiViewDataConfig = Field(default_factory=MultiViewDataConfig)
    net: NetConfig = Field(default_factory=NetConfig)
    train: TrainStage
    members: int = Field(5, ge=2)
    loss: Component = Field(default_factory=lambda: Component(name="kd", temperature=4.0, alpha=0.9))
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4], min_length=1)
    # a view is "learned" when the probe accuracy on inputs carrying only that view reaches this
    learned_threshold: float = Field(0.9, gt=0.5, le=1)


DEFAULTS: dict[str, Any] = {
    "data": {},
    "net": {},
    # 30 epochs x 20 steps of SGD; no weight decay (it would shrink the memorising directions and the features alike)
    "train": {"model": {"name": "patch_smooth_relu"}, "epochs": 30, "batch_size": 10,
              "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0},
              "schedule": {"name": "constant"}},
    "members": 5,
    "loss": {"name": "kd", "temperature": 4.0, "alpha": 0.9},
    "seeds": [0, 1, 2, 3, 4],
}

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"data": {"patch_dim": 256, "num_patches": 16, "n_test": 200, "probe_per_class": 30},
              "train": {"epochs": 10}, "members": 2, "seeds": [0, 1]},
}


def build_net(data: MultiViewDataConfig, net: NetConfig) -> PatchSmoothReLUNet:
    """A freshly initialised patch network for this data and network config."""
    return PatchSmoothReLUNet(data.num_classes, data.patch_dim, net.neurons, net.rho, net.power, net.init_std)


def multiview_data(d: MultiViewDataConfig, seed: int):
    """The multi-view distribution of ``seed`` and its training, test and probe samples (fixed by the seed)."""
    data = MultiViewData(d.num_classes, d.num_patches, d.patch_dim, d.patches_per_feature,
                         noise_std=d.noise_norm / math.sqrt(d.patch_dim), other_strength=d.other_strength, seed=seed)
    train = data.sample(d.n_train, generator_for(seed, "multiview-train"))
    test = data.sample(d.n_test, generator_for(seed, "multiview-test"))
    probes = {view: data.probe(d.probe_per_class, view, generator_for(seed, "multiview-probe", view))
              for view in ("first", "second")}
    return data, train, test, probes


class MultiViewFitJob(Job):
    """One network of the multi-view study fitted on the training sample of ``seed``: a member (``member`` j, CE) or
    the student (``member`` None), distilled with ``loss`` from the mean logits of the members in ``teacher_runs``.
    No validation split: the last epoch's weights are kept (``model.safetensors``)."""

    kind: ClassVar[str] = "multiview_fit"
    data: MultiViewDataConfig
    net: NetConfig
    stage: TrainStage
    seed: int
    member: int | None = None
    loss: Component = Field(default_factory=lambda: Component(name="ce"))
    teacher_runs: list[str] = Field(default_factory=list)

    def trained_loss(self) -> Component:
        """The loss it trains with (its revision is checked before a finished run is reused)."""
        return self.loss

    def train(self, out_dir: Path, *, progress: bool | None = None,
              teacher_cache_dir: str | Path | None = None) -> dict[str, Any]:
        _, train, _, _ = multiview_data(self.data, self.seed)
        teacher_logits = None
        if self.teacher_runs:
            members = [load_net(run, self.data, self.net) for run in self.teacher_runs]
            teacher_logits = torch.stack([_logits(m, train.x) for m in members]).mean(0)
        if self.member is None:
            init, batches = derive_seed(self.seed, "student"), derive_seed(self.seed, "student-batches")
        else:
            init, batches = derive_seed(self.seed, "member", self.member), derive_seed(self.seed, "member-batches",
                                                                                      self.member)
        torch.manual_seed(init)
        net = build_net(self.data, self.net)
        return finetune(net, ArrayDataset(train.x, train.y), None, stage_run_config(self.stage, batches, self.loss),
                        out_dir, loss=build_loss(self.loss.name, **self.loss.options), teacher_logits=teacher_logits,
                        keep="last", progress=progress)


def load_net(run_dir: str, data: MultiViewDataConfig, net: NetConfig) -> PatchSmoothReLUNet:
    """The trained patch network saved in ``run_dir``, in eval mode."""
    model = load_model_weights(Path(run_dir) / "model.safetensors", build_net(data, net))
    model.eval()
    return model


def _logits(net: nn.Module, x: Tensor) -> Tensor:
    return predict_logits(net, x)


def check_net(cfg: MultiViewStudyConfig, planned: list[Planned]) -> None:
    """Bad network options fail before any data or training."""
    try:
        build_net(cfg.data, cfg.net)
    except ValueError as exc:
        raise ConfigError(f"net: {exc}") from None


def plan(cfg: MultiViewStudyConfig, store: RunStore) -> list[Wave]:
    """The members of every seed, then each seed's student distilled from its members' mean logits."""
    members = {(seed, j): MultiViewFitJob(data=cfg.data, net=cfg.net, stage=cfg.train, seed=seed, member=j)
               for seed in cfg.seeds for j in range(cfg.members)}
    students = [Planned({"role": "student", "seed": seed},
                        MultiViewFitJob(data=cfg.data, net=cfg.net, stage=cfg.train, seed=seed, loss=cfg.loss,
                                        teacher_runs=[str(store.path(members[seed, j])) for j in range(cfg.members)]))
                for seed in cfg.seeds]
    return [Wave("members", [Planned({"role": "member", "seed": seed, "member": j}, job)
                             for (seed, j), job in members.items()]),
            Wave("students", students)]


def analyse(cfg: MultiViewStudyConfig, runs: RunSet) -> dict[str, Any]:
    """Per seed: accuracies and feature probes of the single model, the ensemble and the student."""
    d = cfg.data
    per_seed, students = [], []
    for seed in cfg.seeds:
        data, train, test, probes = multiview_data(d, seed)
        members = [load_net(runs.one(role="member", seed=seed, member=j).run_dir, d, cfg.net)
                   for j in range(cfg.members)]
        student_run = runs.one(role="student", seed=seed)
        student = load_net(student_run.run_dir, d, cfg.net)
        models = {"single": lambda x, m=members[0]: _logits(m, x),
                  "ensemble": lambda x: torch.stack([_logits(m, x) for m in members]).mean(0),
                  "student": lambda x: _logits(student, x)}
        record: dict[str, Any] = {"seed": seed, "members": []}
        for name, predict in models.items():
            record[name] = _measure(predict, train, test, probes, d.num_classes)
        for m in members:
            record["members"].append(_measure(lambda x, m=m: _logits(m, x), train, test, probes, d.num_classes))
        record["feature_correlations"] = {"single": _feature_correlations(members[0], data.features),
                                          "student": _feature_correlations(student, data.features)}
        per_seed.append(record)
        students.append({"teacher": f"ensemble of {cfg.members}", "method": "kd", "hyperparams": cfg.loss.as_dict(),
                         "seed": seed, "test_accuracy": record["student"]["test_accuracy"],
                         "run_dir": student_run.run_dir})
    summary = {name: {"test_accuracy": mean_std([r[name]["test_accuracy"] for r in per_seed]),
                      "train_accuracy": mean_std([r[name]["train_accuracy"] for r in per_seed])}
               for name in ("single", "ensemble", "student")}
    differences = {f"{a} - single": paired_difference([r[a]["test_accuracy"] for r in per_seed],
                                                      [r["single"]["test_accuracy"] for r in per_seed])
                   for a in ("ensemble", "student")}
    views = {name: [n for r in per_seed for n in _views_learned(r[name], d.num_classes, cfg.learned_threshold)]
             for name in ("single", "ensemble", "student")}
    return {"dataset": "multiview (synthetic)", "config": cfg.model_dump(mode="json"), "per_seed": per_seed,
            "students": students, "summary": summary, "differences": differences,
            "views_learned": views, "one_view_memorised": _one_view_memorised(per_seed, d.num_classes,
                                                                              cfg.learned_threshold)}


def _measure(predict, train, test, probes, num_classes: int) -> dict[str, Any]:
    """Accuracies: train (all, and per view type), test, and per-feature probes per class."""
    tr_pred, te_pred = predict(train.x).argmax(1), predict(test.x).argmax(1)
    out: dict[str, Any] = {"train_accuracy": float((tr_pred == train.y).float().mean()),
                           "test_accuracy": float((te_pred == test.y).float().mean())}
    # training accuracy of each (class, view) group: a model that did not learn a view but fits these memorised them
    out["train_accuracy_by_class_view"] = {
        f"{c}/{view}": _accuracy(tr_pred, train.y, (train.y == c) & (train.view == v))
        for c in range(num_classes) for v, view in enumerate(("both", "first", "second"))}
    out["probe_accuracy"] = {}
    for view, probe in probes.items():
        pred = predict(probe.x).argmax(1)
        out["probe_accuracy"][view] = [_accuracy(pred, probe.y, probe.y == c) for c in range(num_classes)]
    return out


def _accuracy(pred: Tensor, y: Tensor, mask: Tensor) -> float | None:
    n = int(mask.sum())
    return float((pred[mask] == y[mask]).float().mean()) if n else None


def _feature_correlations(net: PatchSmoothReLUNet, features: Tensor) -> list[list[float]]:
    """max_r <w_{c,r}, v_{c,l}>: how strongly class c's neurons align with each of its own features, [k][2]."""
    with torch.no_grad():
        corr = torch.einsum("cmd,cld->cml", net.weight, features).amax(1)
    return [[round(float(v), 4) for v in row] for row in corr]


def _views_learned(measure: dict[str, Any], num_classes: int, threshold: float) -> list[int]:
    """For each class, how many of its two views the model classifies at >= threshold on the probes."""
    probe = measure["probe_accuracy"]
    return [sum(1 for view in ("first", "second") if probe[view][c] is not None and probe[view][c] >= threshold)
            for c in range(num_classes)]


def _one_view_memorised(per_seed: list[dict[str, Any]], num_classes: int, threshold: float) -> list[bool]:
    """Per (seed, class): the single model learned exactly one view and fits >= 90% of the training samples that
    show only the other (it memorised them)."""
    out = []
    for r in per_seed:
        for c, n_views in enumerate(_views_learned(r["single"], num_classes, threshold)):
            memorised = False
            if n_views == 1:
                probe = r["single"]["probe_accuracy"]
                missing = "first" if (probe["first"][c] or 0) < threshold else "second"
                fitted = r["single"]["train_accuracy_by_class_view"][f"{c}/{missing}"]
                memorised = fitted is None or fitted >= 0.9  # no such training sample: nothing left to memorise
            out.append(memorised)
    return out


# ---------------------------------------------------------------------------------------------------- claims

ALLEN_ZHU = "Allen-Zhu & Li, ICLR 2023"


def _fraction(successes_of, what: str):
    def measure(results: dict[str, Any]) -> Measurement:
        hits = successes_of(results)
        b = binomial_interval(sum(hits), len(hits))
        return Measurement(b["estimate"], b["low"], b["high"], b["n"],
                           "95% Clopper-Pearson interval over (seed, class) pairs",
                           f"{sum(hits)} of {len(hits)} (seed, class) pairs {what}")
    return measure


def claims(cfg: MultiViewStudyConfig) -> list[Claim]:
    """The multi-view claims (Allen-Zhu & Li, ICLR 2023)."""
    thr = f"{cfg.learned_threshold:.0%}"
    return [
        Claim("single_one_view", "a single model learns one feature per class and memorises the rest",
              f"fraction of (seed, class) pairs where the single model classifies probe inputs of exactly one of the "
              f"class's two views at >= {thr} and fits >= 90% of the training samples of the other view",
              Rule(">", 0.5, digits=3), _fraction(lambda r: r["one_view_memorised"], "learned one view and "
                                                                                       "memorised the other"),
              source=ALLEN_ZHU),
        Claim("student_both_views", "KD from the ensemble learns both features",
              f"fraction of (seed, class) pairs where the distilled student classifies probe inputs of both views at "
              f">= {thr}", Rule(">", 0.5, digits=3),
              _fraction(lambda r: [n == 2 for n in r["views_learned"]["student"]], "have both views learned by the "
                                                                                   "student"), source=ALLEN_ZHU),
        Claim("student_beats_single", "KD from the ensemble improves test accuracy over a single model",
              "student - single model, test accuracy, paired over seeds (points)", Rule(">", 0.0, unit="points",
                                                                                          scale=100.0),
              lambda r: paired_measurement(r["differences"]["student - single"]), source=ALLEN_ZHU),
        Claim("ensemble_beats_single", "an ensemble of independently trained networks is more accurate than a single "
              "one", "ensemble - single model, test accuracy, paired over seeds (points)",
              Rule(">", 0.0, unit="points", scale=100.0),
              lambda r: paired_measurement(r["differences"]["ensemble - single"]), source=ALLEN_ZHU),
    ]


# ---------------------------------------------------------------------------------------------------- report


def report(results: dict[str, Any]) -> Report:
    """The multi-view report: claims, accuracies, probes and feature correlations."""
    cfg = results["config"]
    d, net = cfg["data"], cfg["net"]
    per_seed, s = results["per_seed"], results["summary"]
    names = ("single", "ensemble", "student")
    rep = Report("kdlab multi-view study — ensemble and distillation on multi-view data")
    rep.paragraph(
        f"Data (survey section 9; Allen-Zhu & Li, ICLR 2023): {d['num_classes']} classes with two features each; 80% "
        f"of samples show both, 10% only the first, 10% only the second, the other classes' features at "
        f"{d['other_strength']}; {d['num_patches']} patches of dimension {d['patch_dim']}, each feature in "
        f"{d['patches_per_feature']} patch(es), Gaussian noise of norm {d['noise_norm']} per patch; "
        f"{d['n_train']} training samples. Network: F_c(X) = sum_r sum_p ReLU~(<w_c,r, x_p>), {net['neurons']} "
        f"neurons per class, smoothed ReLU with power {net['power']} up to rho = {net['rho']}, init std "
        f"{net['init_std']}. {cfg['members']} members per seed (member 0 is the single model); the student is "
        f"distilled from the mean of their logits with {cfg['loss']}. Seeds {cfg['seeds']}. A view is counted as "
        f"learned when its probe accuracy reaches {cfg['learned_threshold']:.0%}.")
    rep.claims_section(results)
    rep.heading("Accuracy (%), mean ± std over seeds")
    rep.table(["model", "train", "test"], [[n, format_pm(v["train_accuracy"]), format_pm(v["test_accuracy"])]
                                           for n, v in s.items()])
    rep.figure("multiview_accuracy.png", {
        "title": "Single model vs ensemble vs distilled student (mean ± std over seeds)", "size": [4.5, 3.5],
        "panels": [{"type": "bars", "categories": list(names), "ylabel": "test accuracy (%)", "legend": "none",
                    "series": [{"values": [s[n]["test_accuracy"]["mean"] * 100 for n in names],
                                "errors": [s[n]["test_accuracy"]["std"] * 100 for n in names]}]}]},
        "test accuracy")
    rep.heading("Per-feature probes")
    k = d["num_classes"]
    rep.table(["seed", "model"] + [f"class {c} view {v}" for c in range(k) for v in (1, 2)],
              [[r["seed"], name] + [f"{r[name]['probe_accuracy'][v][c] * 100:.0f}" for c in range(k)
                                    for v in ("first", "second")] for r in per_seed for name in names])
    rep.figure("multiview_probes.png", {
        "title": "Which features each model uses (one point per seed and class; top right = both)",
        "size": [4 * len(names), 3.8], "sharey": True,
        "panels": [{"type": "lines", "title": name, "xlabel": "accuracy on view-1-only inputs (%)",
                    "ylabel": "accuracy on view-2-only inputs (%)" if name == "single" else "",
                    "ylim": [-5, 105], "legend": "best" if name == "student" else "none",
                    "series": [{"label": f"class {c}", "style": "o",
                                "x": [r[name]["probe_accuracy"]["first"][c] * 100 for r in per_seed],
                                "y": [r[name]["probe_accuracy"]["second"][c] * 100 for r in per_seed]}
                               for c in range(k)] + [{"x": [0, 100], "y": [0, 100], "style": "-", "color": "#ccc"}]}
                   for name in names]},
        "probe accuracy on single-view inputs")
    rep.paragraph("Feature correlations max_r <w_c,r, v_c,l> (class c, view l) per seed: "
                  + "; ".join(f"seed {r['seed']}: single {r['feature_correlations']['single']}, student "
                              f"{r['feature_correlations']['student']}" for r in per_seed))
    rep.reproduce(results)
    return rep


MULTIVIEW = STUDIES.register("multiview")(Study(
    name="multiview", config=MultiViewStudyConfig, defaults=DEFAULTS, presets=PRESETS, plan=plan, analyse=analyse,
    claims=claims, report=report, check=check_net, description=__doc__.splitlines()[0]))
