"""Distillability audit: how much can a would-be copier learn from a model by distilling it?

``kdlab audit distillability MODEL --out DIR`` (or ``kdlab study audit --set model=MODEL``) trains *probe students*
of several architectures (an MLP and a CNN by default) from the model by KD over a temperature grid and by CE alone,
over paired seeds, plus the attacker's counter-method against undistillable teachers (the skeptical student,
:mod:`kdlab.protect.skeptical`), and reports:

- the model's own test accuracy;
- per probe, the *protection margin*: test accuracy of the best KD student (the temperature chosen on validation
  accuracy) minus the CE-only student's, paired over seeds with a 95% t interval. At or below 0 = the model teaches
  nothing a copier could not learn from the labels (protected); above 0 = knowledge leaks. The *attack margin* is the
  same with the skeptical student competing with the KD students (the method chosen on validation);
- the dark-knowledge statistics that explain it (derived std, non-GT entropy and target probability at several
  temperatures; Fan, Li, Zhan, FCS 2026 / Li et al., NeurIPS 2022, see :mod:`kdlab.analysis.dark_knowledge`), and,
  with ``reference`` (a normally trained model of the same task), the class-affinity consistency between the model
  and the reference (a nasty teacher's wrong-class ranking disagrees with a normal model's).

Claims (one pair per probe) are declared below; their rules are generated into docs/studies/nasty.md.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, field_validator

from ..analysis import affinity_consistency
from ..analysis.profile import profile_model
from ..analysis.stats import mean_std, paired_by_seed
from ..analysis.verdict import Claim, NotApplicable, Rule, decide, paired_measurement, verdict_word
from ..config import Component, DataConfig
from ..distill import resolve_tap
from ..errors import ConfigError
from ..models import create_model, predict_logits
from ..protect.skeptical import SkepticalConfig, SkepticalHeadOptions, SkepticalRunConfig
from ..protect.source import ModelSource, load_splits, model_data_config, resolve_model
from ..report import Report
from ..report.format import format_interval, format_pm, model_name
from ..store import RunStore
from .base import STUDIES
from .common import StageConfig, stage_run_config
from .driver import Planned, RunSet, Study, StudyConfig, Wave, run_study
from .nasty import dark_knowledge_figure


class ProbeConfig(StageConfig):
    """One probe architecture: how its students are trained (a study stage) and where its skeptical head sits."""

    label: str
    # student tap for the skeptical student's auxiliary head; null = the model's first feature tap
    tap: str | None = None


class SkepticalProbe(SkepticalHeadOptions):
    """The skeptical-student attack of the audit (KD into an auxiliary head at ``tap``)."""

    enabled: bool = True
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.9, ge=0, le=1)


class AuditConfig(StudyConfig):
    # the audited model: a kdlab run directory or a .safetensors weights file
    """The audit's config: the model (and a reference), the probes, the KD temperatures and the skeptical attack."""
    model: str
    # overrides of the data section the model was trained on (name, val_size, seed, data_dir, options)
    data: dict[str, Any] = Field(default_factory=dict)
    probes: list[ProbeConfig] = Field(min_length=1)
    temperatures: list[float] = Field(default_factory=lambda: [1.0, 4.0, 8.0], min_length=1)
    alpha: float = Field(0.9, ge=0, le=1)
    skeptical: SkepticalProbe = Field(default_factory=SkepticalProbe)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    # a normally trained model of the same task (run dir or weights): affinity consistency against it
    reference: str | None = None
    profile_temperatures: list[float] = Field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0], min_length=1)

    @field_validator("probes")
    @classmethod
    def _unique_labels(cls, probes: list[ProbeConfig]) -> list[ProbeConfig]:
        labels = [p.label for p in probes]
        if len(set(labels)) != len(labels):
            raise ValueError(f"probe labels must be unique: {labels}")
        return probes

    @field_validator("temperatures", "profile_temperatures")
    @classmethod
    def _positive(cls, temps: list[float]) -> list[float]:
        if any(not (t > 0 and math.isfinite(t)) for t in temps) or len(set(temps)) != len(temps):
            raise ValueError(f"temperatures must be distinct finite numbers > 0: {temps}")
        return temps


