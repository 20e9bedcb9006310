"""Two processes on one --out, and two store users on one store (the harness is tests/cli/lock_race.py; run it as a
script for the 100-trial count)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("lock_race", Path(__file__).with_name("lock_race.py"))
lock_race = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock_race)


def test_racing_processes_never_mix_a_run_nor_train_it_twice():
    counts = lock_race.run_trials(["different", "same-wait", "store"], trials=4)
    for kind, outcomes in counts.items():
        assert sum(outcomes.values()) == 4
        failures = {o: n for o, n in outcomes.items() if o.startswith("FAIL")}
        assert not failures, (kind, failures)
