"""Equal-budget tuning on validation: trials through the run store and an executor, selection by mean validation
accuracy over tuning seeds, the chosen configuration retrained on fresh seeds and tested.

    result = tune(base_cfg, space, trials=12, seeds=[0], final_seeds=[1, 2, 3], store=store, executor=executor)
    results = tune_methods({"kd": (kd_cfg, kd_space), "dkd": (dkd_cfg, dkd_space)}, trials=12, ...)

Why this shape: a method compared at its paper's settings on another schedule and data set measures the
settings, not the method. The field's standard is an equal tuning budget per method, chosen on held-out data:
every method gets the same number of trials, each trial is scored by its best validation accuracy averaged
over the tuning seeds, and test accuracy is read only for the chosen configuration, trained again on seeds
the selection never saw (so the reported number carries no winner's-curse bias from the selection).

The pieces are public so that a study can schedule the waves itself: ``plan_trials`` (wave 1:
``TuningPlan.run_configs()``), ``trial_results`` + ``select_trial``, ``final_configs`` (wave 2) and
``assemble``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..analysis.stats import mean_std
from ..config import RunConfig
from ..errors import ConfigError
from ..executor import Executor
from ..space import Space
from ..store import RunStore
from .plan import TuningPlan, check_seeds, plan_trials

#: What a trial is scored by: the run's best validation accuracy over its epochs (the checkpoint it keeps).
SELECTION_KEY = "best_val_accuracy"


@dataclass(frozen=True)
class TrialResult:
    """One trial's values and its validation accuracy per tuning seed (test accuracy is not kept)."""

    index: int
    values: dict[str, Any]
    val_accuracy: dict[int, float]
    run_dirs: dict[int, str] = field(default_factory=dict)

    @property
    def mean_val(self) -> float:
        """Mean validation accuracy over the tuning seeds: the selection statistic."""
        return sum(self.val_accuracy.values()) / len(self.val_accuracy)


@dataclass(frozen=True)
class FinalRun:
    """The chosen configuration trained on a fresh seed: its validation and test accuracy."""

    seed: int
    val_accuracy: float
    test_accuracy: float
    run_dir: str


@dataclass(frozen=True)
class TuningResult:
    """Everything one method's tuning did and found, as data (``to_dict`` is its JSON form)."""

    label: str
    space: Space
    budget: int
    sampler: str
    search_seed: int
    tuning_seeds: tuple[int, ...]
    final_seeds: tuple[int, ...]
    trials: tuple[TrialResult, ...]
    chosen: int
    chosen_config: RunConfig
    finals: tuple[FinalRun, ...]

    @property
    def chosen_values(self) -> dict[str, Any]:
        return dict(self.trials[self.chosen].values)

    @property
    def selected_val(self) -> float:
        """The chosen trial's mean validation accuracy over the tuning seeds (what won the selection)."""
        return self.trials[self.chosen].mean_val

    @property
    def final_val(self) -> dict[str, float]:
        return mean_std([f.val_accuracy for f in self.finals])

    @property
    def final_test(self) -> dict[str, float]:
        return mean_std([f.test_accuracy for f in self.finals])

    @property
    def val_to_test_gap(self) -> float:
        """selected_val - mean final test accuracy: how much the selection score overstates the tested result
        (optimism of picking the best of several trials on the same validation set, plus any val/test shift)."""
        return self.selected_val - self.final_test["mean"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "space": self.space.to_dict(),
            "space_size": self.space.size(),
            "budget": self.budget,
            "trials_run": len(self.trials),
            "sampler": self.sampler,
            "search_seed": self.search_seed,
            "tuning_seeds": list(self.tuning_seeds),
            "final_seeds": list(self.final_seeds),
            "selected_on": "validation",
            "selection": f"mean {SELECTION_KEY} over the tuning seeds; ties go to the earlier trial",
            "trials": [{"trial": t.index, "values": t.values,
                        "val_accuracy": {str(s): v for s, v in t.val_accuracy.items()},
                        "mean_val_accuracy": t.mean_val, "run_dirs": {str(s): d for s, d in t.run_dirs.items()}}
                       for t in self.trials],
            "chosen": {"trial": self.chosen, "values": self.chosen_values, "mean_val_accuracy": self.selected_val},
            "final": [{"seed": f.seed, "val_accuracy": f.val_accuracy, "test_accuracy": f.test_accuracy,
                       "run_dir": f.run_dir} for f in self.finals],
            "final_val_accuracy": self.final_val,
            "final_test_accuracy": self.final_test,
            "val_to_test_gap": self.val_to_test_gap,
        }


def trial_results(plan: TuningPlan, summaries: Sequence[Mapping[str, Any]]) -> list[TrialResult]:
    """Each trial's validation accuracy per seed, from the run summaries of ``plan.run_configs()`` (same order).

    Only ``best_val_accuracy`` and ``run_dir`` are read: a trial's test accuracy never enters the tuning data.
    """
    expected = len(plan.trials) * len(plan.seeds)
    if len(summaries) != expected:
        raise ValueError(f"{plan.label}: {len(summaries)} summaries for {expected} trial runs")
    results, it = [], iter(summaries)
    for trial in plan.trials:
        val, dirs = {}, {}
        for seed in plan.seeds:
            summary = next(it)
            val[seed] = float(summary[SELECTION_KEY])
            if "run_dir" in summary:
                dirs[seed] = str(summary["run_dir"])
        results.append(TrialResult(trial.index, dict(trial.values), val, dirs))
    return results