AUDIT_DEFAULTS: dict[str, Any] = {
    # Two copier architectures on a 2,000-image labelled subset (the regime where soft labels matter most, so a
    # teacher that leaks knowledge shows it clearly): a 2-hidden-layer MLP and a small CNN.
    "probes": [
        {"label": "mlp", "model": {"name": "mlp", "width": 128, "depth": 2}, "tap": "hidden1", "epochs": 20,
         "train_subset": 2000, "optim": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "cosine"}},
        {"label": "cnn", "model": {"name": "cnn", "width": 0.5, "depth": 2}, "tap": "stage1", "epochs": 10,
         "train_subset": 2000, "optim": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "cosine"}},
    ],
    "temperatures": [1.0, 4.0, 8.0],
    "seeds": [0, 1, 2],
}

AUDIT_PRESETS: dict[str, dict[str, Any]] = {
    # every method once (CE, KD at each temperature, skeptical) for each probe; one seed, a tiny budget
    "quick": {"probes": [
        {"label": "mlp", "model": {"name": "mlp", "width": 64, "depth": 2}, "tap": "hidden1", "epochs": 3,
         "train_subset": 500},
        {"label": "cnn", "model": {"name": "cnn", "width": 0.25, "depth": 2}, "tap": "stage1", "epochs": 2,
         "train_subset": 500},
    ], "seeds": [0]},
}


def first_tap(model: Component, num_classes: int, in_shape: Any) -> str:
    """The shallowest feature tap of ``model`` (kdlab models list their taps shallow to deep)."""
    built = create_model(model.name, num_classes, in_shape, **model.options)
    taps = list(getattr(built, "feature_taps", {}))
    if not taps:
        raise ConfigError(f"model '{model.name}' has no feature taps; set the probe's 'tap' to a module path")
    return taps[0]


def kd_label(temperature: float) -> str:
    """Method label of a KD probe student at this temperature, e.g. ``kd_T4``."""
    return f"kd_T{temperature:g}"


def skeptical_label(temperature: float) -> str:
    """Method label of a skeptical probe student at this temperature, e.g. ``skeptical_T4``."""
    return f"skeptical_T{temperature:g}"


def profile_models(source: ModelSource, reference: ModelSource | None, data_cfg: DataConfig,
                   temperatures: list[float]) -> dict[str, Any]:
    """Test accuracy, dark-knowledge statistics (train and test splits) and affinity of the model and the reference."""
    splits = load_splits(data_cfg)
    out: dict[str, Any] = {"class_names": list(splits.class_names)}
    affinities = {}
    for role, src in (("model", source), ("reference", reference)):
        if src is None:
            continue
        model = src.load()
        train_metrics, _ = profile_model(model, splits.train.x, splits.train.y, splits.num_classes, temperatures)
        test_metrics, test_affinity = profile_model(model, splits.test.x, splits.test.y, splits.num_classes,
                                                    temperatures)
        affinities[role] = test_affinity
        out[role] = {"source": src.source, "weights": str(src.weights), "label": src.label, "spec": src.spec,
                     "params": sum(p.numel() for p in model.parameters()),
                     "test_accuracy": test_metrics["accuracy"], "train": _summary_metrics(train_metrics),
                     "test": _summary_metrics(test_metrics), "affinity": test_affinity.tolist()}
    if "reference" in affinities:
        out["affinity_consistency"] = affinity_consistency(affinities["model"], affinities["reference"])
        out["kl_to_reference"] = mean_kl_on(source, reference, splits.test.x, temperatures)
    return out


def _summary_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    per_t = metrics["per_temperature"]
    return {"accuracy": metrics["accuracy"], "ece": metrics["ece"], "inherent_variance": metrics["inherent_variance"],
            **{name: {t: v[name] for t, v in per_t.items()}
               for name in ("derived_std", "derived_average", "nongt_entropy", "target_prob")}}


@torch.inference_mode()
def mean_kl_on(a: ModelSource, b: ModelSource, x: torch.Tensor, temperatures: list[float]) -> dict[str, float]:
    """Mean over samples of tau^2 * KL(softmax(z_a / tau) || softmax(z_b / tau)) per temperature (as the nasty loss)."""
    za, zb = predict_logits(a.load(), x), predict_logits(b.load(), x)
    out = {}
    for t in temperatures:
        log_p, log_q = torch.log_softmax(za / t, -1), torch.log_softmax(zb / t, -1)
        out[str(float(t))] = float(t * t * (log_p.exp() * (log_p - log_q)).sum(-1).mean())
    return out


