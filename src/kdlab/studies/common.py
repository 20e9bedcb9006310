"""Pieces every study shares: how one group of models is trained (a stage), and how its config is loaded."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from ..config import (Component, DataConfig, OptimConfig, RunConfig, ScheduleConfig, Section, TeacherConfig,
                      TrainConfig, apply_overrides, deep_merge, parse_config, read_yaml)
from ..errors import ConfigError


class StageConfig(Section):
    """How one group of models (teachers, students) is trained; data split and seeds come from the study."""

    model: Component
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    train_subset: int | None = Field(None, ge=1)
    crop_padding: int = Field(0, ge=0, le=16)
    hflip: bool = False
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    keep_epochs: list[int] = Field(default_factory=list)
    checkpoint_every: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _kept_epochs_exist(self) -> "StageConfig":
        beyond = [e for e in self.keep_epochs if not 1 <= e <= self.epochs]
        if beyond:
            raise ValueError(f"keep_epochs={self.keep_epochs} is not allowed: {beyond} outside 1..epochs={self.epochs}; "
                             "a stage can keep only the checkpoints of epochs it trains")
        return self


def stage_run_config(stage: StageConfig, data: DataConfig, seed: int, loss: Component | None = None,
                     teacher_run: str | Path | None = None, model: Component | None = None,
                     keep_epochs: list[int] | None = None, teacher_epoch: int | None = None,
                     teacher_stop_fraction: float | None = None) -> RunConfig:
    """The RunConfig of one model of a stage: the stage's recipe on the study's data, with this seed and loss.

    ``teacher_epoch`` distils from the teacher as it was after that epoch (ESKD); ``teacher_stop_fraction`` drops the
    teacher after that fraction of the student's epochs (ESKD's stop, scaled to the schedule).
    """
    data_cfg = data.model_copy(update={"train_subset": stage.train_subset, "crop_padding": stage.crop_padding,
                                       "hflip": stage.hflip})
    return RunConfig(
        data=data_cfg,
        model=model or stage.model,
        teacher=TeacherConfig(run=str(teacher_run), epoch=teacher_epoch, stop_fraction=teacher_stop_fraction)
        if teacher_run is not None else None,
        loss=loss or Component(name="ce"),
        optim=stage.optim,
        schedule=stage.schedule,
        train=TrainConfig(epochs=stage.epochs, batch_size=stage.batch_size, seed=seed,
                          keep_epochs=keep_epochs if keep_epochs is not None else stage.keep_epochs,
                          checkpoint_every=stage.checkpoint_every),
    )


def load_study_config(model_cls: type, defaults: dict[str, Any], presets: dict[str, dict[str, Any]],
                      config: str | Path | None, preset: str | None, overrides: list[str]) -> Any:
    """defaults <- preset <- YAML file <- --set overrides, then validated."""
    raw = dict(defaults)
    if preset is not None:
        if preset not in presets:
            raise ConfigError(f"--preset '{preset}' is not allowed. Allowed: {', '.join(sorted(presets))}")
        raw = deep_merge(raw, presets[preset])
    if config is not None:
        raw = deep_merge(raw, read_yaml(config))
    return parse_config(apply_overrides(raw, overrides), model_cls)


def command_line() -> str:
    """The command that is running, for 'reproduce with' lines in reports."""
    argv = [Path(sys.argv[0]).name] + sys.argv[1:] if sys.argv and sys.argv[0] else ["kdlab"]
    return " ".join(shlex.quote(a) for a in argv)
