"""The budgeted pilot: CE-only students at every rung's size, then successive halving over (teacher x method x
hyperparameters), every wave of runs started only when the cost model says it ends within the budget.

The runs are ordinary RunConfigs: they go through the run store and the executor like any study's runs, so a rerun of
``kdlab advise`` reuses every finished pilot run. A rung trains the student's own recipe (``student`` stage) shortened
to the rung's fraction of its epochs, on the rung's fraction of its training images, on the rung's first seeds:

    epochs_k = max(1, round(epochs_fraction_k * student.epochs)),  images_k = ceil(subset_fraction_k * n_train)

The CE-only students come first, one per rung size and seed: they are the baselines every gain is paired with, the
student's learning curve (validation accuracy against training images and epochs), and the cost model's first
measurements. Two short distillation runs per teacher then measure what distilling adds. The number of
hyperparameter points per (teacher, method) is then the largest (at most ``pilot.points``) whose whole halving
schedule the cost model says fits in the time left (``PLAN_MARGIN`` to spare); a rung that would not end
in time is not started, so the pilot's choice comes from the last rung that ran.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..config import DataConfig, RunConfig, TeacherConfig
from ..errors import ConfigError
from ..studies.common import StageConfig, stage_run_config
from ..tuning.engine import SELECTION_KEY
from ..validate import check_components
from .budget import Budget, CostModel, RunCost, run_work
from .config import RungConfig
from .halving import Candidate, Halving, Scores, first_rung, successive_halving

log = logging.getLogger("kdlab")

#: Label of the CE-only student in the pilot's tables.
CE = "ce"
#: The rung index under which the calibration runs are kept (no rung of the schedule).
CALIBRATION = -2
#: The first rung is sized so that the whole schedule's estimate, times this, fits the time left: the later rungs'
#: estimates rest on fewer measurements of their shape, and a last rung that cannot run leaves the pick without the
#: seeds its gain interval needs (on Fashion-MNIST, a first rung took 19% longer than estimated and did just that).
PLAN_MARGIN = 1.25

#: Runs a list of RunConfigs (through the store and an executor) and returns their summaries in order.
RunWave = Callable[[list[RunConfig]], list[dict[str, Any]]]


@dataclass(frozen=True)
class RungShape:
    """What a rung's runs train: epochs, training images (None: the student's whole training set) and seeds."""

    epochs: int
    train_subset: int | None
    images: int
    seeds: tuple[int, ...]


def rung_shapes(rungs: Sequence[RungConfig], student: StageConfig, n_train: int,
                seeds: Sequence[int]) -> list[RungShape]:
    """Each rung's epochs, images and seeds from its fractions of the student's recipe (module docstring);
    ``n_train`` is the number of training images the student's recipe sees."""
    shapes = []
    for rung in rungs:
        images = max(1, math.ceil(rung.subset * n_train))
        subset = student.train_subset if images >= n_train else images
        shapes.append(RungShape(max(1, round(rung.epochs * student.epochs)), subset, min(images, n_train),
                                tuple(seeds[:rung.seeds])))
    return shapes


@dataclass
class PilotSetup:
    """Everything a pilot run's config is made of: the data, the student's recipe, the teachers by label."""

    data: DataConfig
    student: StageConfig
    teachers: dict[str, TeacherConfig]
    shapes: list[RungShape]
    n_val: int

    def stage(self, rung: int) -> StageConfig:
        """The student's recipe at rung ``rung``: its epochs and images; one checkpoint, at the end (a pilot run is
        short, and the best epoch's weights are kept in memory until then)."""
        shape = self.shapes[rung]
        return self.student.model_copy(update={"epochs": shape.epochs, "train_subset": shape.train_subset,
                                               "keep_epochs": [], "checkpoint_every": shape.epochs})

    def run_config(self, rung: int, candidate: Candidate | None, seed: int) -> RunConfig:
        """The RunConfig of ``candidate`` (None: the CE-only student) at rung ``rung`` with ``seed``."""
        cfg = stage_run_config(self.stage(rung), self.data, seed,
                               loss=candidate.loss() if candidate is not None else None)
        if candidate is not None:
            cfg = cfg.model_copy(update={"teacher": self.teachers[candidate.teacher]})
        return cfg

    def cost(self, rung: int, distils: bool) -> RunCost:
        """The cost-model terms of one run at rung ``rung``."""
        shape = self.shapes[rung]
        return RunCost(run_work(shape.epochs, shape.images, self.n_val), distils)


@dataclass
class PilotResult:
    """What the pilot trained and measured. ``summaries[(rung, key, seed)]`` is a run's summary (``key``: a
    candidate's key, or ``ce``); ``ce_rungs`` the rungs whose CE students all ran."""

    points: int = 0
    halving: Halving = field(default_factory=Halving)
    summaries: dict[tuple[int, str, int], dict[str, Any]] = field(default_factory=dict)
    ce_rungs: list[int] = field(default_factory=list)
    stop_reason: str | None = None
    waves: list[dict[str, Any]] = field(default_factory=list)

    def ce_by_seed(self, rung: int, metric: str = SELECTION_KEY) -> dict[int, float]:
        """The CE-only students' ``metric`` per seed at ``rung``."""
        return {seed: float(s[metric]) for (r, key, seed), s in self.summaries.items() if r == rung and key == CE}

    def by_seed(self, rung: int, candidate: Candidate, metric: str = SELECTION_KEY) -> dict[int, float]:
        """``candidate``'s ``metric`` per seed at ``rung``."""
        return {seed: float(s[metric]) for (r, key, seed), s in self.summaries.items()
                if r == rung and key == candidate.key}


