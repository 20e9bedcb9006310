"""Distillability audit: how much can a would-be copier learn from a model by distilling it?

``audit_distillability(model, out)`` trains *probe students* of several architectures (an MLP and a CNN by default)
from the model by KD over a temperature grid and by CE alone, over paired seeds, plus the attacker's counter-method
against undistillable teachers (the skeptical student, :mod:`kdlab.protect.skeptical`), and reports:

- the model's own test accuracy;
- per probe, the *protection margin*: accuracy of the best KD student (best temperature by mean) minus accuracy of
  the CE-only student, as a paired difference over seeds with a 95% t interval. Negative or zero = the model teaches
  nothing a copier could not learn from the labels (protected); positive = knowledge leaks. The *attack margin* is
  the same with the skeptical student competing with the KD students (the attacker picks the best method);
- the dark-knowledge statistics that explain it (derived std, non-GT entropy and target probability at several
  temperatures; Fan, Li, Zhan, FCS 2026 / Li et al., NeurIPS 2022, see :mod:`kdlab.analysis.dark_knowledge`), and,
  with ``reference`` (a normally trained model of the same task), the class-affinity consistency between the model
  and the reference (a nasty teacher's wrong-class ranking disagrees with a normal model's).

Choosing the best temperature by mean accuracy selects upwards: the margin is optimistic for the attacker, which is
the side an owner should err on. Decision rules are in docs/studies/nasty.md.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, field_validator
from torch import nn

from ..config import Component, DataConfig, RunConfig, Section, TeacherConfig, parse_config, read_yaml
from ..errors import ConfigError
from ..io import read_safetensors_metadata
from ..studies.common import StageConfig
from ..validate import check_components
from .skeptical import SkepticalHeadOptions

log = logging.getLogger("kdlab")

PROTECTED = "protected.json"  # written by protect_nasty into its run dir: names the exported (protected) weights


# --------------------------------------------------------------------------------------------- the model


@dataclass
class ModelSource:
    """A model to audit or to use as teacher/adversary: its weights file, spec, and (when known) its run's config."""

    source: str
    weights: Path
    spec: dict[str, Any]
    run_config: RunConfig | None
    dataset: str | None
    run_dir: Path | None

    @property
    def label(self) -> str:
        """A short name for tables: the model name and its capacity options."""
        options = ",".join(f"{k}={v}" for k, v in self.spec.items() if k not in ("name", "num_classes", "in_shape"))
        return f"{self.spec.get('name', '?')}({options})"

    def teacher_config(self) -> TeacherConfig:
        """How a distillation run loads this model as its (frozen) teacher: ``run`` for a run's best weights, else
        ``model`` + ``weights`` (e.g. the protected last-epoch weights of a nasty run)."""
        if self.run_dir is not None and self.weights == self.run_dir / "checkpoints" / "best.safetensors":
            return TeacherConfig(run=str(self.run_dir))
        if "pruned_from" in self.spec or "lowrank_from" in self.spec:
            raise ConfigError(f"model '{self.source}': a compressed model's weights file cannot be used as a teacher "
                              f"directly; pass its run directory instead")
        options = {k: v for k, v in self.spec.items() if k not in ("num_classes", "in_shape")}
        return TeacherConfig(model=Component(**options), weights=str(self.weights))

    def model_component(self) -> Component:
        """The model spec as a RunConfig ``model`` section (without num_classes / in_shape)."""
        if self.run_config is not None:
            return self.run_config.model
        return Component(**{k: v for k, v in self.spec.items() if k not in ("num_classes", "in_shape")})

    def load(self) -> nn.Module:
        """The model with its weights, in eval mode."""
        from ..models import load_model_weights

        model = load_model_weights(self.weights)
        model.eval()
        return model


