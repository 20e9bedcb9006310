"""The tuning engine without training: trials planned as run configs, selection on validation only, equal
budgets, deterministic random search, and the chosen config retested on fresh seeds."""

from __future__ import annotations

import pytest

from kdlab.config import parse_config
from kdlab.errors import ConfigError
from kdlab.losses import search_space
from kdlab.space import Space
from kdlab.tuning import plan_trials, select_trial, trial_results, tune, tune_methods, with_values
from kdlab.tuning.engine import TrialResult


class TrialTestRead(AssertionError):
    pass


class GuardedSummary(dict):
    """A trial run's summary whose test accuracy must never be read by the tuner."""

    def __getitem__(self, key):
        if key == "test_accuracy":
            raise TrialTestRead("the tuner read a trial's test accuracy")
        return super().__getitem__(key)

    def get(self, key, default=None):
        if key == "test_accuracy":
            raise TrialTestRead("the tuner read a trial's test accuracy")
        return super().get(key, default)

    def values(self):
        raise TrialTestRead("the tuner iterated over a trial's summary")

    def items(self):
        raise TrialTestRead("the tuner iterated over a trial's summary")


VAL_BY_T = {1.0: 0.80, 2.0: 0.90, 4.0: 0.85, 8.0: 0.70}
TEST_BY_T = {1.0: 0.78, 2.0: 0.80, 4.0: 0.82, 8.0: 0.95}


class FakeExecutor:
    """Returns made-up summaries: accuracy as a function of (temperature, alpha, seed), no training.

    Validation and test rank the trials differently on purpose: validation prefers temperature 2, test prefers 8.
    Runs on the tuning seeds get guarded summaries; runs on final seeds plain ones (their test accuracy is the
    reported number).
    """

    def __init__(self, tuning_seeds):
        self.tuning_seeds = set(tuning_seeds)
        self.waves = []

    def run(self, store, cfgs, progress=None, bar=None, desc="runs"):
        self.waves.append(cfgs)
        out = []
        for cfg in cfgs:
            t, a, seed = cfg.loss.options["temperature"], cfg.loss.options["alpha"], cfg.train.seed
            val = VAL_BY_T[t] + 0.01 * a + 0.001 * seed
            test = TEST_BY_T[t] + 0.01 * a + 0.001 * seed
            summary = {"best_val_accuracy": val, "test_accuracy": test, "run_dir": f"runs/{cfg.digest()[:8]}"}
            out.append(GuardedSummary(summary) if seed in self.tuning_seeds else summary)
        return out


@pytest.fixture
def base(tiny_run):
    return parse_config({**tiny_run, "teacher": {"run": "runs/teacher"},
                         "loss": {"name": "kd", "temperature": 4.0, "alpha": 0.9}})


KD_SPACE = search_space("kd").prefixed("loss")


def test_with_values_sets_dotted_keys_and_names_bad_ones(base):
    cfg = with_values(base, {"loss.temperature": 2.0, "optim.lr": 0.2, "train.seed": 7})
    assert cfg.loss.options == {"temperature": 2.0, "alpha": 0.9} and cfg.optim.lr == 0.2 and cfg.train.seed == 7
    assert base.loss.options["temperature"] == 4.0  # the base is not touched
    with pytest.raises(ConfigError, match="space key 'train.epochs.x': 'train.epochs' is a value in the config"):
        with_values(base, {"train.epochs.x": 1})
    with pytest.raises(ConfigError, match=r"a trial's config \(optim.lrr=0.1\): unknown key 'optim.lrr'"):
        with_values(base, {"optim.lrr": 0.1})


def test_plan_validates_every_trial_before_training(base):
    plan = plan_trials(base, KD_SPACE, 12, seeds=[0, 1])
    assert plan.sampler == "grid" and len(plan.trials) == 12 and len(plan.run_configs()) == 24
    first = plan.trials[0]
    assert first.values == {"loss.temperature": 1.0, "loss.alpha": 0.5}
    assert [c.train.seed for c in first.configs.values()] == [0, 1]
    bad = Space({"loss.temprature": (1.0, 2.0)})
    with pytest.raises(ConfigError, match="trial 0 .*loss 'kd' has no option 'temprature'"):
        plan_trials(base, bad, 2, seeds=[0])
    with pytest.raises(ConfigError, match="space key 'train.seed' is not allowed"):
        plan_trials(base, Space({"train.seed": (1, 2)}), 2, seeds=[0])
    with pytest.raises(ConfigError, match=r"seeds=\[0, 0\] is not allowed"):
        plan_trials(base, KD_SPACE, 2, seeds=[0, 0])