def plan(cfg: AuditConfig, store: RunStore) -> list[Wave]:
    """Per probe and seed: the CE student, a KD student per temperature and (if enabled) the skeptical student."""
    source = resolve_model(cfg.model, "model")
    if cfg.reference:
        resolve_model(cfg.reference, "reference")
    data = model_data_config(source, cfg.data)
    num_classes, in_shape = int(source.spec["num_classes"]), source.spec["in_shape"]
    teacher = source.teacher_config()
    runs = []
    for probe in cfg.probes:
        stage = StageConfig(**{k: getattr(probe, k) for k in StageConfig.model_fields})
        tap = probe.tap or first_tap(probe.model, num_classes, in_shape)
        for seed in cfg.seeds:
            runs.append(Planned({"probe": probe.label, "method": "ce", "seed": seed},
                                stage_run_config(stage, data, seed)))
            for t in cfg.temperatures:
                loss = Component(name="kd", temperature=t, alpha=cfg.alpha)
                runs.append(Planned({"probe": probe.label, "method": kd_label(t), "seed": seed},
                                    stage_run_config(stage, data, seed, loss=loss).model_copy(
                                        update={"teacher": teacher})))
            if cfg.skeptical.enabled:
                sk = cfg.skeptical
                loss = Component(name="kd", temperature=sk.temperature, alpha=sk.alpha)
                run = stage_run_config(stage, data, seed, loss=loss).model_copy(update={"teacher": teacher})
                runs.append(Planned({"probe": probe.label, "method": skeptical_label(sk.temperature), "seed": seed},
                                    SkepticalRunConfig(run=run, skeptical=SkepticalConfig(tap=tap,
                                                                                        **sk.head_options()))))
    return [Wave("probe students", runs)]


def check_taps(cfg: AuditConfig, planned: list[Planned]) -> None:
    """Every skeptical tap exists in its probe model (before any training)."""
    source = resolve_model(cfg.model, "model")
    num_classes, in_shape = int(source.spec["num_classes"]), source.spec["in_shape"]
    seen = set()
    for p in planned:
        if not isinstance(p.job, SkepticalRunConfig):
            continue
        key = (repr(p.job.run.model.as_dict()), p.job.skeptical.tap)
        if key in seen:
            continue
        seen.add(key)
        built = create_model(p.job.run.model.name, num_classes, in_shape, **p.job.run.model.options)
        try:
            resolve_tap(built, p.job.skeptical.tap)
        except ConfigError as exc:
            raise ConfigError(f"probes: tap={p.job.skeptical.tap!r}: {exc}") from None


def _choose(table: dict[str, Any], methods: list[str]) -> str:
    """The method with the best mean validation accuracy (the copier's choice; never the test split)."""
    return max(methods, key=lambda m: table[m]["val_accuracy"]["mean"])