def resolve_model(source: str | Path, key: str = "model") -> ModelSource:
    """A kdlab run directory or a ``.safetensors`` weights file with the model spec in its metadata.

    A run directory gives its best-validation weights, except a directory made by ``kdlab protect nasty``
    (holding ``protected.json``), which gives the protected (last-epoch) weights it names. A weights file inside a
    run's ``checkpoints/`` folder also picks up that run's config (for the data it was trained on).
    Raises ConfigError naming ``key`` and the value when neither exists or the file has no model spec.
    """
    from ..recipe import CONFIG

    path = Path(source)
    run_dir: Path | None = None
    if path.is_dir():
        run_dir = path
        protected = path / PROTECTED
        if protected.is_file():
            weights = Path(json.loads(protected.read_text())["weights"])
        else:
            weights = path / "checkpoints" / "best.safetensors"
        if not weights.is_file():
            raise ConfigError(f"{key}='{source}' is a directory without trained weights ({weights} is missing); "
                              f"allowed: a finished kdlab run directory or a .safetensors weights file")
    elif path.is_file():
        weights = path
        if path.parent.name == "checkpoints" and (path.parent.parent / CONFIG).is_file():
            run_dir = path.parent.parent
    else:
        raise ConfigError(f"{key}='{source}' does not exist; allowed: a finished kdlab run directory or a "
                          f".safetensors weights file written by kdlab")
    try:
        meta = read_safetensors_metadata(weights)
    except Exception as exc:  # noqa: BLE001  (any unreadable file is the user's input problem)
        raise ConfigError(f"{key}='{source}': '{weights}' is not a readable safetensors file ({exc})") from None
    if "model_spec" not in meta:
        raise ConfigError(f"{key}='{source}': '{weights}' has no kdlab model spec in its metadata; allowed: weights "
                          f"saved by kdlab (checkpoints/best.safetensors or last.safetensors of a run)")
    spec = json.loads(meta["model_spec"])
    run_config = _read_run_config(run_dir) if run_dir is not None else None
    return ModelSource(str(source), weights, spec, run_config, meta.get("dataset"), run_dir)


def _read_run_config(run_dir: Path) -> RunConfig | None:
    """The RunConfig of a run directory (the ``run`` part of a skeptical run), or None."""
    from ..recipe import CONFIG

    path = run_dir / CONFIG
    if not path.is_file():
        return None
    try:
        raw = read_yaml(path)  # bounded aliases, no duplicate keys: a run directory is input too
    except ConfigError:
        return None
    if isinstance(raw, dict) and "skeptical" in raw and "run" in raw:
        raw = raw["run"]
    try:
        return RunConfig.model_validate(raw)
    except ValueError:
        return None


def model_data_config(source: ModelSource, overrides: dict[str, Any], key: str = "data") -> DataConfig:
    """The data the model was trained on (its run's data section, else its metadata's dataset), with ``overrides``.

    The model's ``train_subset`` and augmentation are dropped: they describe how the model was trained, not the
    data a copier distils on (each probe stage sets its own).
    """
    if source.run_config is not None:
        base = source.run_config.data.model_dump(mode="json")
    elif source.dataset is not None:
        base = {"name": source.dataset}
    else:
        base = {}
    base.update({"train_subset": None, "crop_padding": 0, "hflip": False})
    if "name" not in base and "name" not in overrides:
        raise ConfigError(f"{key}.name is missing: the model '{source.source}' does not say which dataset it was "
                          f"trained on; set it, e.g. --set {key}.name=fashion_mnist")
    try:
        return parse_config({**base, **overrides}, DataConfig)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def load_splits(data: DataConfig, train_subset: int | None = None) -> Any:
    """The dataset splits of ``data`` (with ``train_subset``), normalised as every run on it."""
    from ..data import load_dataset

    return load_dataset(data.name, data_dir=data.data_dir, val_size=data.val_size, seed=data.seed,
                        train_subset=train_subset, **data.options)


# --------------------------------------------------------------------------------------------- the audit config


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


class AuditConfig(Section):
    # run store shared between studies (content-addressed); default: <out>/runs
    store: str | None = None
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


