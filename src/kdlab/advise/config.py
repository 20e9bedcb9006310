"""The config of ``kdlab advise``: the user's teachers (and assistants), the student, the data, the pilot's rungs.

One YAML file, validated before anything is read or trained (unknown keys refused with a did-you-mean, every value
checked against what is allowed). Teachers are given exactly as the ``teacher`` section of a ``kdlab distill``
config, under a label of the user's choice::

    data: {name: digits, val_size: 300}
    teachers:
      small: {run: runs/teacher_small}
      large: {model: {name: mlp, width: 256, depth: 2}, weights: large.safetensors}
      fresh: {train: {model: {name: mlp, width: 512, depth: 2}, epochs: 10}}
    student: {model: {name: mlp, width: 16, depth: 1}, epochs: 20, train_subset: 500}
    pilot:
      methods: [kd, dkd, dist]
      rungs:
        - {epochs: 0.25, subset: 0.5, seeds: 1, keep: 6}
        - {epochs: 1.0, subset: 1.0, seeds: 3}

A teacher given as ``train:`` (a stage: model, epochs, optimiser...) is trained by advise itself on the whole training
split, through the run store (reused when it was trained before), inside the budget.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from ..config import DataConfig, Section, Seed, TeacherConfig, parse_config
from ..errors import ConfigError
from ..losses import LOSSES, search_space
from ..registry import did_you_mean
from ..studies.common import StageConfig, load_study_config
from ..studies.driver import StudyConfig

#: Labels name teachers in tables, file names and YAML keys: short and plain.
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


class RungConfig(Section):
    """One rung of successive halving: how long and on how much data its runs train, on how many pilot seeds, and
    how many of its candidates survive into the next rung (``keep``; absent on the last rung).

    ``epochs`` and ``subset`` are fractions of the student's recipe (``student.epochs`` and its training set), so
    the last rung at 1.0 and 1.0 trains exactly the run the user would train.
    """

    epochs: float = Field(gt=0, le=1)
    subset: float = Field(gt=0, le=1)
    seeds: int = Field(1, ge=1)
    keep: int | None = Field(None, ge=1)


class PilotConfig(Section):
    """The budgeted pilot: methods (losses with a declared search space), hyperparameter points per (teacher,
    method) at the first rung, the rungs, and the pilot's seeds."""

    methods: list[str] = Field(default_factory=lambda: ["kd", "dkd", "dist", "logit_std", "ats"], min_length=1)
    # hyperparameter points per (teacher, method) at the first rung; the budget may lower it (never below 1)
    points: int = Field(4, ge=1)
    rungs: list[RungConfig] = Field(default_factory=lambda: [
        RungConfig(epochs=0.25, subset=0.5, seeds=1, keep=9), RungConfig(epochs=0.5, subset=1.0, seeds=1, keep=3),
        RungConfig(epochs=1.0, subset=1.0, seeds=3)], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    # seed of the random sample of each method's search space (the same points for every teacher)
    search_seed: int = Field(0, ge=0)

    @field_validator("methods")
    @classmethod
    def _methods_are_distillation_losses(cls, methods: list[str]) -> list[str]:
        if len(set(methods)) != len(methods):
            raise ValueError(f"methods must be distinct, got {methods}")
        for name in methods:
            if name not in LOSSES:
                raise ValueError(f"'{name}' is not a registered loss.{did_you_mean(name, LOSSES.names())} "
                                 f"Allowed: {', '.join(tunable_methods())}")
            if name not in tunable_methods():
                raise ValueError(f"'{name}' cannot be piloted: it reads no teacher or declares no search space. "
                                 f"Allowed: {', '.join(tunable_methods())}")
        return methods

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
            raise ValueError(f"seeds must be distinct integers >= 0, got {seeds}")
        return seeds

    @model_validator(mode="after")
    def _rungs_are_a_schedule(self) -> "PilotConfig":
        last = len(self.rungs) - 1
        for i, rung in enumerate(self.rungs):
            where = f"rungs[{i}]"
            if i < last and rung.keep is None:
                raise ValueError(f"{where}.keep is missing: every rung but the last declares how many candidates "
                                 "survive into the next")
            if i == last and rung.keep is not None:
                raise ValueError(f"{where}.keep={rung.keep} is not allowed on the last rung (nothing follows it); "
                                 "remove it")
            if rung.seeds > len(self.seeds):
                raise ValueError(f"{where}.seeds={rung.seeds} exceeds the {len(self.seeds)} pilot seeds "
                                 f"{self.seeds}; allowed: 1..{len(self.seeds)}")
            if i > 0:
                before = self.rungs[i - 1]
                if rung.epochs < before.epochs or rung.subset < before.subset or rung.seeds < before.seeds:
                    raise ValueError(f"{where} trains less than rungs[{i - 1}] (epochs {rung.epochs} vs "
                                     f"{before.epochs}, subset {rung.subset} vs {before.subset}, seeds {rung.seeds} "
                                     f"vs {before.seeds}); survivors must train at least as long, on as much data")
                if i > 1 and before.keep is not None and self.rungs[i - 2].keep is not None \
                        and before.keep >= self.rungs[i - 2].keep:
                    raise ValueError(f"rungs[{i - 1}].keep={before.keep} must be smaller than rungs[{i - 2}].keep="
                                     f"{self.rungs[i - 2].keep}: each rung keeps fewer candidates than the one before")
        return self


class ProfileConfig(Section):
    """How the teachers are profiled and screened before the pilot."""

    temperatures: list[float] = Field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0], min_length=1)
    # a teacher is flagged as deliberately undistillable when the 95% bootstrap interval of the Spearman correlation
    # between its class affinity and the CE-only student's lies below this floor. Normally trained teachers agreed
    # with small CE students at 0.29-0.64 on digits (the students at 67-84% validation accuracy) and with each other
    # at 0.84-0.95; the nasty teacher of reports/nasty agrees with a normal model at -0.06
    affinity_floor: float = Field(0.2, gt=-1, lt=1)
    # the CE-only student is a usable reference only when it learned the task: below this validation accuracy its
    # affinity is mostly noise, and the flag is null (with the reason)
    reference_min_accuracy: float = Field(0.5, ge=0, le=1)
    num_bootstrap: int = Field(200, ge=50, le=10000)

    @field_validator("temperatures")
    @classmethod
    def _positive(cls, temps: list[float]) -> list[float]:
        if any(not (t > 0 and math.isfinite(t)) for t in temps) or len(set(temps)) != len(temps):
            raise ValueError(f"temperatures must be distinct finite numbers > 0: {temps}")
        return temps


