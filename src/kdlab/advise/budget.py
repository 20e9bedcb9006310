"""The pilot's clock: a wall-clock budget, and a cost model that says whether a wave of runs still fits in it.

Every wave of runs is estimated before it starts and measured when it ends; the estimate of the next wave comes from
the runs measured so far. A run's cost is modelled as

    seconds(run) = factor(kind) * ce_seconds(work),   work = epochs * (n_train + n_val)

(the samples the run passes forward: training plus the per-epoch validation pass). ``ce_seconds`` is the mean of the
CE runs measured at exactly that work (the pilot trains CE-only students at every rung's size before the rung's
candidates, so a candidate's estimate comes from runs of its own shape), else a least-squares line ``overhead + rate
* work`` through the CE runs measured so far (to decide whether the next, larger CE rung fits). ``factor`` is 1 for
CE and, for a run that distils, the largest ratio of a distillation run measured so far to the CE estimate for the
same work (among the runs of that very work once there are some; before any was measured: ``DISTIL_FACTOR``; the
largest, because an estimate too low overruns the budget while one too high only shortens the pilot). A wave of runs
on P workers ends within

    makespan <= sum_i seconds_i / P + (1 - 1/P) * max_i seconds_i

whatever the order the runs are handed out in (Graham, "Bounds on Multiprocessing Timing Anomalies", SIAM J. Appl.
Math. 1969). What executing costs beyond the runs themselves (claiming a run directory, writing its config and
summary, starting workers) is added per run: the last wave's wall time minus that bound, per run and worker. The
wave's estimate is the sum times ``SAFETY``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

#: Cost of a distillation epoch relative to a CE epoch before any distillation run was measured: the README's
#: bench_loop measured 1.22 for the MLP student with a cached teacher; rounded up.
DISTIL_FACTOR = 1.3
#: Multiplier on every wave estimate: a wave is started only when 1.1 x its estimate fits in the time left.
SAFETY = 1.1


class Budget:
    """A wall-clock budget in seconds, started at ``started`` (default: when made); ``clock`` returns monotonic
    seconds (tests pass a fake)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic,
                 started: float | None = None) -> None:
        if not seconds > 0 or not math.isfinite(seconds):
            raise ValueError(f"budget seconds={seconds!r} is not allowed; must be a finite number > 0")
        self.seconds = float(seconds)
        self.clock = clock
        self.started = clock() if started is None else float(started)

    def elapsed(self) -> float:
        """Seconds since the budget started."""
        return self.clock() - self.started

    def remaining(self) -> float:
        """Seconds left (negative when overrun)."""
        return self.seconds - self.elapsed()


@dataclass(frozen=True)
class RunCost:
    """What a run costs to train, in the model's terms: its work (samples passed forward) and whether it distils."""

    work: float
    distils: bool


def run_work(epochs: int, n_train: int, n_val: int) -> float:
    """Samples a run passes forward: ``epochs * (n_train + n_val)`` (training, then the per-epoch validation pass)."""
    return float(epochs * (n_train + n_val))


def makespan_bound(seconds: Sequence[float], workers: int) -> float:
    """Graham's bound on the wall time of independent runs on ``workers`` workers: sum / P + (1 - 1/P) * max."""
    if not seconds:
        return 0.0
    p = max(1, min(int(workers), len(seconds)))
    return sum(seconds) / p + (1 - 1 / p) * max(seconds)