def load_audit_config(preset: str | None, overrides: list[str] | tuple[str, ...]) -> AuditConfig:
    """Defaults <- preset <- ``key=value`` overrides, validated (ConfigError names the key)."""
    from ..studies.common import load_study_config

    return load_study_config(AuditConfig, AUDIT_DEFAULTS, AUDIT_PRESETS, None, preset, list(overrides))


# --------------------------------------------------------------------------------------------- probes


def probe_stage(probe: ProbeConfig) -> Any:
    """The probe as a plain study StageConfig (without its label and tap)."""
    from ..studies.common import StageConfig

    return StageConfig(**{k: getattr(probe, k) for k in StageConfig.model_fields})


def first_tap(model: Component, num_classes: int, in_shape: Any) -> str:
    """The shallowest feature tap of ``model`` (kdlab models list their taps shallow to deep)."""
    from ..models import create_model

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


def audit_distillability(model: str | Path, out: str | Path, preset: str | None = None,
                         overrides: list[str] | tuple[str, ...] = (), progress: bool | None = None) -> dict[str, Any]:
    """Audit how well ``model`` resists distillation; write results.json, plots, report.md and report.html into ``out``.

    ``model``: a kdlab run directory or weights file. ``preset``: ``quick`` (one seed, tiny budget) or None.
    ``overrides``: ``key=value`` strings over the defaults (see ``AuditConfig``; e.g. ``reference=runs/normal``,
    ``seeds=[0,1]``, ``data.val_size=1000``). Returns the results dict (also written as results.json).
    """
    from tqdm.auto import tqdm

    from ..studies.common import finish_study, stage_run_config
    from ..store import RunStore
    from .skeptical import SkepticalConfig, SkepticalRunConfig, check_skeptical, run_skeptical_in_store

    cfg = load_audit_config(preset, overrides)
    source = resolve_model(model, "model")
    reference = resolve_model(cfg.reference, "reference") if cfg.reference else None
    data_cfg = model_data_config(source, cfg.data)
    num_classes, in_shape = int(source.spec["num_classes"]), source.spec["in_shape"]
    out = Path(out)
    store = RunStore(cfg.store or out / "runs")
    started = time.perf_counter()
    teacher = source.teacher_config()

    # every run's config, validated before anything trains
    plans: list[tuple[str, str, int, Any, bool]] = []  # (probe, method, seed, config, is_skeptical)
    for probe in cfg.probes:
        stage = probe_stage(probe)
        tap = probe.tap or first_tap(probe.model, num_classes, in_shape)
        for seed in cfg.seeds:
            plans.append((probe.label, "ce", seed, stage_run_config(stage, data_cfg, seed), False))
            for t in cfg.temperatures:
                loss = Component(name="kd", temperature=t, alpha=cfg.alpha)
                run_cfg = stage_run_config(stage, data_cfg, seed, loss=loss).model_copy(update={"teacher": teacher})
                plans.append((probe.label, kd_label(t), seed, run_cfg, False))
            if cfg.skeptical.enabled:
                sk = cfg.skeptical
                loss = Component(name="kd", temperature=sk.temperature, alpha=sk.alpha)
                run_cfg = stage_run_config(stage, data_cfg, seed, loss=loss).model_copy(update={"teacher": teacher})
                sk_cfg = SkepticalRunConfig(run=run_cfg, skeptical=SkepticalConfig(tap=tap, **sk.head_options()))
                plans.append((probe.label, skeptical_label(sk.temperature), seed, sk_cfg, True))
    for *_, plan_cfg, is_skeptical in plans:
        check_skeptical(plan_cfg) if is_skeptical else check_components(plan_cfg)
    _check_taps(cfg, plans, num_classes, in_shape)

    bar = tqdm(total=len(plans), desc="distillability audit", unit="run", disable=progress is False)
    students = []
    for probe_label, method, seed, plan_cfg, is_skeptical in plans:
        summary = (run_skeptical_in_store(store, plan_cfg, progress=progress) if is_skeptical
                   else store.run(plan_cfg, progress=progress))
        bar.update()
        loss = plan_cfg.run.loss if is_skeptical else plan_cfg.loss
        students.append({"teacher": None if method == "ce" else source.label, "probe": probe_label,
                         "method": method, "hyperparams": loss.as_dict(), "seed": seed,
                         "test_accuracy": summary["test_accuracy"], "run_dir": summary["run_dir"]})
        log.info("probe %s %s seed %d: test accuracy %.4f", probe_label, method, seed, summary["test_accuracy"])
    bar.close()

    profiles = profile_models(source, reference, data_cfg, cfg.profile_temperatures)
    results = assemble_audit(cfg, source, reference, data_cfg, students, profiles)
    from ..report.nasty import write_audit_report

    return finish_study(results, out, started, store.trained, store.reused, write_audit_report, _print_audit)