def select_trial(trials: Sequence[TrialResult]) -> int:
    """The position of the trial with the highest mean validation accuracy; the first one on a tie.

    argmax_t (1/|S|) sum_{s in S} val_acc(t, s), S = tuning seeds. A NaN score never wins.
    """
    if not trials:
        raise ValueError("select_trial needs at least one trial")
    best = 0
    for i, trial in enumerate(trials):
        score, top = trial.mean_val, trials[best].mean_val
        if not math.isnan(score) and (math.isnan(top) or score > top):
            best = i
    return best


def final_configs(plan: TuningPlan, values: Mapping[str, Any], final_seeds: Sequence[int]) -> list[RunConfig]:
    """The chosen values trained once per fresh seed (wave 2)."""
    return [plan.config_for(values, seed) for seed in final_seeds]


def assemble(plan: TuningPlan, trials: Sequence[TrialResult], chosen: int, final_seeds: Sequence[int],
             final_summaries: Sequence[Mapping[str, Any]]) -> TuningResult:
    """The TuningResult of a plan from its trial results, the chosen trial and the final runs' summaries."""
    finals = tuple(FinalRun(seed, float(s[SELECTION_KEY]), float(s["test_accuracy"]), str(s.get("run_dir", "")))
                   for seed, s in zip(final_seeds, final_summaries))
    return TuningResult(plan.label, plan.space, plan.budget, plan.sampler, plan.search_seed, plan.seeds,
                        tuple(final_seeds), tuple(trials), chosen, plan.config_for(trials[chosen].values), finals)


def check_final_seeds(seeds: Sequence[int], final_seeds: Sequence[int]) -> tuple[int, ...]:
    """Fresh seeds: distinct integers none of which tuned (a reused seed would test on runs the selection saw)."""
    final_seeds = check_seeds("final_seeds", final_seeds)
    reused = sorted(set(final_seeds) & set(seeds))
    if reused:
        raise ConfigError(f"final_seeds={list(final_seeds)} is not allowed: {reused} also tuned; the chosen config is "
                          "tested on fresh seeds, so choose seeds not in seeds")
    return final_seeds


def run_plans(plans: Mapping[str, TuningPlan], final_seeds: Sequence[int], store: RunStore, executor: Executor,
              progress: bool | None = None) -> dict[str, TuningResult]:
    """Run every plan's trials in one wave, select each method on validation, run every chosen config's fresh
    seeds in a second wave; return each method's TuningResult."""
    for plan in plans.values():
        check_final_seeds(plan.seeds, final_seeds)
    trial_cfgs = [cfg for plan in plans.values() for cfg in plan.run_configs()]
    summaries = executor.run(store, trial_cfgs, progress=progress, desc="tuning trials")
    chosen, finals, start = {}, [], 0
    for label, plan in plans.items():
        n = len(plan.trials) * len(plan.seeds)
        trials = trial_results(plan, summaries[start:start + n])
        start += n
        index = select_trial(trials)
        chosen[label] = (trials, index)
        finals.extend(final_configs(plan, trials[index].values, final_seeds))
    final_summaries = executor.run(store, finals, progress=progress, desc="chosen configs, fresh seeds")
    results, start = {}, 0
    for label, plan in plans.items():
        trials, index = chosen[label]
        results[label] = assemble(plan, trials, index, final_seeds, final_summaries[start:start + len(final_seeds)])
        start += len(final_seeds)
    return results


def tune(base: RunConfig, space: Space, trials: int, seeds: Sequence[int], final_seeds: Sequence[int],
         store: RunStore, executor: Executor, *, search_seed: int = 0, label: str = "tuned",
         progress: bool | None = None) -> TuningResult:
    """Tune one configuration: ``trials`` points of ``space`` (the whole grid when it fits, else a sample seeded
    by ``search_seed``), each trained on every tuning seed; the best mean validation accuracy wins; the winner
    is trained on ``final_seeds`` (disjoint from ``seeds``) and tested. ``space`` keys are run-config paths."""
    plan = plan_trials(base, space, trials, seeds, search_seed, label)
    return run_plans({label: plan}, final_seeds, store, executor, progress)[label]


def tune_methods(methods: Mapping[str, tuple[RunConfig, Space]], trials: int, seeds: Sequence[int],
                 final_seeds: Sequence[int], store: RunStore, executor: Executor, *, search_seed: int = 0,
                 progress: bool | None = None) -> dict[str, TuningResult]:
    """Tune several methods under one equal budget: every method runs exactly ``trials`` trials on the same tuning
    seeds and is tested on the same fresh seeds. A method whose space has fewer than ``trials`` points is refused
    (it could not spend the budget), so no method wins by having been tried more often. All trials of all methods
    go to the executor as one wave, all final runs as a second."""
    if not methods:
        raise ConfigError("tune_methods needs at least one method")
    plans = {label: plan_trials(base, space, trials, seeds, search_seed, label)
             for label, (base, space) in methods.items()}
    short = {label: plan.space.size() for label, plan in plans.items() if len(plan.trials) != trials}
    if short:
        listing = ", ".join(f"{label} has {size}" for label, size in short.items())
        raise ConfigError(f"trials={trials} is not allowed for an equal budget: {listing} points; use trials <= "
                          f"{min(short.values())} or enlarge those spaces")
    return run_plans(plans, final_seeds, store, executor, progress)
