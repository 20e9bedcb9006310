"""The study driver: a study is a declaration, the driver runs it.

A :class:`Study` declares its config schema, defaults and presets; ``plan(cfg, store)``, the waves of tagged runs
to train; a pure ``analyse(cfg, runs)`` that turns the trained runs into results (through :mod:`kdlab.analysis`);
``claims(cfg)``, the claims under test as data (:class:`kdlab.analysis.verdict.Claim`); and ``report(results)``,
its tables and figures (:class:`kdlab.report.Report` blocks built from results.json alone).

:func:`run_study` does the rest, the same way for every study: load and validate the config; validate every planned
run before anything trains; run each wave through the executor (local, pool or Ray) and the one run store; analyse;
decide every claim with the one evaluator; write results.json; render the report from results.json (so ``kdlab
report DIR`` rebuilds it byte for byte). A new study is one file.

Waves run in order, the runs of one wave in parallel. A wave may depend on what earlier waves produced (``build``):
a tuning stage whose selection on validation feeds the next wave, or a remedy trained on the classes an earlier wave
detected. Its runs are validated when they are built, before they train; ``preview`` runs (representative configs
of a dependent wave) are validated with the static ones before anything trains.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from pydantic import Field
from tqdm.auto import tqdm

from ..analysis.verdict import verdict_word
from ..config import RunConfig, Section
from ..errors import ConfigError
from ..executor import ExecutorConfig, executor_from_config
from ..io import atomic_write_json
from ..report import Report
from ..store import RunStore
from ..validate import check_components
from .base import STUDIES
from .common import command_line, load_study_config

log = logging.getLogger("kdlab")

RESULTS = "results.json"


class StudyConfig(Section):
    """Keys every study config has: where its runs are stored and where they train."""

    # run store shared between studies (content-addressed); default: <out>/runs
    store: str | None = None
    # where the runs train: in this process (local), on local processes (pool) or on a Ray cluster (ray)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)


@dataclass(frozen=True)
class Planned:
    """One run of a plan: ``tags`` say what it is (role, teacher, method, seed...), ``job`` what trains (a RunConfig
    or a :class:`kdlab.store.Job`)."""

    tags: dict[str, Any]
    job: Any


@dataclass(frozen=True)
class Wave:
    """A batch of independent runs. ``runs`` are known in advance; ``build(runs_so_far)`` makes the runs of a wave
    that depends on earlier results (``preview``: representative runs of it, validated before anything trains)."""

    name: str
    runs: Sequence[Planned] = ()
    build: Callable[["RunSet"], list[Planned]] | None = None
    preview: Sequence[Planned] = ()


@dataclass(frozen=True)
class Run:
    """A finished run: its tags, its job and the summary the store returned."""

    tags: dict[str, Any]
    job: Any
    summary: dict[str, Any]

    @property
    def test_accuracy(self) -> float:
        """Test accuracy of the checkpoint the run reports (read only for chosen comparisons)."""
        return self.summary["test_accuracy"]

    @property
    def val_accuracy(self) -> float:
        """Validation accuracy of the checkpoint the run reports (its best-validation epoch)."""
        return self.summary["best_val_accuracy"]

    @property
    def run_dir(self) -> str:
        """The run's directory in the store."""
        return self.summary["run_dir"]


@dataclass
class RunSet:
    """The runs trained so far, queried by tags."""

    runs: list[Run] = field(default_factory=list)

    def add(self, planned: Sequence[Planned], summaries: Sequence[dict[str, Any]]) -> None:
        """Record the summaries of a wave's planned runs (same order)."""
        self.runs += [Run(p.tags, p.job, s) for p, s in zip(planned, summaries)]

    def select(self, **tags: Any) -> list[Run]:
        """Runs whose tags include every ``key=value`` given (a missing tag counts as None)."""
        return [r for r in self.runs if all(r.tags.get(k) == v for k, v in tags.items())]

    def one(self, **tags: Any) -> Run:
        """The single run tagged ``tags`` (KeyError when there are none or several)."""
        found = self.select(**tags)
        if len(found) != 1:
            raise KeyError(f"expected one run tagged {tags}, found {len(found)}")
        return found[0]

    def by_seed(self, metric: str, **tags: Any) -> dict[int, float]:
        """``{seed: metric}`` of the runs tagged ``tags`` (metric: ``test_accuracy``, ``val_accuracy`` or a summary
        key)."""
        return {r.tags["seed"]: (getattr(r, metric) if metric in ("test_accuracy", "val_accuracy")
                                 else r.summary[metric]) for r in self.select(**tags)}


