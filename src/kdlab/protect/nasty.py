"""Build a nasty teacher: `kdlab protect nasty CONFIG` trains a model that keeps its accuracy but teaches badly.

Ma, Chen, Hu, You, Xie, Wang, "Undistillable: Making A Nasty Teacher That CANNOT teach students", ICLR 2021.

The recipe is an ordinary kdlab run with the ``nasty`` loss (:class:`kdlab.losses.nasty.NastyLoss`,
L = CE(z, y) - omega * tau^2 * KL(softmax(z / tau) || softmax(z_A / tau))): the model being trained sits in the
student slot and starts from a normally trained teacher's weights (``start: teacher``; the official code trains
from scratch, ``start: scratch``, which costs a full training run); the *adversary* z_A, a frozen, normally trained
network, sits in the teacher slot. The paper uses the pre-trained normal teacher itself as the adversary, which is
the default (``adversary: null``).

Config (YAML; unknown keys are refused):

    teacher: runs/teacher          # required: a normally trained kdlab run dir (or weights file): data, model, start
    adversary: null                # the frozen adversary (run dir or weights file); null = the teacher itself
    start: teacher                 # teacher: fine-tune from the teacher's weights | scratch: random initialisation
    temperature: 4.0               # tau_A (paper: 4 for CIFAR-10, 20 for CIFAR-100 / Tiny-ImageNet)
    omega: 0.04                    # weight of the KL term (official CIFAR-10 configuration)
    epochs: 10
    batch_size: 128
    seed: 0
    optim: {name: sgd, lr: 0.05}   # kdlab's optim section
    schedule: {name: cosine}       # kdlab's schedule section
    data: {}                       # overrides of the teacher run's data section (e.g. data_dir)

The protected model is the *last* epoch, not the best-validation one: the nasty objective trades a little
accuracy for nastiness, so selecting by validation accuracy would pick the least nasty epoch. It is exported as
``<out>/checkpoints/last.safetensors`` and named in ``<out>/protected.json`` (``kdlab audit distillability`` and
:func:`kdlab.protect.source.resolve_model` read it when given the run directory).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from ..config import (Component, DataConfig, OptimConfig, RunConfig, ScheduleConfig, Section, TeacherConfig,
                      TrainConfig, apply_overrides, parse_config, read_yaml)
from ..data import TensorLoader
from ..distill import load_teacher
from ..errors import ConfigError
from ..io import atomic_write_json
from ..models import load_model_weights, predict_logits
from ..recipe import run, run_or_reuse
from ..store import Job
from ..train import evaluate
from ..validate import check_components
from .source import load_splits, model_data_config, resolve_model

log = logging.getLogger("kdlab")


class NastyConfig(Section):
    """The config of ``kdlab protect nasty`` (documented in the module docstring and docs/studies/nasty.md)."""

    teacher: str
    adversary: str | None = None
    start: Literal["teacher", "scratch"] = "teacher"
    temperature: float = Field(4.0, gt=0)
    omega: float = Field(0.04, ge=0)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    seed: int = 0
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    data: dict[str, Any] = Field(default_factory=dict)


def nasty_run_config(model: Component, data: DataConfig, adversary: TeacherConfig, *, init: str | None,
                     temperature: float, omega: float, epochs: int, batch_size: int, seed: int,
                     optim: OptimConfig, schedule: ScheduleConfig) -> RunConfig:
    """The RunConfig that trains a nasty model: ``model`` (started from ``init``) against the frozen ``adversary``."""
    return RunConfig(
        data=data,
        model=model,
        init=init,
        teacher=adversary,
        loss=Component(name="nasty", temperature=temperature, omega=omega),
        optim=optim,
        schedule=schedule,
        train=TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed),
    )


class NastyTeacherJob(Job):
    """A nasty teacher as a run-store job: the nasty run (``run``, its teacher slot holding the adversary) and, once
    trained, its evaluation (``protected.json``: protected weights, test accuracy, tau^2 KL to the adversary).

    ``teacher_weights``: the normally trained teacher it came from (its accuracy is reported beside the nasty one).
    """

    kind: ClassVar[str] = "nasty_teacher"
    run: RunConfig
    teacher_weights: str

    def check(self) -> None:
        """A nasty loss and an adversary in the teacher slot, and valid registry names and options."""
        check_components(self.run)
        if self.run.teacher is None or self.run.loss.name != "nasty":
            raise ConfigError("a nasty teacher job needs run.loss.name='nasty' and run.teacher (the adversary)")

    def run_or_reuse(self, out_dir: Path, *, progress: bool | None = None,
                     teacher_cache_dir: str | Path | None = None) -> tuple[dict[str, Any], bool]:
        """Train (or resume, or reuse) the nasty run in ``out_dir`` through the recipe (which locks the directory);
        evaluate it once; return the summary with ``protected`` (the content of protected.json) and whether this
        call trained it."""
        summary, trained = run_or_reuse(self.run, out_dir, progress=progress, teacher_cache_dir=teacher_cache_dir,
                                        identity=self, wait=True)
        protected = Path(out_dir) / "protected.json"
        if protected.is_file():
            info = json.loads(protected.read_text())
        else:
            assert self.run.teacher is not None
            info = evaluate_protection(self.run, out_dir, self.teacher_weights, self.run.teacher)
        return {**summary, "protected": info}, trained


def protected_weights(run_dir: str | Path) -> Path:
    """The weights a nasty run exports as the protected model: its last epoch."""
    return Path(run_dir) / "checkpoints" / "last.safetensors"


def load_nasty_config(config: str | Path | dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> NastyConfig:
    """A NastyConfig from a YAML path or a dict, with ``key=value`` overrides; ConfigError names any bad key."""
    raw = dict(config) if isinstance(config, dict) else read_yaml(config)
    return parse_config(apply_overrides(raw, list(overrides)), NastyConfig)


def build_nasty_run(cfg: NastyConfig) -> RunConfig:
    """Resolve the teacher and adversary and return the validated RunConfig of the nasty run."""
    teacher = resolve_model(cfg.teacher, "teacher")
    adversary = resolve_model(cfg.adversary, "adversary") if cfg.adversary is not None else teacher
    if adversary.spec.get("num_classes") != teacher.spec.get("num_classes"):
        raise ConfigError(f"adversary='{cfg.adversary}' predicts {adversary.spec.get('num_classes')} classes but "
                          f"teacher='{cfg.teacher}' predicts {teacher.spec.get('num_classes')}; they must match")
    if teacher.run_config is not None:
        # train on exactly the teacher's data (its subset and augmentation), unless overridden
        try:
            data = parse_config({**teacher.run_config.data.model_dump(mode="json"), **cfg.data}, DataConfig)
        except ConfigError as exc:
            raise ConfigError(f"data: {exc}") from None
    else:
        data = model_data_config(teacher, cfg.data)
    run_cfg = nasty_run_config(
        teacher.model_component(), data, adversary.teacher_config(),
        init=str(teacher.weights) if cfg.start == "teacher" else None, temperature=cfg.temperature,
        omega=cfg.omega, epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed, optim=cfg.optim,
        schedule=cfg.schedule)
    check_components(run_cfg)
    return run_cfg


def evaluate_protection(run_cfg: RunConfig, run_dir: str | Path, teacher_weights: str | Path,
                        adversary: TeacherConfig) -> dict[str, Any]:
    """Test accuracy of the protected model and of the original teacher, and the mean tau^2 KL to the adversary.

    Writes ``<run_dir>/protected.json`` (the protected weights and these numbers) and returns its content.
    """
    d = run_cfg.data
    splits = load_splits(d, d.train_subset)
    weights = protected_weights(run_dir)
    nasty = load_model_weights(weights)
    teacher = load_model_weights(teacher_weights)
    adv = load_teacher(adversary, splits.num_classes, splits.in_shape)
    test = TensorLoader(splits.test, 1024)
    tau = float(run_cfg.loss.options["temperature"])
    z, z_adv = predict_logits(nasty, splits.test.x), predict_logits(adv, splits.test.x)
    log_p, log_q = torch.log_softmax(z / tau, -1), torch.log_softmax(z_adv / tau, -1)
    kl = float(tau * tau * (log_p.exp() * (log_p - log_q)).sum(-1).mean())
    nasty_acc, teacher_acc = evaluate(nasty, test)["accuracy"], evaluate(teacher, test)["accuracy"]
    info = {
        "weights": str(weights),
        "test_accuracy": nasty_acc,
        "teacher_weights": str(teacher_weights),
        "teacher_test_accuracy": teacher_acc,
        "accuracy_drop": teacher_acc - nasty_acc,
        "adversary": adversary.model_dump(mode="json"),
        "temperature": tau,
        "omega": float(run_cfg.loss.options["omega"]),
        "kl_to_adversary_test": kl,
    }
    atomic_write_json(Path(run_dir) / "protected.json", info)
    return info


def protect_nasty(config: str | Path | dict[str, Any], out: str | Path, overrides: list[str] | tuple[str, ...] = (),
                  progress: bool | None = None) -> dict[str, Any]:
    """Train a nasty teacher as ``config`` says (YAML path or dict, plus ``key=value`` overrides) in run dir ``out``.

    Every key is validated before training (unknown key, missing teacher, bad loss value -> ConfigError naming it).
    Idempotent and resumable like :func:`kdlab.recipe.run`. Returns the recipe's summary of the run plus
    ``protected``: the content of ``<out>/protected.json`` (protected weights = last epoch, its test accuracy,
    the teacher's, the accuracy drop and the mean tau^2 KL(nasty || adversary) on the test split).
    """
    cfg = load_nasty_config(config, overrides)
    run_cfg = build_nasty_run(cfg)
    summary = run(run_cfg, out, progress=progress)
    assert run_cfg.teacher is not None
    teacher_weights = run_cfg.init if run_cfg.init is not None else _resolved_weights(cfg.teacher)
    info = evaluate_protection(run_cfg, out, teacher_weights, run_cfg.teacher)
    log.info("nasty model: test accuracy %.4f (teacher %.4f), tau^2 KL to the adversary %.3f",
             info["test_accuracy"], info["teacher_test_accuracy"], info["kl_to_adversary_test"])
    return {**summary, "run_dir": str(out), "protected": info}


def _resolved_weights(source: str) -> str:
    return str(resolve_model(source, "teacher").weights)
