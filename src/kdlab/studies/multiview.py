"""Multi-view study: a single network learns one feature per class, an ensemble learns them all, KD passes them on.

The survey's section 9, after Allen-Zhu & Li, "Towards Understanding Ensemble, Knowledge Distillation and
Self-Distillation in Deep Learning", ICLR 2023. On multi-view data (``kdlab.data.multiview``: two features per class,
80% of samples show both, 10% only the first, 10% only the second) a network trained from random initialisation
picks up one feature per class (whichever wins the race from its initial weights) and memorises the single-view
samples that lack it, through their noise; independently initialised networks pick different features, so their
ensemble uses both; a student distilled from the ensemble's logits learns both and is more accurate at test time.

Recipe per seed: data -> M members trained with CE from independent initialisations (member 0 is "the single
model") -> ensemble = mean of the members' logits -> a student (member 0's architecture, its own initialisation)
distilled from the ensemble's logits on the training inputs (``Distiller(teacher_logits=...)`` + ``kdlab.train.fit``)
-> test accuracy and per-feature probes for the single model, the ensemble and the student -> paired differences
over seeds -> claims (rules in docs/studies/multiview.md) -> results.json, plots, report.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from torch import Tensor, nn

from ..config import Component, Section
from .base import STUDIES
from .common import finish_study, load_study_config
from ..analysis.stats import mean_std, paired_difference
from ..report.format import format_interval
from .theory import TrainStage, fit_in_memory

log = logging.getLogger("kdlab")


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
    neurons: int = Field(4, ge=1)
    rho: float = Field(1.0, gt=0)
    power: int = Field(4, ge=2)
    init_std: float = Field(0.05, gt=0)


class MultiViewStudyConfig(Section):
    data: MultiViewDataConfig = Field(default_factory=MultiViewDataConfig)
    net: NetConfig = Field(default_factory=NetConfig)
    train: TrainStage
    members: int = Field(5, ge=2)
    loss: Component = Field(default_factory=lambda: Component(name="kd", temperature=4.0, alpha=0.9))
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4], min_length=1)
    # a view is "learned" when the probe accuracy on inputs carrying only that view reaches this
    learned_threshold: float = Field(0.9, gt=0.5, le=1)
    # torch intra-op threads (None: leave as is). The networks are tiny: one thread is as fast on idle cores and far
    # faster on busy ones, where two threads contend
    num_threads: int | None = Field(1, ge=1)


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


@STUDIES.register("multiview")
def run_multiview(config: str | Path | None = None, out: str | Path = "runs/multiview", preset: str | None = None,
                  overrides: list[str] | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Run the multi-view study; write results.json, plots, report.md and report.html into ``out``."""
    from ..data.multiview import MultiViewData
    from ..data.seeding import derive_seed, generator_for
    from ..models import predict_logits

    cfg: MultiViewStudyConfig = load_study_config(MultiViewStudyConfig, DEFAULTS, PRESETS, config, preset,
                                                  list(overrides or []))
    _build_net(cfg)  # fail on bad network options before any data or training
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out = Path(out)
    started = time.perf_counter()
    counter = {"trained": 0, "reused": 0}
    d = cfg.data
    per_seed, students = [], []
    for seed in cfg.seeds:
        data = MultiViewData(d.num_classes, d.num_patches, d.patch_dim, d.patches_per_feature,
                             noise_std=d.noise_norm / math.sqrt(d.patch_dim), other_strength=d.other_strength,
                             seed=seed)
        train = data.sample(d.n_train, generator_for(seed, "multiview-train"))
        test = data.sample(d.n_test, generator_for(seed, "multiview-test"))
        probes = {view: data.probe(d.probe_per_class, view, generator_for(seed, "multiview-probe", view))
                  for view in ("first", "second")}
        members = []
        for j in range(cfg.members):
            torch.manual_seed(derive_seed(seed, "member", j))
            net = _build_net(cfg)
            fit_in_memory(net, train.x, train.y, cfg.train, derive_seed(seed, "member-batches", j), out / "runs",
                          f"seed{seed}-member{j}", counter, progress=progress)
            members.append(net)
        ensemble_train = torch.stack([predict_logits(m, train.x) for m in members]).mean(0)
        torch.manual_seed(derive_seed(seed, "student"))
        student = _build_net(cfg)
        run_dir = fit_in_memory(student, train.x, train.y, cfg.train, derive_seed(seed, "student-batches"),
                                out / "runs", f"seed{seed}-student", counter, loss=cfg.loss,
                                teacher_logits=ensemble_train, progress=progress)
        models = {"single": lambda x, m=members[0]: predict_logits(m, x),
                  "ensemble": lambda x: torch.stack([predict_logits(m, x) for m in members]).mean(0),
                  "student": lambda x: predict_logits(student, x)}
        record: dict[str, Any] = {"seed": seed, "members": []}
        for name, predict in models.items():
            record[name] = _measure(predict, train, test, probes, d.num_classes)
        for j, m in enumerate(members):
            record["members"].append(_measure(lambda x, m=m: predict_logits(m, x), train, test, probes,
                                              d.num_classes))
        record["feature_correlations"] = {
            "single": _feature_correlations(members[0], data.features),
            "student": _feature_correlations(student, data.features)}
        per_seed.append(record)
        students.append({"teacher": f"ensemble of {cfg.members}", "method": "kd", "hyperparams": cfg.loss.as_dict(),
                         "seed": seed, "test_accuracy": record["student"]["test_accuracy"], "run_dir": str(run_dir)})
        log.info("seed %d: single %.4f, ensemble %.4f, student %.4f", seed, record["single"]["test_accuracy"],
                 record["ensemble"]["test_accuracy"], record["student"]["test_accuracy"])

    results: dict[str, Any] = {"study": "multiview", "dataset": "multiview (synthetic)",
                               "config": cfg.model_dump(mode="json"), "per_seed": per_seed, "students": students}
    results["summary"] = {name: {"test_accuracy": mean_std([r[name]["test_accuracy"] for r in per_seed]),
                                 "train_accuracy": mean_std([r[name]["train_accuracy"] for r in per_seed])}
                          for name in ("single", "ensemble", "student")}
    results["claims"] = _claims(cfg, per_seed)
    from ..report.theory import write_multiview_report

    return finish_study(results, out, started, counter["trained"], counter["reused"],
                        write_multiview_report, _print_summary)