@dataclass(frozen=True)
class Study:
    """A study declared as data; :func:`run_study` runs it (module docstring)."""

    name: str
    config: type[StudyConfig]
    defaults: dict[str, Any]
    presets: dict[str, dict[str, Any]]
    plan: Callable[[Any, RunStore], list[Wave]]
    analyse: Callable[[Any, RunSet], dict[str, Any]]
    claims: Callable[[Any], list[Any]]
    report: Callable[[dict[str, Any]], Report]
    # extra checks of the whole plan before anything trains (taps exist, models build, budgets reachable...)
    check: Callable[[Any, list[Planned]], None] | None = None
    description: str = ""
    # claims declared as a template whose instances a declared selection picks from the results (the cells a
    # pre-registered rule sends to remedies): selected_claims(cfg, results) -> claims, decided like ``claims``
    selected_claims: Callable[[Any, dict[str, Any]], list[Any]] | None = None

    def load_config(self, config: str | Path | None = None, preset: str | None = None,
                    overrides: Sequence[str] = ()) -> Any:
        """defaults <- preset <- YAML file <- ``key=value`` overrides, validated (errors name the key)."""
        return load_study_config(self.config, self.defaults, self.presets, config, preset, list(overrides))


def validate_job(job: Any) -> None:
    """Registry names, options and hyperparameters of one planned job, before anything trains."""
    if isinstance(job, RunConfig):
        check_components(job)
    else:
        job.check()


def run_study(study: Study, config: str | Path | None = None, out: str | Path | None = None,
              preset: str | None = None, overrides: Sequence[str] | None = None,
              progress: bool | None = None) -> dict[str, Any]:
    """Run ``study``: validate, train wave by wave through the executor and the run store, analyse, decide the
    claims, write results.json and the report into ``out`` (default ``runs/<name>``). Returns the results."""
    cfg = study.load_config(config, preset, list(overrides or []))
    out = Path(out) if out is not None else Path("runs") / study.name
    store = RunStore(cfg.store or out / "runs")
    started = time.perf_counter()

    waves = study.plan(cfg, store)
    known = [p for w in waves for p in (*w.runs, *w.preview)]
    for planned in known:
        _validate(planned)
    if study.check is not None:
        study.check(cfg, known)

    runs = RunSet()
    total = sum(len(w.runs) for w in waves)
    bar = tqdm(total=total, desc=f"{study.name} study", unit="run", disable=progress is False)
    with executor_from_config(cfg.executor) as executor:
        for wave in waves:
            planned = list(wave.runs) if wave.build is None else wave.build(runs)
            if wave.build is not None:
                for p in planned:
                    _validate(p)
                bar.total += len(planned)
                bar.refresh()
            if planned:
                log.info("%s: wave '%s', %d runs", study.name, wave.name, len(planned))
                runs.add(planned, executor.run(store, [p.job for p in planned], progress=progress, bar=bar))
    bar.close()

    results: dict[str, Any] = {"study": study.name, **study.analyse(cfg, runs)}
    claims = list(study.claims(cfg))
    if study.selected_claims is not None:
        claims += study.selected_claims(cfg, results)
    results["claims"] = [claim.evaluate(results) for claim in claims]
    results.update(seconds=time.perf_counter() - started, runs_trained=store.trained, runs_reused=store.reused,
                   command=command_line(), executor={"name": cfg.executor.name, "workers": cfg.executor.workers})
    # the report is rendered from what results.json holds (a JSON round trip), exactly as `kdlab report` does
    results = json.loads(json.dumps(results))
    document = render_report(study, results)
    results["report_files"] = document.files()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / RESULTS, results)
    document.write(out)
    _print_summary(results, out)
    return results


def render_report(study: Study, results: dict[str, Any]) -> Report:
    """The study's report document from its results: the study's declared sections, then claims and how to
    reproduce it (the claims come first after the introduction, as a reader wants them)."""
    return study.report(results)


def rerender(out: str | Path) -> list[str]:
    """Rebuild report.md, report.html and the figures of the study in ``out`` from its results.json alone."""
    out = Path(out)
    path = out / RESULTS
    if not path.is_file():
        raise ConfigError(f"'{out}' has no {RESULTS}; allowed: the output directory of a study")
    results = json.loads(path.read_text())
    study = STUDIES.get(results.get("study", "?"))
    document = render_report(study, results)
    document.write(out)
    return document.files()


def _validate(planned: Planned) -> None:
    try:
        validate_job(planned.job)
    except ConfigError as exc:
        what = ", ".join(f"{k}={v}" for k, v in planned.tags.items())
        raise ConfigError(f"run ({what}): {exc}") from None


def _print_summary(results: dict[str, Any], out: Path) -> None:
    print(f"\n{results['study']} study ({results.get('dataset', '')}): {results['runs_trained']} runs trained, "
          f"{results['runs_reused']} reused, {results['seconds']:.0f} s")
    for claim in results["claims"]:
        print(f"claim [{verdict_word(claim['holds'], claim.get('not_applicable'))}] {claim['claim']}: "
              f"{claim['evidence']}")
    print(f"\nresults: {out / RESULTS}   report: {out / 'report.html'}")
