"""The pilot's clock: cost model arithmetic on hand numbers, and a fake clock showing that the budget stops the pilot
(no timing: every run advances a fake clock by a known cost)."""

from __future__ import annotations

import math

import pytest

from kdlab.advise.budget import SAFETY, Budget, CostModel, RunCost, fit_line, makespan_bound, run_work
from kdlab.advise.config import RungConfig
from kdlab.advise.pilot import CE, Pilot, PilotSetup, rung_shapes
from kdlab.config import Component, DataConfig, TeacherConfig
from kdlab.studies.common import StageConfig

N_TRAIN, N_VAL = 400, 100
RATE, OVERHEAD, DISTIL = 1e-3, 0.5, 1.5  # seconds per sample pass, per run, and distillation's factor


def test_makespan_bound_is_grahams():
    assert makespan_bound([], 2) == 0.0
    assert makespan_bound([3.0, 1.0, 2.0], 1) == 6.0
    assert makespan_bound([3.0, 1.0, 2.0], 2) == pytest.approx(6.0 / 2 + 0.5 * 3.0)
    assert makespan_bound([4.0], 8) == 4.0  # one run never spreads over workers


def test_fit_line_recovers_a_line_and_clips_negative_parts():
    assert fit_line([1.0, 2.0, 3.0], [3.0, 5.0, 7.0]) == pytest.approx((1.0, 2.0))
    # a negative intercept is refused: the best of the line through 0 and the flat line
    a, b = fit_line([1.0, 2.0], [0.0, 2.0])
    assert a == 0.0 and b == pytest.approx(2.0 / 5.0 * 2.0)  # sum(xy) / sum(x^2) = 4 / 5
    assert fit_line([2.0, 2.0], [4.0, 6.0]) == pytest.approx((0.0, 2.5))  # one distinct x: through the origin


def test_cost_model_uses_runs_of_the_same_shape_then_the_line_and_learns_the_distillation_factor():
    model = CostModel(workers=1)
    costs = [RunCost(100.0, False), RunCost(300.0, False), RunCost(300.0, False)]
    model.observe(costs, [2.0, 4.0, 5.0], wall=12.5)
    assert model.overhead_per_run == pytest.approx((12.5 - 11.0) / 3)
    assert model.ce_seconds(300.0) == pytest.approx(4.5)  # measured at that work: their mean
    # least squares through (100, 2), (300, 4), (300, 5): mean x 700/3, mean y 11/3, Sxy 1000/3, Sxx 80000/3
    a, b = model.line()
    assert (a, b) == pytest.approx((11 / 3 - 0.0125 * 700 / 3, 0.0125))
    assert model.ce_seconds(500.0) == pytest.approx(0.75 + 6.25)
    assert model.run_seconds(RunCost(300.0, True)) == pytest.approx(4.5 * 1.3)  # the prior factor
    model.observe([RunCost(300.0, True)], [9.0], wall=9.5)  # CE takes 4.5 s at that work: factor 2
    assert model.distil_factor() == pytest.approx(2.0)
    assert model.overhead_per_run == pytest.approx(0.5)
    assert model.wave_seconds([RunCost(300.0, True)] * 2) == pytest.approx((18.0 + 2 * 0.5) * SAFETY)
    # a run that teaches the model nothing (it also built a teacher's cache) still took its time in the wave
    model.observe([RunCost(300.0, True)], [9.0], wall=25.0, unmodelled=[15.0])
    assert model.overhead_per_run == pytest.approx((25.0 - 24.0) / 2)
    two = CostModel(workers=2, ce_runs=[(300.0, 4.0)], overhead_per_run=1.0)
    # 3 runs of 4 s on 2 workers: 12 / 2 + 4 / 2 = 8 s, plus 3 x 1 s of overhead over 2 workers
    assert two.wave_seconds([RunCost(300.0, False)] * 3) == pytest.approx((8.0 + 1.5) * SAFETY)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _images(cfg) -> int:
    return cfg.data.train_subset or N_TRAIN


def fake_wave(clock: FakeClock, log: list):
    """Trains nothing: each run costs OVERHEAD + RATE * epochs * (images + N_VAL), times DISTIL with a teacher, on one
    worker; validation accuracy grows with the temperature and test accuracy falls with it."""
    def run_wave(cfgs):
        out = []
        for cfg in cfgs:
            seconds = (OVERHEAD + RATE * cfg.train.epochs * (_images(cfg) + N_VAL)) * (DISTIL if cfg.teacher else 1)
            clock.now += seconds
            t = cfg.loss.options.get("temperature", 0.0)
            out.append({"best_val_accuracy": 0.5 + 0.01 * t + 0.001 * cfg.train.epochs,
                        "test_accuracy": 0.9 - 0.01 * t, "seconds": seconds, "run_dir": "nowhere"})
        log.append(len(cfgs))
        return out
    return run_wave


RUNGS = [RungConfig(epochs=0.25, subset=0.5, seeds=1, keep=4), RungConfig(epochs=0.5, subset=1.0, seeds=1, keep=2),
         RungConfig(epochs=1.0, subset=1.0, seeds=2)]


