"""Equal-budget hyperparameter tuning on validation (layer: above report, below studies).

``tune(base_cfg, space, trials, seeds, final_seeds, store, executor) -> TuningResult`` tunes one configuration;
``tune_methods({label: (cfg, space)}, trials, ...)`` gives several methods the same budget; ``tune_pair`` is
``kdlab tune``. See ``engine`` for the procedure and why.
"""

from .engine import (FinalRun, TrialResult, TuningResult, assemble, final_configs, run_plans, select_trial,
                     trial_results, tune, tune_methods)
from .output import trials_table, write_tuning
from .pair import load_space, tune_pair
from .plan import TrialPlan, TuningPlan, plan_trials, with_values

__all__ = [
    "FinalRun",
    "TrialPlan",
    "TrialResult",
    "TuningPlan",
    "TuningResult",
    "assemble",
    "final_configs",
    "load_space",
    "plan_trials",
    "run_plans",
    "select_trial",
    "trial_results",
    "trials_table",
    "tune",
    "tune_methods",
    "tune_pair",
    "with_values",
    "write_tuning",
]