def analyse(cfg: AuditConfig, runs: RunSet) -> dict[str, Any]:
    """Per-probe tables (validation and test accuracy, minus CE), the margins of the methods chosen on validation,
    the model's profile and students."""
    source = resolve_model(cfg.model, "model")
    reference = resolve_model(cfg.reference, "reference") if cfg.reference else None
    data = model_data_config(source, cfg.data)
    profiles = profile_models(source, reference, data, cfg.profile_temperatures)
    kd_methods = [kd_label(t) for t in cfg.temperatures]
    sk_method = [skeptical_label(cfg.skeptical.temperature)] if cfg.skeptical.enabled else []
    probes: dict[str, Any] = {}
    for probe in cfg.probes:
        ce = runs.by_seed("test_accuracy", probe=probe.label, method="ce")
        table = {}
        for m in [*kd_methods, *sk_method]:
            test = runs.by_seed("test_accuracy", probe=probe.label, method=m)
            val = runs.by_seed("val_accuracy", probe=probe.label, method=m)
            table[m] = {"test_accuracy": mean_std(list(test.values())), "val_accuracy": mean_std(list(val.values())),
                        "minus_ce": paired_by_seed(test, ce)}
        best_kd, best_attack = _choose(table, kd_methods), _choose(table, [*kd_methods, *sk_method])
        probes[probe.label] = {
            "model": probe.model.as_dict(), "ce": mean_std(list(ce.values())), "methods": table,
            "best_kd": best_kd, "protection_margin": table[best_kd]["minus_ce"],
            "best_attack": best_attack, "attack_margin": table[best_attack]["minus_ce"],
        }
        for key in ("protection", "attack"):
            margin = probes[probe.label][f"{key}_margin"]
            probes[probe.label][f"{key}_verdict"] = verdict_word(decide(PROTECTED_RULE, margin["low"],
                                                                        margin["high"]))
    students = [{"teacher": None if r.tags["method"] == "ce" else source.label, "probe": r.tags["probe"],
                 "method": r.tags["method"],
                 "hyperparams": (r.job.run if isinstance(r.job, SkepticalRunConfig) else r.job).loss.as_dict(),
                 "seed": r.tags["seed"], "test_accuracy": r.test_accuracy, "val_accuracy": r.val_accuracy,
                 "run_dir": r.run_dir} for r in runs.runs]
    return {
        "dataset": data.name,
        "config": cfg.model_dump(mode="json"),
        "data": data.model_dump(mode="json"),
        "model": profiles["model"],
        "reference": profiles.get("reference"),
        "affinity_consistency": profiles.get("affinity_consistency"),
        "kl_to_reference": profiles.get("kl_to_reference"),
        "class_names": profiles["class_names"],
        "probes": probes,
        "students": students,
    }


# ---------------------------------------------------------------------------------------------------- claims

POINTS = {"unit": "points", "scale": 100.0}
VALIDATION = "validation accuracy (mean over seeds)"
# protected: the chosen student is not better than the CE-only student
PROTECTED_RULE = Rule("<=", 0.0, **POINTS)


def _margin(probe: str, key: str):
    def measure(results: dict[str, Any]):
        p = results["probes"][probe]
        best = p[f"best_{'kd' if key == 'protection' else 'attack'}"]
        if p[f"{key}_margin"]["n"] == 0:
            return NotApplicable(f"probe {probe} has no seed with both students")
        context = "validation accuracy: " + ", ".join(f"{m} {v['val_accuracy']['mean'] * 100:.2f}%"
                                                      for m, v in p["methods"].items())
        return paired_measurement(p[f"{key}_margin"], context, {f"{probe} method": best}, VALIDATION)
    return measure


def claims(cfg: AuditConfig) -> list[Claim]:
    """Per probe: the model resists plain KD; and (with the skeptical attack) it resists the counter-attack."""
    out = []
    for probe in cfg.probes:
        out.append(Claim(
            f"resists_kd_{probe.label}", f"the model resists plain KD: the {probe.label} probe distilled from it "
            "does not beat its CE-only student",
            f"best KD student (temperature chosen on validation) - CE student, {probe.label} probe, test accuracy, "
            "paired over seeds (points)", PROTECTED_RULE, _margin(probe.label, "protection"),
            selection=f"the KD temperature with the best {VALIDATION}", source="Ma et al., ICLR 2021"))
        if cfg.skeptical.enabled:
            out.append(Claim(
                f"resists_attack_{probe.label}", f"the model also resists the skeptical-student counter-attack "
                f"({probe.label} probe)",
                f"best of the KD and skeptical students (chosen on validation) - CE student, {probe.label} probe, "
                "test accuracy, paired over seeds (points)", PROTECTED_RULE, _margin(probe.label, "attack"),
                selection=f"the method with the best {VALIDATION}", source="Kundu et al., NeurIPS 2021"))
    return out


# ---------------------------------------------------------------------------------------------------- report