def _build_net(cfg: MultiViewStudyConfig) -> PatchSmoothReLUNet:
    n = cfg.net
    return PatchSmoothReLUNet(cfg.data.num_classes, cfg.data.patch_dim, n.neurons, n.rho, n.power, n.init_std)


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


def _claims(cfg: MultiViewStudyConfig, per_seed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each claim with a verdict by a rule fixed in advance (docs/studies/multiview.md)."""
    k, thr = cfg.data.num_classes, cfg.learned_threshold
    pairs = one_and_memorised = 0
    for r in per_seed:
        for c, n_views in enumerate(_views_learned(r["single"], k, thr)):
            pairs += 1
            if n_views == 1:
                probe = r["single"]["probe_accuracy"]
                missing = "first" if (probe["first"][c] or 0) < thr else "second"
                fitted = r["single"]["train_accuracy_by_class_view"][f"{c}/{missing}"]
                if fitted is None or fitted >= 0.9:  # no such training sample: nothing left to memorise
                    one_and_memorised += 1
    frac_single = one_and_memorised / pairs
    train_acc = mean_std([r["single"]["train_accuracy"] for r in per_seed])
    claims = [{
        "claim": "a single model learns one feature per class and memorises the rest",
        "holds": True if frac_single >= 2 / 3 else (False if frac_single < 1 / 3 else None),
        "evidence": f"in {one_and_memorised} of {pairs} (seed, class) pairs the single model classifies probe inputs "
                    f"of exactly one of the class's two views at >= {thr:.0%} and fits >= 90% of the training "
                    f"samples of the other view; its training accuracy is {train_acc['mean'] * 100:.1f}% and test "
                    f"accuracy {mean_std([r['single']['test_accuracy'] for r in per_seed])['mean'] * 100:.1f}% (rule: "
                    "holds if the fraction is >= 2/3, does not hold if < 1/3)",
    }]
    both = sum(1 for r in per_seed for n in _views_learned(r["student"], k, thr) if n == 2)
    frac_student = both / pairs
    diff = paired_difference([r["student"]["test_accuracy"] for r in per_seed],
                             [r["single"]["test_accuracy"] for r in per_seed])
    if frac_student < 1 / 3 or diff["mean"] <= 0:
        holds: bool | None = False
    elif frac_student >= 2 / 3 and diff["n"] > 1 and diff["low"] > 0:
        holds = True
    else:
        holds = None
    ens_both = sum(1 for r in per_seed for n in _views_learned(r["ensemble"], k, thr) if n == 2)
    claims.append({
        "claim": "KD from the ensemble learns both features and improves test accuracy",
        "holds": holds,
        "evidence": f"the student classifies both views at >= {thr:.0%} in {both} of {pairs} (seed, class) pairs "
                    f"(the ensemble in {ens_both}, the single model in "
                    f"{sum(1 for r in per_seed for n in _views_learned(r['single'], k, thr) if n == 2)}); student - "
                    f"single model test accuracy = {format_interval(diff)} points (paired over {diff['n']} seeds, 95% "
                    "t interval; rule: holds if both views in >= 2/3 of pairs and the interval is above 0, does not "
                    "hold if < 1/3 of pairs or the mean difference <= 0)",
    })
    ens = paired_difference([r["ensemble"]["test_accuracy"] for r in per_seed],
                            [r["single"]["test_accuracy"] for r in per_seed])
    claims.append({
        "claim": "an ensemble of independently trained networks is more accurate than a single one",
        "holds": False if ens["mean"] <= 0 else (True if ens["n"] > 1 and ens["low"] > 0 else None),
        "evidence": f"ensemble of {cfg.members} - single model test accuracy = {format_interval(ens)} points "
                    "(paired over seeds, 95% t interval; rule: holds if the interval is above 0, does not hold if the "
                    "mean difference <= 0)",
    })
    return claims


def _print_summary(results: dict[str, Any], out: Path) -> None:
    for name, s in results["summary"].items():
        print(f"  {name:<9} train {s['train_accuracy']['mean'] * 100:6.2f}%  "
              f"test {s['test_accuracy']['mean'] * 100:6.2f}"
              f" ± {s['test_accuracy']['std'] * 100:.2f}%")
    for r in results["per_seed"]:
        print(f"  seed {r['seed']}: probe accuracy (class: view 1 / view 2) single {_probe_text(r['single'])}; "
              f"ensemble {_probe_text(r['ensemble'])}; student {_probe_text(r['student'])}")
    for claim in results["claims"]:
        print(f"claim [{ {True: 'holds', False: 'does not hold', None: 'undecided'}[claim['holds']] }] "
              f"{claim['claim']}: {claim['evidence']}")
    print(f"\nresults: {out / 'results.json'}   report: {out / 'report.html'}")


def _probe_text(measure: dict[str, Any]) -> str:
    p = measure["probe_accuracy"]
    return " ".join(f"c{c}: {p['first'][c] * 100:.0f}/{p['second'][c] * 100:.0f}%" for c in range(len(p["first"])))