def _check_taps(cfg: AuditConfig, plans: list, num_classes: int, in_shape: Any) -> None:
    """Every skeptical tap exists in its probe model (before any training)."""
    from ..distill import resolve_tap
    from ..models import create_model

    seen = set()
    for _, _, _, plan_cfg, is_skeptical in plans:
        if not is_skeptical:
            continue
        key = (json.dumps(plan_cfg.run.model.as_dict(), sort_keys=True), plan_cfg.skeptical.tap)
        if key in seen:
            continue
        seen.add(key)
        built = create_model(plan_cfg.run.model.name, num_classes, in_shape, **plan_cfg.run.model.options)
        try:
            resolve_tap(built, plan_cfg.skeptical.tap)
        except ConfigError as exc:
            raise ConfigError(f"probes: tap={plan_cfg.skeptical.tap!r}: {exc}") from None


# --------------------------------------------------------------------------------------------- analysis


def profile_models(source: ModelSource, reference: ModelSource | None, data_cfg: DataConfig,
                   temperatures: list[float]) -> dict[str, Any]:
    """Test accuracy, dark-knowledge statistics (train and test splits) and affinity of the model and the reference."""
    from ..analysis import affinity_consistency
    from ..analysis.profile import profile_model

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
    from ..models import predict_logits

    za, zb = predict_logits(a.load(), x), predict_logits(b.load(), x)
    out = {}
    for t in temperatures:
        log_p, log_q = torch.log_softmax(za / t, -1), torch.log_softmax(zb / t, -1)
        out[str(float(t))] = float(t * t * (log_p.exp() * (log_p - log_q)).sum(-1).mean())
    return out


def _by_seed(students: list[dict[str, Any]], probe: str, method: str) -> dict[int, float]:
    return {s["seed"]: s["test_accuracy"] for s in students if s["probe"] == probe and s["method"] == method}


def margin_verdict(diff: dict[str, Any]) -> str:
    """'leaks' if the paired interval is above 0; 'protected' if the mean is <= 0 over >= 2 seeds; else 'inconclusive'."""
    if diff["n"] >= 2 and diff["low"] > 0:
        return "leaks"
    if diff["n"] >= 2 and diff["mean"] <= 0:
        return "protected"
    return "inconclusive"


