"""``kdlab tune``: tune one user's teacher/student pair from a distill config and a space file."""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

from ..config import RunConfig, load_config, read_yaml
from ..errors import ConfigError
from ..executor import make_executor
from ..losses import search_space
from ..space import Space
from ..store import RunStore
from .engine import TuningResult, tune
from .output import write_tuning

log = logging.getLogger("kdlab")


def load_space(path: str | Path | None, base: RunConfig) -> Space:
    """The space in the YAML file at ``path`` (keys are run-config paths), or, without a file, the search space
    the base config's loss declares (its options under ``loss.``)."""
    if path is not None:
        return Space.from_dict(read_yaml(path), source=f"space file '{path}'")
    space = search_space(base.loss.name)
    if not space.values:
        raise ConfigError(f"loss '{base.loss.name}' declares no search space; give one with --space SPACE.yaml")
    return space.prefixed("loss")


def tune_pair(config: str | Path, out: str | Path, trials: int, space: str | Path | None = None,
              seeds: Sequence[int] = (0,), final_seeds: Sequence[int] = (1, 2, 3), search_seed: int = 0,
              overrides: Sequence[str] = (), store: str | Path | None = None, executor: str = "local",
              workers: int = 1, address: str | None = None, progress: bool | None = None) -> TuningResult:
    """Tune ``config`` (a normal distill or train config) over ``space`` with ``trials`` trials; write trials.csv,
    tuning.json, report.md and best.yaml into ``out``. Trials and final runs live in the run store ``store``
    (default ``out/runs``), so a rerun reuses every finished run."""
    base = load_config(config, list(overrides))
    tuning_space = load_space(space, base)
    out = Path(out)
    run_store = RunStore(store if store is not None else out / "runs")
    label = Path(config).stem
    if progress is None:
        progress = sys.stderr.isatty()  # bars on a terminal only, as for single runs
    with make_executor(executor, workers, address) as ex:
        result = tune(base, tuning_space, trials, seeds, final_seeds, run_store, ex, search_seed=search_seed,
                      label=label, progress=progress)
    write_tuning(result, out, command=_command())
    log.info("tuning %s: %d trials (%s), %d runs trained, %d reused", label, len(result.trials), result.sampler,
             run_store.trained, run_store.reused)
    return result


def _command() -> str:
    argv: list[Any] = sys.argv[1:] if sys.argv and Path(sys.argv[0]).name == "kdlab" else []
    return "kdlab " + " ".join(shlex.quote(str(a)) for a in argv) if argv else ""
