"""Pieces every study shares: how one group of models is trained (a stage), presets, and the study entry point."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from pydantic import Field

from ..config import (Component, DataConfig, OptimConfig, RunConfig, ScheduleConfig, Section, TeacherConfig,
                      TrainConfig, apply_overrides, deep_merge, parse_config, read_yaml)
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..store import RunStore

S = TypeVar("S")


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


def stage_run_config(stage: StageConfig, data: DataConfig, seed: int, loss: Component | None = None,
                     teacher_run: str | Path | None = None, model: Component | None = None,
                     keep_epochs: list[int] | None = None, teacher_epoch: int | None = None,
                     teacher_stop_epoch: int | None = None) -> RunConfig:
    """The RunConfig of one model of a stage: the stage's recipe on the study's data, with this seed and loss.

    ``teacher_epoch`` distils from the teacher as it was after that epoch (ESKD); ``teacher_stop_epoch`` drops the
    teacher after that many student epochs.
    """
    data_cfg = data.model_copy(update={"train_subset": stage.train_subset, "crop_padding": stage.crop_padding,
                                       "hflip": stage.hflip})
    return RunConfig(
        data=data_cfg,
        model=model or stage.model,
        teacher=TeacherConfig(run=str(teacher_run), epoch=teacher_epoch, stop_epoch=teacher_stop_epoch)
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


def open_study(model_cls: type[S], defaults: dict[str, Any], presets: dict[str, dict[str, Any]],
               config: str | Path | None, preset: str | None, overrides: list[str] | None,
               out: str | Path) -> tuple[S, Path, "RunStore", float]:
    """What every study starts with: its validated config (see :func:`load_study_config`), the output directory,
    the run store (``cfg.store``, default ``<out>/runs``) and the start time (``time.perf_counter()``)."""
    from ..store import RunStore

    cfg = load_study_config(model_cls, defaults, presets, config, preset, list(overrides or []))
    out = Path(out)
    return cfg, out, RunStore(cfg.store or out / "runs"), time.perf_counter()


def finish_study(results: dict[str, Any], out: Path, started: float, trained: int, reused: int,
                 write_report: Callable[[dict[str, Any], Path], list[str]],
                 print_summary: Callable[[dict[str, Any], Path], None]) -> dict[str, Any]:
    """What every study ends with: time, runs trained and reused and the command into ``results``; the report
    (``results["report_files"]``); results.json; the terminal summary. Returns ``results``."""
    from ..io import atomic_write_json

    results.update(seconds=time.perf_counter() - started, runs_trained=trained, runs_reused=reused,
                   command=command_line())
    results["report_files"] = write_report(results, out)
    atomic_write_json(out / "results.json", results)
    print_summary(results, out)
    return results


def command_line() -> str:
    """The command that is running, for 'reproduce with' lines in reports."""
    argv = [Path(sys.argv[0]).name] + sys.argv[1:] if sys.argv and sys.argv[0] else ["kdlab"]
    return " ".join(shlex.quote(a) for a in argv)