class TrainedTeacher(Section):
    """A teacher that advise trains itself (on the whole training split, labels only) through the run store."""

    train: StageConfig
    seed: Seed = 0


#: A candidate teacher: one kdlab loads (a run directory, or a model spec + weights), or one advise trains.
TeacherSource = TeacherConfig | TrainedTeacher


class AdviseConfig(StudyConfig):
    """What ``kdlab advise`` is asked: which teacher, method and hyperparameters for this student on this data."""

    data: DataConfig
    teachers: dict[str, TeacherSource] = Field(min_length=1)
    # trained teacher assistants (e.g. a mid-sized model distilled from a teacher): each is a candidate teacher of
    # the student, the last step of a TAKD chain
    assistants: dict[str, TeacherSource] = Field(default_factory=dict)
    student: StageConfig
    pilot: PilotConfig = Field(default_factory=PilotConfig)
    profile: ProfileConfig = Field(default_factory=ProfileConfig)
    # torch intra-op threads of this process when the runs train here (executor local); on a shared machine one
    # thread per run is often faster than several (null: torch's default)
    threads: int | None = Field(None, ge=1)

    @field_validator("teachers", "assistants")
    @classmethod
    def _plain_labels(cls, entries: dict[str, TeacherSource]) -> dict[str, TeacherSource]:
        for label in entries:
            if not LABEL.match(label):
                raise ValueError(f"label '{label}' is not allowed: 1-40 letters, digits, '_', '-' or '.', starting "
                                 "with a letter or digit")
        return entries

    @field_validator("data")
    @classmethod
    def _subset_is_the_students(cls, data: DataConfig) -> DataConfig:
        if data.train_subset is not None:
            raise ValueError(f"train_subset={data.train_subset} belongs to the student: write "
                             "student.train_subset (the labelled images the student sees)")
        return data

    @model_validator(mode="after")
    def _labels_unique(self) -> "AdviseConfig":
        shared = sorted(set(self.teachers) & set(self.assistants))
        if shared:
            raise ValueError(f"label '{shared[0]}' names both a teacher and an assistant; give each a distinct label")
        if "ce" in self.teachers or "ce" in self.assistants:
            raise ValueError("label 'ce' is reserved for the student trained on labels alone; choose another")
        return self

    def candidates(self) -> dict[str, TeacherSource]:
        """Every model the student may distil from, teachers then assistants, by label."""
        return {**self.teachers, **self.assistants}

    def role(self, label: str) -> str:
        """``teacher`` or ``assistant``."""
        return "assistant" if label in self.assistants else "teacher"


def tunable_methods() -> list[str]:
    """Registered losses the pilot can tune: they read a teacher and declare a non-empty search space."""
    # tllm is left out: it needs the undistillable classes as an option, which only a per-class study finds
    return [name for name in LOSSES.names()
            if LOSSES.get(name).requires_teacher and search_space(name).values and name != "tllm"]


def parse_advise_config(raw: dict) -> AdviseConfig:
    """An advise config from plain data (as a YAML file holds it), validated (errors name the key)."""
    return parse_config(raw, AdviseConfig)


def load_advise_config(config: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> AdviseConfig:
    """The advise config in ``config`` with ``key=value`` overrides, validated (errors name the key)."""
    try:
        return load_study_config(AdviseConfig, {}, {}, config, None, list(overrides))
    except ConfigError as exc:
        raise ConfigError(f"advise config '{config}': {exc}") from None