def assemble_audit(cfg: AuditConfig, source: ModelSource, reference: ModelSource | None, data_cfg: DataConfig,
                   students: list[dict[str, Any]], profiles: dict[str, Any]) -> dict[str, Any]:
    """results.json of the audit: per-probe tables, margins (best method - CE, paired), verdicts, profiles, claims."""
    from ..analysis.stats import mean_std, paired_by_seed

    kd_methods = [kd_label(t) for t in cfg.temperatures]
    sk_method = skeptical_label(cfg.skeptical.temperature) if cfg.skeptical.enabled else None
    probes: dict[str, Any] = {}
    for probe in cfg.probes:
        ce = _by_seed(students, probe.label, "ce")
        methods = {m: _by_seed(students, probe.label, m) for m in [*kd_methods, *([sk_method] if sk_method else [])]}
        table = {m: {"test_accuracy": mean_std(list(v.values())), "minus_ce": paired_by_seed(v, ce)}
                 for m, v in methods.items()}
        best_kd = max(kd_methods, key=lambda m: table[m]["test_accuracy"]["mean"])
        best_attack = max(methods, key=lambda m: table[m]["test_accuracy"]["mean"])
        kd_margin = table[best_kd]["minus_ce"]
        attack_margin = table[best_attack]["minus_ce"]
        probes[probe.label] = {
            "model": probe.model.as_dict(), "ce": mean_std(list(ce.values())), "methods": table,
            "best_kd": best_kd, "protection_margin": kd_margin, "protection_verdict": margin_verdict(kd_margin),
            "best_attack": best_attack, "attack_margin": attack_margin, "attack_verdict": margin_verdict(attack_margin),
        }
    worst_kd = max(probes, key=lambda p: probes[p]["protection_margin"]["mean"])
    worst_attack = max(probes, key=lambda p: probes[p]["attack_margin"]["mean"])
    results = {
        "study": "audit",
        "dataset": data_cfg.name,
        "config": cfg.model_dump(mode="json"),
        "data": data_cfg.model_dump(mode="json"),
        "model": profiles["model"],
        "reference": profiles.get("reference"),
        "affinity_consistency": profiles.get("affinity_consistency"),
        "kl_to_reference": profiles.get("kl_to_reference"),
        "class_names": profiles["class_names"],
        "probes": probes,
        "protection_margin": {"probe": worst_kd, **probes[worst_kd]["protection_margin"]},
        "attack_margin": {"probe": worst_attack, **probes[worst_attack]["attack_margin"]},
        "students": students,
    }
    results["claims"] = audit_claims(cfg, probes)
    return results


def _all_protected(verdicts: list[str]) -> bool | None:
    if any(v == "leaks" for v in verdicts):
        return False
    if all(v == "protected" for v in verdicts):
        return True
    return None


def audit_claims(cfg: AuditConfig, probes: dict[str, Any]) -> list[dict[str, Any]]:
    """The audit's two claims with verdicts by the fixed rules of docs/studies/nasty.md."""
    from ..report.format import format_interval

    def listing(margin_key: str, best_key: str) -> str:
        return "; ".join(f"{label}: {p[best_key]} - CE = {format_interval(p[margin_key])} points "
                         f"({p[margin_key.replace('margin', 'verdict')]})" for label, p in probes.items())

    claims = [{
        "claim": "the model resists plain KD: no probe student distilled from it beats its CE-only student",
        "holds": _all_protected([p["protection_verdict"] for p in probes.values()]),
        "evidence": f"protection margin (best KD over T={cfg.temperatures} minus CE, paired, 95% t interval) per "
                    f"probe: {listing('protection_margin', 'best_kd')}; rule: holds if every probe's mean margin is "
                    f"<= 0 over >= 2 seeds, does not hold if any probe's interval is above 0, else undecided",
    }]
    if cfg.skeptical.enabled:
        claims.append({
            "claim": "the model also resists the skeptical-student counter-attack",
            "holds": _all_protected([p["attack_verdict"] for p in probes.values()]),
            "evidence": f"attack margin (best of KD and the skeptical student minus CE) per probe: "
                        f"{listing('attack_margin', 'best_attack')}; same rule",
        })
    return claims


def _print_audit(results: dict[str, Any], out: Path) -> None:
    m = results["model"]
    print(f"\nmodel {m['label']} ({m['params']:,} params): test accuracy {m['test_accuracy'] * 100:.2f}%")
    for label, p in results["probes"].items():
        pm, am = p["protection_margin"], p["attack_margin"]
        print(f"  probe {label:<8} CE {p['ce']['mean'] * 100:6.2f}%  protection margin ({p['best_kd']}) "
              f"{pm['mean'] * 100:+.2f} -> {p['protection_verdict']};  attack margin ({p['best_attack']}) "
              f"{am['mean'] * 100:+.2f} -> {p['attack_verdict']}")
    for claim in results["claims"]:
        verdict = {True: "holds", False: "does not hold", None: "undecided"}[claim["holds"]]
        print(f"claim [{verdict}] {claim['claim']}")
    print(f"\nresults: {out / 'results.json'}   report: {out / 'report.html'}")