def fit_line(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b * x`` with ``a, b >= 0``: the unconstrained fit when both are non-negative, else the
    better of the two one-parameter fits (``a = 0``: b = sum(xy) / sum(x^2); ``b = 0``: a = mean(y)). With a single
    distinct x the line goes through the origin (b = mean(y / x)), which overestimates larger runs and underestimates
    smaller ones no more than the data allow."""
    if not x:
        raise ValueError("fit_line needs at least one point")
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((xi - mx) ** 2 for xi in x)
    if sxx > 0:
        b = sum((xi - mx) * (yi - my) for xi, yi in zip(x, y)) / sxx
        a = my - b * mx
        if a >= 0 and b >= 0:
            return a, b
    through_origin = sum(xi * yi for xi, yi in zip(x, y)) / sum(xi * xi for xi in x) if any(x) else 0.0
    flat = my

    def sse(a: float, b: float) -> float:
        return sum((yi - a - b * xi) ** 2 for xi, yi in zip(x, y))

    if sxx == 0 or sse(0.0, through_origin) <= sse(flat, 0.0):
        return 0.0, max(0.0, through_origin)
    return max(0.0, flat), 0.0


@dataclass
class CostModel:
    """Per-run and per-wave cost estimates from the runs measured so far (module docstring)."""

    workers: int = 1
    ce_runs: list[tuple[float, float]] = field(default_factory=list)
    distil_runs: list[tuple[float, float]] = field(default_factory=list)
    overhead_per_run: float = 0.0

    def observe(self, costs: Sequence[RunCost], seconds: Sequence[float], wall: float,
                trained: Sequence[bool] | None = None, unmodelled: Sequence[float] = ()) -> None:
        """Record a finished wave: each run's cost and seconds, and the wave's wall time. ``trained[i]`` False marks
        a run the store already held: its recorded seconds still say what such a run costs to train, but it took
        no time in this wave, so only the trained runs enter the per-run overhead. ``unmodelled``: seconds of runs
        of the wave that teach the model nothing (e.g. a run that also built a teacher's output cache), subtracted
        from the wall time with the others."""
        trained = [True] * len(costs) if trained is None else list(trained)
        for cost, s in zip(costs, seconds):
            (self.distil_runs if cost.distils else self.ce_runs).append((cost.work, float(s)))
        new = [float(s) for s, t in zip(seconds, trained) if t] + [float(s) for s in unmodelled]
        if new:
            p = max(1, min(self.workers, len(new)))
            self.overhead_per_run = max(0.0, wall - makespan_bound(new, self.workers)) * p / len(new)

    def line(self) -> tuple[float, float]:
        """(overhead, rate) of a CE run, fitted on the CE runs measured so far."""
        if not self.ce_runs:
            raise ValueError("no CE run measured yet: the cost model has nothing to extrapolate from")
        return fit_line([w for w, _ in self.ce_runs], [s for _, s in self.ce_runs])

    def ce_seconds(self, work: float) -> float:
        """Estimated seconds of a CE run of ``work``: the mean of the CE runs measured at that work, else the line."""
        same = [s for w, s in self.ce_runs if w == work]
        if same:
            return sum(same) / len(same)
        a, b = self.line()
        return a + b * work

    def distil_factor(self, work: float | None = None) -> float:
        """The largest ratio of a measured distillation run's seconds to the CE estimate for the same work: among
        the runs of exactly ``work`` when there are some, else among all; ``DISTIL_FACTOR`` before any was measured."""
        runs = [(w, s) for w, s in self.distil_runs if w == work] or self.distil_runs
        ratios = [s / self.ce_seconds(w) for w, s in runs if self.ce_seconds(w) > 0]
        return max(ratios) if ratios else DISTIL_FACTOR

    def run_seconds(self, cost: RunCost) -> float:
        """Estimated seconds of one run."""
        return self.ce_seconds(cost.work) * (self.distil_factor(cost.work) if cost.distils else 1.0)

    def wave_seconds(self, costs: Sequence[RunCost]) -> float:
        """Estimated wall time of a wave: (the makespan bound of its runs + the per-run overhead on P workers) x
        SAFETY."""
        if not costs:
            return 0.0
        p = max(1, min(self.workers, len(costs)))
        bound = makespan_bound([self.run_seconds(c) for c in costs], self.workers)
        return (bound + len(costs) * self.overhead_per_run / p) * SAFETY
