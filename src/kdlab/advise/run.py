"""``kdlab advise CONFIG --budget MINUTES --out DIR``: the whole command, top to bottom.

    config validated, every teacher and pilot run checked          (nothing trained yet)
    teachers advise trains itself            -> run store          (reused when trained before)
    CE-only students at every rung size      -> run store          (baselines, learning curve, cost model)
    teachers profiled on the student's training inputs, against the CE student's affinity (nasty-teacher flag)
    successive halving over teacher x method x hyperparameters   -> run store, within the budget
    recommendation (validation only), its gain over CE (test, paired over seeds), per-class transfer
    results.json, report.md / report.html, recommended.yaml (a `kdlab distill` config)

The budget counts from the start of :func:`advise` (after the command's imports) to the last file written; a wave of
runs starts only when the cost model (:mod:`kdlab.advise.budget`) says it ends in the time left minus a reserve for
the analysis that follows the pilot.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from ..config import RunConfig, TeacherConfig
from ..distill import load_teacher
from ..errors import ConfigError
from ..executor import executor_from_config
from ..io import atomic_write_json, atomic_write_text, check_output_dir
from ..models import load_model_weights
from ..layout import best_weights_path
from ..protect.source import load_splits
from ..store import RunStore
from ..studies.common import command_line, stage_run_config
from ..validate import check_components
from .budget import Budget
from .config import AdviseConfig, TrainedTeacher, load_advise_config
from .pilot import Pilot, PilotSetup, rung_shapes
from .profile import profile_teachers
from .recommend import learning_curve, per_class_transfer, pick_run_dirs, recommend, recommended_config
from .report import advise_report

log = logging.getLogger("kdlab")

RESULTS = "results.json"
RECOMMENDED = "recommended.yaml"
#: Time kept back from the pilot for what follows it (per-class predictions, report), as a fraction of the budget
#: plus a constant: on digits and a Fashion-MNIST subset that analysis took about a second.
RESERVE_FRACTION = 0.03
RESERVE_SECONDS = 3.0


def teacher_configs(cfg: AdviseConfig, store: RunStore) -> tuple[dict[str, TeacherConfig], dict[str, RunConfig]]:
    """Every candidate teacher as a distillation run loads it, and the runs of the teachers advise trains itself
    (a teacher given as ``train:`` is the run store's run of its stage on the whole training split)."""
    teachers, to_train = {}, {}
    for label, source in cfg.candidates().items():
        if isinstance(source, TrainedTeacher):
            data = cfg.data.model_copy(update={"train_subset": source.train.train_subset})
            job = stage_run_config(source.train, data, source.seed)
            to_train[label] = job
            teachers[label] = TeacherConfig(run=str(store.path(job)))
        else:
            teachers[label] = source
    return teachers, to_train


def advise(config: str | Path, budget_minutes: float, out: str | Path, overrides: tuple[str, ...] | list[str] = (),
           progress: bool | None = None, clock: Callable[[], float] = time.monotonic,
           started: float | None = None) -> dict[str, Any]:
    """Run ``kdlab advise`` (module docstring); write results.json, report.md/.html and recommended.yaml into
    ``out`` and return the results. ``started``: the ``clock`` reading the budget counts from (the CLI passes the
    moment before its imports); default now."""
    if isinstance(budget_minutes, bool) or not (isinstance(budget_minutes, (int, float)) and 0 < budget_minutes < 1e6):
        raise ConfigError(f"--budget={budget_minutes!r} is not allowed; give the minutes the command may take (> 0)")
    budget = Budget(budget_minutes * 60.0, clock, started)
    if progress is None:
        progress = sys.stderr.isatty()  # bars and per-epoch lines on a terminal only, as `kdlab tune`
    cfg = load_advise_config(config, overrides)
    out = Path(out)
    check_output_dir(out)
    store = RunStore(cfg.store or out / "runs")
    if cfg.threads is not None and cfg.executor.name == "local":
        torch.set_num_threads(cfg.threads)

    # the data as the student sees it: its training inputs (the images it is distilled on) and the validation split
    splits = load_splits(cfg.data, cfg.student.train_subset)
    teachers, to_train = teacher_configs(cfg, store)
    shapes = rung_shapes(cfg.pilot.rungs, cfg.student, len(splits.train), cfg.pilot.seeds)
    setup = PilotSetup(cfg.data, cfg.student, teachers, shapes, len(splits.val))
    trained_before = store.trained
    with executor_from_config(cfg.executor) as executor:
        def run_wave(jobs: list[RunConfig]) -> list[dict[str, Any]]:
            return executor.run(store, jobs, progress=progress, desc="advise")

        pilot = Pilot(setup, cfg.pilot.rungs, cfg.pilot.methods, cfg.pilot.points, cfg.pilot.search_seed, budget,
                      run_wave, workers=cfg.executor.workers,
                      reserve_seconds=RESERVE_FRACTION * budget.seconds + RESERVE_SECONDS,
                      is_finished=store.is_finished)
        # everything checked before anything trains: the teachers' own runs, the teachers kdlab loads, every pilot run
        for label, job in to_train.items():
            try:
                check_components(job)
            except ConfigError as exc:
                raise ConfigError(f"teachers.{label}.train: {exc}") from None
        loaded = {label: load_teacher(t, splits.num_classes, splits.in_shape)
                  for label, t in teachers.items() if label not in to_train}
        pilot.check()

        if to_train:
            pilot.wave("teachers trained by advise", [((-1, f"teacher:{label}", job.train.seed), job, None)
                                                      for label, job in to_train.items()], None)
            for label in to_train:
                loaded[label] = load_teacher(teachers[label], splits.num_classes, splits.in_shape)
        if cfg.executor.name == "local":
            # the runs train in this process: read and split the data of every rung size once, now, so that no run's
            # measured seconds (what the cost model extrapolates from) include it
            for subset in dict.fromkeys(shape.train_subset for shape in shapes):
                load_splits(cfg.data, subset)
        pilot.run_ce()
        reference = None
        if pilot.result.ce_rungs:
            ce_dirs = pick_run_dirs(pilot.result, None, pilot.result.ce_rungs[-1])
            reference = load_model_weights(best_weights_path(ce_dirs[0]))
        profiles = profile_teachers({label: loaded[label] for label in teachers}, reference, splits.train.x,
                                    splits.train.y, splits.val.x, splits.val.y, splits.num_classes,
                                    cfg.profile.temperatures, cfg.profile.affinity_floor, cfg.profile.num_bootstrap,
                                    cfg.profile.reference_min_accuracy)
        for label, entry in profiles["teachers"].items():
            entry["role"] = cfg.role(label)
            entry["trained_by_advise"] = label in to_train
            entry["source"] = teachers[label].model_dump(mode="json", exclude_none=True)
        pilot.run_halving()
    pilot_seconds = budget.elapsed()

    result = pilot.result
    recommendation = recommend(result, setup)
    pick = result.halving.chosen()
    transfer = None
    if pick is not None:
        rung = result.halving.last.index
        transfer = per_class_transfer(pick_run_dirs(result, pick, rung), pick_run_dirs(result, None, rung),
                                      splits.val.x, splits.val.y, splits.num_classes, list(splits.class_names))
    distil = recommendation["recommended"] != "ce"
    recommended = recommended_config(setup, pick if distil else None, cfg.pilot.seeds[0])

    results: dict[str, Any] = {
        "command": "advise",
        "dataset": cfg.data.name,
        "config": cfg.model_dump(mode="json"),
        "budget_seconds": budget.seconds,
        "pilot_seconds": pilot_seconds,
        "stop_reason": result.stop_reason,
        "points": result.points,
        "rungs": [{"rung": i, "epochs": s.epochs, "images": s.images, "seeds": list(s.seeds),
                   "keep": cfg.pilot.rungs[i].keep,
                   "ce_val": result.ce_by_seed(i) if i in result.ce_rungs else None,
                   "ran": any(r.index == i for r in result.halving.rungs)}
                  for i, s in enumerate(shapes)],
        "halving": [{"rung": r.index, "candidates": [c.key for c in r.candidates],
                     "val_accuracy": r.scores,
                     "survivors": [c.key for c in r.survivors], "shrunk_from": r.shrunk_from,
                     "estimate_seconds": r.estimate_seconds,
                     "seconds": r.seconds} for r in result.halving.rungs],
        "ranking": result.halving.pair_ranking(),
        "waves": result.waves,
        "profiles": profiles,
        "learning_curve": learning_curve(result, setup),
        "recommendation": recommendation,
        "per_class": transfer,
        "recommended_yaml": RECOMMENDED,
        "runs_trained": store.trained - trained_before,
        "runs_reused": store.reused,
        "command_line": command_line(),
    }
    out.mkdir(parents=True, exist_ok=True)
    header = (f"# Recommended by `kdlab advise` ({'distil' if distil else 'CE alone'}); run it with:\n"
              f"#   kdlab distill {out / RECOMMENDED} --out runs/recommended\n" if distil else
              f"# Recommended by `kdlab advise`: CE alone (no candidate beat it on validation); run it with:\n"
              f"#   kdlab train {out / RECOMMENDED} --out runs/recommended\n")
    atomic_write_text(out / RECOMMENDED, header + yaml.safe_dump(recommended.to_dict(), sort_keys=False))
    results["elapsed_seconds"] = budget.elapsed()
    results["within_budget"] = results["elapsed_seconds"] <= budget.seconds
    # the report is rendered from what results.json holds (a JSON round trip), so `kdlab report`-style re-rendering
    # needs nothing else
    results = json.loads(json.dumps(results))
    atomic_write_json(out / RESULTS, results)
    advise_report(results).write(out)
    return results