def make_pilot(seconds: float, clock: FakeClock, log: list, points: int = 4) -> Pilot:
    student = StageConfig(model=Component(name="mlp", width=16, depth=1), epochs=20)
    shapes = rung_shapes(RUNGS, student, N_TRAIN, [0, 1])
    setup = PilotSetup(DataConfig(name="digits", val_size=N_VAL), student,
                       {"t": TeacherConfig(run="teacher_run")}, shapes, N_VAL)
    return Pilot(setup, RUNGS, ["kd"], points, 0, Budget(seconds, clock), fake_wave(clock, log))


def run(epochs, images, distil):
    """What the fake pilot's run costs."""
    return (OVERHEAD + RATE * epochs * (images + N_VAL)) * (DISTIL if distil else 1)


CALIBRATION = 2 * run(5, 200, True)  # two first-rung distillation runs per teacher measure distillation's cost


def full_schedule_seconds(points: int) -> float:
    """The fake pilot's exact cost: CE students at every rung, the calibration run, then points -> 4 -> 2
    candidates."""
    ce = run(5, 200, False) + run(10, 400, False) + 2 * run(20, 400, False) + CALIBRATION
    return (ce + points * run(5, 200, True) + min(points, 4) * run(10, 400, True)
            + min(points, 2) * 2 * run(20, 400, True))


def test_rung_shapes_follow_the_declared_fractions():
    student = StageConfig(model=Component(name="mlp"), epochs=20, train_subset=None)
    shapes = rung_shapes(RUNGS, student, N_TRAIN, [0, 1])
    assert [(s.epochs, s.train_subset, s.images, s.seeds) for s in shapes] == [
        (5, 200, 200, (0,)), (10, None, 400, (0,)), (20, None, 400, (0, 1))]


def test_a_large_budget_runs_every_rung_with_the_declared_survivors():
    clock, log = FakeClock(), []
    pilot = make_pilot(10_000.0, clock, log, points=6)
    result = pilot.run()
    assert result.points == 6 and result.stop_reason is None
    assert [len(r.candidates) for r in result.halving.rungs] == [6, 4, 2]
    # CE per rung, the calibration runs, then 6 candidates, 4 survivors, 2 survivors x 2 seeds
    assert log == [1, 1, 2, 2, 6, 4, 4]
    assert clock.now - 100.0 == pytest.approx(full_schedule_seconds(6))
    # the pick is the validation-best (highest temperature), although it is the test-worst
    assert result.halving.chosen().hyperparameters["temperature"] == 8.0
    assert set(result.ce_by_seed(2)) == {0, 1}


def test_the_budget_lowers_the_points_then_stops_the_pilot_before_a_rung_that_would_not_end_in_time():
    full = full_schedule_seconds(6)
    # room for the CE students and about half of the schedule: fewer points, and still a rung that cannot start
    clock, log = FakeClock(), []
    budget = 0.6 * full
    pilot = make_pilot(budget, clock, log, points=6)
    result = pilot.run()
    elapsed = clock.now - 100.0
    assert elapsed <= budget
    assert 1 <= result.points < 6
    assert result.stop_reason is not None or len(result.halving.rungs) == 3
    # a tighter budget: CE students fit, the last rung does not
    clock, log = FakeClock(), []
    ce_and_two = full_schedule_seconds(1) - 2 * run(20, 400, True)
    pilot = make_pilot(ce_and_two + 1.0, clock, log, points=6)
    result = pilot.run()
    assert clock.now - 100.0 <= ce_and_two + 1.0
    assert result.points == 1
    assert result.halving.stopped_before == 2 and "rung 2" in result.stop_reason
    assert len(result.halving.rungs) == 2  # its pick comes from rung 1
    assert result.halving.chosen() is not None


def test_no_time_for_any_candidate_leaves_only_the_first_ce_students():
    clock, log = FakeClock(), []
    first_ce = OVERHEAD + RATE * 5 * (200 + N_VAL)  # the first CE wave starts unchecked: nothing is measured yet
    pilot = make_pilot(first_ce + 0.5, clock, log, points=6)
    result = pilot.run()
    assert log == [1]
    assert result.ce_rungs == [0] and "CE-only students of rung 1" in result.stop_reason
    assert result.halving.rungs == [] and result.halving.chosen() is None
    assert result.halving.stopped_before == 0
    assert clock.now - 100.0 == pytest.approx(first_ce)


def test_budget_refuses_nonsense():
    with pytest.raises(ValueError, match="budget"):
        Budget(0.0)
    with pytest.raises(ValueError, match="budget"):
        Budget(math.inf)
    assert run_work(3, 100, 20) == 360.0
    assert CE == "ce"


def test_runs_the_store_holds_cost_nothing_in_estimates_but_their_seconds_still_teach_the_model():
    clock, log = FakeClock(), []
    pilot = make_pilot(10_000.0, clock, log, points=2)
    pilot.run()
    # the same pilot again, every run finished in the store: a wave of them is estimated at 0 s (plus nothing)
    clock2, log2 = FakeClock(), []
    again = make_pilot(5.0, clock2, log2, points=2)
    again.is_finished = lambda cfg: True
    again.run_wave = lambda cfgs: [{"best_val_accuracy": 0.5, "test_accuracy": 0.5, "seconds": 3.0,
                                    "run_dir": "x"} for _ in cfgs]
    result = again.run()
    assert len(result.halving.rungs) == 3 and result.stop_reason is None
    assert again.cost.ce_seconds(run_work(20, 400, N_VAL)) == 3.0  # recorded seconds, not this wave's wall time
    assert again.estimate(again._candidate_jobs(2, again.first_rung(2))) == 0.0