def test_selection_uses_validation_only_where_the_test_best_trial_differs(base):
    executor = FakeExecutor(tuning_seeds=[0, 1])
    result = tune(base, KD_SPACE, 12, seeds=[0, 1], final_seeds=[5, 6], store=None, executor=executor)
    # validation prefers T = 2 (and the larger alpha); test would have preferred T = 8
    assert result.chosen_values == {"loss.temperature": 2.0, "loss.alpha": 0.9}
    test_best = max(result.trials, key=lambda t: TEST_BY_T[t.values["loss.temperature"]] + t.values["loss.alpha"])
    assert test_best.values["loss.temperature"] == 8.0 and test_best.index != result.chosen
    assert result.selected_val == pytest.approx(0.90 + 0.009 + 0.0005, abs=1e-12)  # mean over seeds 0 and 1
    # the chosen config, retrained on the fresh seeds, is where test accuracy is read
    assert [f.seed for f in result.finals] == [5, 6]
    assert [f.test_accuracy for f in result.finals] == pytest.approx([0.809 + 0.005, 0.809 + 0.006], abs=1e-12)
    assert result.val_to_test_gap == pytest.approx(0.9095 - 0.8145, abs=1e-12)
    assert result.chosen_config.loss.options == {"temperature": 2.0, "alpha": 0.9}
    assert result.chosen_config.train.seed == base.train.seed  # best.yaml keeps the user's own seed
    # two waves: every trial first, then the chosen config's fresh seeds
    assert [len(w) for w in executor.waves] == [24, 2]
    data = result.to_dict()
    assert data["selected_on"] == "validation" and "test_accuracy" not in str(data["trials"])


def test_a_tuner_that_read_a_trials_test_accuracy_would_fail_here():
    trial = GuardedSummary({"best_val_accuracy": 0.5, "test_accuracy": 0.9})
    with pytest.raises(TrialTestRead):
        trial["test_accuracy"]


def test_select_trial_takes_the_highest_mean_and_the_first_on_ties():
    trials = [TrialResult(0, {}, {0: 0.8, 1: 0.9}), TrialResult(1, {}, {0: 0.9, 1: 0.8}),
              TrialResult(2, {}, {0: 0.84, 1: 0.85}), TrialResult(3, {}, {0: float("nan"), 1: 1.0})]
    assert select_trial(trials) == 0  # 0.85 ties 0.85 (trial 1): the earlier trial; NaN never wins
    assert select_trial(trials[2:]) == 0
    assert select_trial([TrialResult(0, {}, {0: float("nan")}), TrialResult(1, {}, {0: 0.1})]) == 1


def test_trial_results_read_only_validation_and_run_dir(base):
    plan = plan_trials(base, Space({"loss.temperature": (1.0, 2.0)}), 2, seeds=[0])
    summaries = [GuardedSummary({"best_val_accuracy": 0.7, "test_accuracy": 0.1, "run_dir": "a"}),
                 GuardedSummary({"best_val_accuracy": 0.6, "test_accuracy": 0.9, "run_dir": "b"})]
    results = trial_results(plan, summaries)
    assert [r.val_accuracy for r in results] == [{0: 0.7}, {0: 0.6}] and results[1].run_dirs == {0: "b"}


def test_random_search_is_deterministic_given_its_seed(base):
    space = search_space("dist").prefixed("loss")  # 27 points: a budget of 12 samples them
    dist_base = parse_config({**base.to_dict(), "loss": {"name": "dist"}})
    a = plan_trials(dist_base, space, 12, seeds=[0], search_seed=5)
    b = plan_trials(dist_base, space, 12, seeds=[0], search_seed=5)
    c = plan_trials(dist_base, space, 12, seeds=[0], search_seed=6)
    assert a.sampler == "random" and len(a.trials) == 12
    assert [t.values for t in a.trials] == [t.values for t in b.trials]
    assert [t.values for t in a.trials] != [t.values for t in c.trials]
    assert [cfg.digest() for cfg in a.run_configs()] == [cfg.digest() for cfg in b.run_configs()]


def test_every_method_gets_the_same_number_of_trials(base):
    def method(loss, control=None):
        return (parse_config({**base.to_dict(), "loss": {"name": loss}}),
                search_space(loss, control).prefixed("loss"))

    methods = {"kd": (base, KD_SPACE), "dkd": method("dkd"), "dist": method("dist"), "ats": method("ats"),
               "ats_symmetric": method("ats", "symmetric"), "ctkd": method("ctkd"), "logit_std": method("logit_std")}

    class CountingExecutor:
        def __init__(self):
            self.cfgs = []

        def run(self, store, cfgs, progress=None, bar=None, desc="runs"):
            self.cfgs.append(cfgs)
            return [{"best_val_accuracy": 0.5, "test_accuracy": 0.5, "run_dir": ""} for _ in cfgs]

    executor = CountingExecutor()
    results = tune_methods(methods, 12, seeds=[0, 1], final_seeds=[2], store=None, executor=executor)
    assert {label: len(r.trials) for label, r in results.items()} == dict.fromkeys(methods, 12)
    assert len(executor.cfgs[0]) == 12 * 2 * len(methods)  # one wave of every method's trials
    assert {r.sampler for label, r in results.items() if label in ("dkd", "dist", "ats")} == {"random"}
    with pytest.raises(ConfigError) as err:
        tune_methods(methods, 13, seeds=[0], final_seeds=[2], store=None, executor=executor)
    assert "trials=13 is not allowed for an equal budget: kd has 12" in str(err.value)
    assert "ats_symmetric has 12" in str(err.value) and "use trials <= 12" in str(err.value)
    assert len(executor.cfgs) == 2  # the refused call trained nothing


def test_final_seeds_must_be_fresh(base):
    with pytest.raises(ConfigError, match=r"final_seeds=\[1, 2\] is not allowed: \[1\] also tuned"):
        tune(base, KD_SPACE, 2, seeds=[0, 1], final_seeds=[1, 2], store=None, executor=FakeExecutor([0, 1]))
