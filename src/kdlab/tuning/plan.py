"""Trials as ordinary run configs: a base RunConfig with a space's values set, once per tuning seed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..config import RunConfig, parse_config
from ..errors import ConfigError
from ..space import Space
from ..validate import check_components

#: The config key that carries a run's seed; the tuner sets it from the tuning and final seeds.
SEED_KEY = "train.seed"


def with_values(base: RunConfig, values: Mapping[str, Any]) -> RunConfig:
    """``base`` with each dotted key of ``values`` set (``{"loss.temperature": 2.0, "train.seed": 1}``), validated.

    A key into a section that does not exist yet creates it (a loss option the base leaves at its default);
    a key through a plain value, or a value the schema refuses, is a ConfigError naming the key.
    """
    raw = json.loads(json.dumps(base.to_dict()))
    for key, value in values.items():
        node = raw
        *parents, leaf = key.split(".")
        for i, part in enumerate(parents):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"space key '{key}': '{'.'.join(parents[:i + 1])}' is a value in the config, not "
                                  "a section")
            node = child
        node[leaf] = value
    try:
        return parse_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"a trial's config ({_values_text(values)}): {exc}") from None


@dataclass(frozen=True)
class TrialPlan:
    """One point of the space: its values and its run config per tuning seed."""

    index: int
    values: dict[str, Any]
    configs: dict[int, RunConfig]


@dataclass(frozen=True)
class TuningPlan:
    """Every trial of one method: the base config, the space, the budget and the points it visits.

    ``sampler`` is ``grid`` when the whole grid fits the budget, else ``random`` (a seeded sample of
    ``budget`` grid points, ``Space.points``).
    """

    label: str
    base: RunConfig
    space: Space
    budget: int
    search_seed: int
    seeds: tuple[int, ...]
    trials: tuple[TrialPlan, ...]

    @property
    def sampler(self) -> str:
        return "grid" if len(self.trials) == self.space.size() else "random"

    def run_configs(self) -> list[RunConfig]:
        """Every trial's run configs, trial by trial and seed by seed (the order ``trial_results`` reads back)."""
        return [trial.configs[seed] for trial in self.trials for seed in self.seeds]

    def config_for(self, values: Mapping[str, Any], seed: int | None = None) -> RunConfig:
        """The base config with ``values`` set, and ``train.seed`` when ``seed`` is given."""
        return with_values(self.base, {**values, **({SEED_KEY: seed} if seed is not None else {})})


def check_seeds(name: str, seeds: Sequence[int]) -> tuple[int, ...]:
    """A non-empty list of distinct integer seeds, or a ConfigError naming ``name``."""
    seeds = tuple(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"{name}={list(seeds)} is not allowed; must be a non-empty list of distinct integers")
    return seeds


def plan_trials(base: RunConfig, space: Space, budget: int, seeds: Sequence[int], search_seed: int = 0,
                label: str = "tuned") -> TuningPlan:
    """The trials ``budget`` buys in ``space`` around ``base``: every point's config per tuning seed, validated
    (registry names, loss options) before anything trains. Keys of ``space`` are dotted run-config paths."""
    seeds = check_seeds("seeds", seeds)
    if SEED_KEY in space.values:
        raise ConfigError(f"space key '{SEED_KEY}' is not allowed: the tuner sets each run's seed (tuning seeds, then "
                          "fresh seeds for the chosen config)")
    trials = []
    for index, point in enumerate(space.points(budget, search_seed)):
        configs = {seed: with_values(base, {**point, SEED_KEY: seed}) for seed in seeds}
        try:
            check_components(configs[seeds[0]])
        except ConfigError as exc:
            raise ConfigError(f"{label} trial {index} ({_values_text(point)}): {exc}") from None
        trials.append(TrialPlan(index, dict(point), configs))
    return TuningPlan(label, base, space, budget, search_seed, seeds, tuple(trials))


def _values_text(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items()) or "no values"