def rung_scores(candidates: Sequence[Candidate], seeds: Sequence[int],
                summaries: Sequence[dict[str, Any]]) -> Scores:
    """``{candidate key: {seed: best validation accuracy}}`` from the summaries of ``candidates x seeds`` (candidate
    by candidate, seed by seed). Only ``best_val_accuracy`` is read: no choice of the pilot can see test accuracy."""
    it = iter(summaries)
    return {c.key: {seed: float(next(it)[SELECTION_KEY]) for seed in seeds} for c in candidates}


class Pilot:
    """Runs the pilot's waves against a budget (module docstring). ``run_wave`` trains a list of RunConfigs and
    returns their summaries; ``budget`` holds the clock (tests pass a fake one with a fake ``run_wave``)."""

    def __init__(self, setup: PilotSetup, rungs: Sequence[RungConfig], methods: Sequence[str], max_points: int,
                 search_seed: int, budget: Budget, run_wave: RunWave, workers: int = 1,
                 reserve_seconds: float = 0.0, is_finished: Callable[[RunConfig], bool] = lambda cfg: False) -> None:
        self.setup = setup
        self.keeps = [r.keep for r in rungs]
        self.methods = list(methods)
        self.max_points = max_points
        self.search_seed = search_seed
        self.budget = budget
        self.run_wave = run_wave
        self.cost = CostModel(workers=workers)
        self.reserve = reserve_seconds
        # a run the store holds finished costs nothing now: it is left out of estimates and of the measured overhead
        self.is_finished = is_finished
        self.result = PilotResult()

    # ------------------------------------------------------------------------------------------ waves and clock

    def wave(self, name: str, jobs: list[tuple[tuple[int, str, int], RunConfig, RunCost | None]],
             estimate: float | None) -> list[dict[str, Any]]:
        """Train one wave of ``((rung, key, seed), config, cost)`` jobs, record their summaries and what they cost
        (a job without a cost, e.g. a teacher's own training, is not a student run and teaches the model nothing)."""
        finished = [self.is_finished(cfg) for _, cfg, _ in jobs]
        started = self.budget.clock()
        summaries = self.run_wave([cfg for _, cfg, _ in jobs])
        wall = self.budget.clock() - started
        measured = [(c, float(s.get("seconds", 0.0)), not done)
                    for (_, _, c), s, done in zip(jobs, summaries, finished) if c is not None]
        unmodelled = [float(s.get("seconds", 0.0)) for (_, _, c), s, done in zip(jobs, summaries, finished)
                      if c is None and not done]
        if measured:
            costs, seconds, trained = (list(column) for column in zip(*measured))
            self.cost.observe(costs, seconds, wall, trained, unmodelled)
        for (key, _, _), summary in zip(jobs, summaries):
            self.result.summaries[key] = summary
        self.result.waves.append({"wave": name, "runs": len(jobs), "estimate_seconds": estimate,
                                  "seconds": wall, "elapsed_after": self.budget.elapsed()})
        log.info("advise: %s, %d runs in %.1f s (estimated %s)", name, len(jobs), wall,
                 f"{estimate:.1f} s" if estimate is not None else "-")
        return summaries

    def estimate(self, jobs: list[tuple[tuple[int, str, int], RunConfig, RunCost]]) -> float:
        """Estimated wall time of a wave of jobs: the cost model over the jobs the store does not hold finished."""
        return self.cost.wave_seconds([c for _, cfg, c in jobs if not self.is_finished(cfg)])

    def _left(self) -> float:
        return self.budget.remaining() - self.reserve

    def _fits(self, seconds: float) -> bool:
        return seconds <= self._left()

    def _ce_jobs(self, rung: int) -> list[tuple[tuple[int, str, int], RunConfig, RunCost]]:
        return [((rung, CE, seed), self.setup.run_config(rung, None, seed), self.setup.cost(rung, False))
                for seed in self.setup.shapes[rung].seeds]

    def _candidate_jobs(self, rung: int, candidates: Sequence[Candidate]
                        ) -> list[tuple[tuple[int, str, int], RunConfig, RunCost]]:
        return [((rung, c.key, seed), self.setup.run_config(rung, c, seed), self.setup.cost(rung, True))
                for c in candidates for seed in self.setup.shapes[rung].seeds]

    # -------------------------------------------------------------------------------------------- the pilot

    def check(self) -> None:
        """Every run config the pilot may train at its first rung (at ``max_points``), validated before anything
        trains; a later rung's configs differ only in epochs, images and seed."""
        for candidate in self.first_rung(self.max_points):
            try:
                check_components(self.setup.run_config(0, candidate, self.setup.shapes[0].seeds[0]))
            except ConfigError as exc:
                raise ConfigError(f"pilot candidate {candidate.key}: {exc}") from None

    def first_rung(self, points: int) -> list[Candidate]:
        """The first rung's candidates with ``points`` hyperparameter points per (teacher, method)."""
        return first_rung(list(self.setup.teachers), self.methods, points, self.search_seed)

    def run_ce(self) -> None:
        """The CE-only students, rung by rung (smallest first); stops before a rung that would not end in time."""
        for rung in range(len(self.setup.shapes)):
            jobs = self._ce_jobs(rung)
            estimate = self.estimate(jobs) if self.cost.ce_runs else None
            if estimate is not None and not self._fits(estimate):
                self.result.stop_reason = (f"the CE-only students of rung {rung} need an estimated {estimate:.0f} s, "
                                           f"{self._left():.0f} s were left after the analysis reserve")
                return
            self.wave(f"CE-only students, rung {rung}", jobs, estimate)
            self.result.ce_rungs.append(rung)

    def schedule_seconds(self, points: int, rungs: int) -> float:
        """Estimated wall time of the first ``rungs`` rungs of successive halving with ``points`` points per
        (teacher, method): each rung's wave at the declared survivors of the one before."""
        first = self.first_rung(points)
        count, total = len(first), self.estimate(self._candidate_jobs(0, first)) if rungs else 0.0
        for rung in range(1, rungs):
            keep = self.keeps[rung - 1]
            count = min(count, keep) if keep is not None else count
            # which candidates survive is not known yet: every run of a later rung is counted as new
            runs = count * len(self.setup.shapes[rung].seeds)
            total += self.cost.wave_seconds([self.setup.cost(rung, True)] * runs)
        return total

    def choose_points(self) -> int:
        """The most hyperparameter points per (teacher, method), at most ``max_points``, whose whole schedule (the
        rungs whose CE students ran) fits in the time left with ``PLAN_MARGIN`` to spare; 1 when none does (the
        rungs that fit then run)."""
        rungs = len(self.result.ce_rungs)
        for points in range(self.max_points, 0, -1):
            if self._fits(PLAN_MARGIN * self.schedule_seconds(points, rungs)):
                return points
        return 1

    def run(self) -> PilotResult:
        """CE-only students, then successive halving within the budget; the result holds every summary."""
        self.run_ce()
        return self.run_halving()

    def calibrate(self) -> None:
        """Measure what distilling costs before the first rung is sized: two first-rung runs per teacher (the first
        two points of the first method), kept apart from the rungs (rung ``CALIBRATION``). Only the second run of each
        teacher is measured: the first also loads the teacher and caches its outputs for that training set, a
        one-off that would make every later estimate too high."""
        jobs: list[tuple[tuple[int, str, int], RunConfig, RunCost | None]] = []
        seed = self.setup.shapes[0].seeds[0]
        for teacher in self.setup.teachers:
            probes = first_rung([teacher], self.methods[:1], 2, self.search_seed)
            for i, candidate in enumerate(probes):
                jobs.append(((CALIBRATION, candidate.key, seed), self.setup.run_config(0, candidate, seed),
                             self.setup.cost(0, True) if i > 0 else None))
        estimate = self.cost.wave_seconds([self.setup.cost(0, True)] * len(jobs))
        if self._fits(estimate):
            self.wave("distillation cost calibration", jobs, estimate)

    def run_halving(self) -> PilotResult:
        """Successive halving over the rungs whose CE-only students ran, each rung started only when it fits."""
        if not self.result.ce_rungs:
            self.result.stop_reason = self.result.stop_reason or "no rung fits the budget"
            return self.result
        self.calibrate()
        self.result.points = self.choose_points()
        keeps = self.keeps[:len(self.result.ce_rungs)]
        keeps[-1] = None  # the last rung that can run picks the winner
        estimates: dict[int, float] = {}

        def may_start(rung: int, candidates: list[Candidate]) -> tuple[bool, float, str | None]:
            estimates[rung] = self.estimate(self._candidate_jobs(rung, candidates))
            if self._fits(estimates[rung]):
                return True, estimates[rung], None
            return False, estimates[rung], (f"rung {rung} ({len(candidates)} candidates x "
                                            f"{len(self.setup.shapes[rung].seeds)} seeds) needs an estimated "
                                            f"{estimates[rung]:.0f} s, {self._left():.0f} s were left after the "
                                            "analysis reserve")

        def train(rung: int, candidates: list[Candidate]) -> Scores:
            summaries = self.wave(f"rung {rung}", self._candidate_jobs(rung, candidates), estimates[rung])
            return rung_scores(candidates, self.setup.shapes[rung].seeds, summaries)

        self.result.halving = successive_halving(self.first_rung(self.result.points), keeps, train, may_start,
                                                 self.budget.clock, shrink_to_best=True)
        self.result.stop_reason = self.result.stop_reason or self.result.halving.stop_reason
        return self.result