def report(results: dict[str, Any]) -> Report:
    """The audit report: claims, protection by probe, per-probe tables, dark knowledge and figures."""
    cfg = results["config"]
    m = results["model"]
    rep = Report(f"kdlab distillability audit — {m['label']}")
    rep.paragraph(
        f"Model: {m['source']} ({m['label']}, {m['params']:,} parameters), test accuracy "
        f"{m['test_accuracy'] * 100:.2f}% on {results['dataset']}. Probe students of {len(results['probes'])} "
        f"architectures are trained from it by KD (T in {cfg['temperatures']}, alpha {cfg['alpha']:g}), by CE alone, "
        f"and (if enabled) as skeptical students (the counter-attack against nasty teachers), seeds {cfg['seeds']}, "
        "paired.")
    rep.paragraph("Protection margin = best KD student - CE-only student (paired, points); at or below 0 means a "
                  "copier learns nothing from the model beyond the labels. Attack margin = the same with the "
                  "skeptical student competing. The best temperature and method are chosen on validation accuracy, "
                  "as a copier would; the margins are then read on test.")
    rep.claims_section(results)
    rep.heading("Protection by probe")
    rep.table(["probe", "CE (%)", "best KD", "protection margin", "verdict", "best attack", "attack margin",
               "verdict"],
              [[label, format_pm(p["ce"]), p["best_kd"], format_interval(p["protection_margin"]),
                p["protection_verdict"], p["best_attack"], format_interval(p["attack_margin"]), p["attack_verdict"]]
               for label, p in results["probes"].items()])
    for label, p in results["probes"].items():
        rep.heading(f"Probe '{label}': {model_name(p['model'])}", level=3)
        rep.table(["method", "val acc (%)", "test acc (%)", "minus CE"],
                  [["ce", "—", format_pm(p["ce"]), "—"]]
                  + [[k, format_pm(v["val_accuracy"]), format_pm(v["test_accuracy"]), format_interval(v["minus_ce"])]
                     for k, v in p["methods"].items()])
    rep.heading("Dark knowledge (test split)")
    rows = []
    for role in ("model", "reference"):
        r = results.get(role)
        if not r:
            continue
        for t in sorted(r["test"]["derived_std"], key=float):
            rows.append([role, t, f"{r['test']['derived_std'][t]:.4f}", f"{r['test']['nongt_entropy'][t]:.3f}",
                         f"{r['test']['target_prob'][t]:.3f}"])
    rep.table(["model", "tau", "derived std", "non-GT entropy", "target prob"], rows)
    if results.get("affinity_consistency"):
        ac = results["affinity_consistency"]
        kl = results["kl_to_reference"]
        rep.paragraph(f"Against the reference model: affinity Spearman {ac['spearman']}, Kendall {ac['kendall']}, "
                      f"top-{ac['top_k']} overlap {ac['topk_overlap']}; tau^2 KL(model || reference) by tau: "
                      + ", ".join(f"{t}: {v:.3f}" for t, v in kl.items()) + ".")
    for label, p in results["probes"].items():
        keys = ["ce", *p["methods"]]
        stats = [p["ce"], *(p["methods"][k]["test_accuracy"] for k in p["methods"])]
        rep.figure(f"probe_{label}.png", {"title": f"Probe '{label}': students of the audited model",
                                          "size": [max(4, 1.2 * len(keys)), 3.5], "panels": [{
                                              "type": "bars", "categories": keys, "legend": "none",
                                              "ylabel": "student test accuracy (%)",
                                              "series": [{"values": [s["mean"] * 100 for s in stats],
                                                          "errors": [s["std"] * 100 for s in stats]}]}]},
                   f"probe {label}")
    series = {"model": results["model"]["test"]}
    if results.get("reference"):
        series["reference"] = results["reference"]["test"]
    rep.figure("dark_knowledge.png", dark_knowledge_figure(series, "Dark knowledge on the test split"),
               "dark knowledge")
    rep.reproduce(results)
    return rep


AUDIT = STUDIES.register("audit")(Study(
    name="audit", config=AuditConfig, defaults=AUDIT_DEFAULTS, presets=AUDIT_PRESETS, plan=plan, analyse=analyse,
    claims=claims, report=report, check=check_taps, description=__doc__.splitlines()[0]))


def audit_distillability(model: str | Path, out: str | Path, preset: str | None = None,
                         overrides: list[str] | tuple[str, ...] = (), progress: bool | None = None) -> dict[str, Any]:
    """Audit how well ``model`` (a kdlab run directory or weights file) resists distillation; write results.json,
    plots, report.md and report.html into ``out``. ``overrides``: ``key=value`` strings over the defaults (see
    :class:`AuditConfig`; e.g. ``reference=runs/normal``, ``seeds=[0,1]``). Returns the results."""
    return run_study(AUDIT, out=out, preset=preset, overrides=[f"model={json.dumps(str(model))}", *overrides],
                     progress=progress)
