"""Executors: the capacity study gives the same students wherever its runs train; failed runs are retried."""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

import pytest
import torch

from kdlab.cli import main
from kdlab.config import parse_config
from kdlab.errors import ConfigError
from kdlab.studies import run_study
from kdlab.studies.capacity import CAPACITY
from kdlab.executor import make_executor
from kdlab.store import RunStore

# the tiny digits preset of the capacity study's own test (tests are not a package, so read it from the file)
TINY = runpy.run_path(str(Path(__file__).parent / "studies" / "test_capacity_study.py"))["TINY"]

# the waves (teachers; the TAKD assistant; CE and students) with one KD method and tuning off, to stay fast
SMALL = TINY + ["methods=[{label: kd_T4, loss: {name: kd, temperature: 4.0, alpha: 0.9}}, "
                "{label: takd, assistant: true, loss: {name: kd, temperature: 4.0, alpha: 0.9}}]", "tuning.trials=0"]


def _accuracies(results):
    return {(s["method"], s["teacher"], s.get("assistant"), s["seed"]): s["test_accuracy"]
            for s in results["students"]}


def _local_reference(tmp_path_factory, threads):
    """The study run sequentially in-process with ``threads`` torch threads. Exact equality with another executor
    is only justified when both do the same arithmetic: the thread count decides the order of reductions, so the
    reference runs with the thread count the compared executor's workers get."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KDLAB_CACHE", str(tmp_path_factory.mktemp("cache_local")))
        out = tmp_path_factory.mktemp("local")
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return run_study(CAPACITY, out=out, preset="quick", overrides=SMALL + [f"store={out / 'store'}"],
                             progress=False)
        finally:
            torch.set_num_threads(before)


@pytest.fixture(scope="module")
def local_results(tmp_path_factory):
    """The reference for the 2-worker pool: each pool worker gets cpu_count // 2 threads."""
    return _local_reference(tmp_path_factory, make_executor("pool", workers=2)._threads())


def test_pool_executor_matches_local_and_a_rerun_trains_nothing(tmp_path, local_results):
    overrides = SMALL + [f"store={tmp_path / 'store'}", "executor.name=pool", "executor.workers=2"]
    pooled = run_study(CAPACITY, out=tmp_path, preset="quick", overrides=overrides, progress=False)
    expected = _accuracies(local_results)
    assert len(expected) == 2 + 2 * 2 + 2  # CE per seed, KD per teacher and seed, TAKD (next smaller assistant) per seed
    assert _accuracies(pooled) == expected
    assert pooled["runs_trained"] == local_results["runs_trained"] == 11 and pooled["runs_reused"] == 0
    again = run_study(CAPACITY, out=tmp_path, preset="quick", overrides=overrides, progress=False)
    assert again["runs_trained"] == 0 and again["runs_reused"] == 11
    assert _accuracies(again) == expected


@pytest.mark.slow
def test_ray_executor_matches_local(tmp_path, local_results, tmp_path_factory):
    ray = pytest.importorskip("ray")
    # a Ray task reserves one CPU and runs with one thread
    reference = local_results if make_executor("pool", workers=2)._threads() == 1 \
        else _local_reference(tmp_path_factory, 1)
    overrides = SMALL + [f"store={tmp_path / 'store'}", "executor.name=ray", "executor.workers=2"]
    try:
        on_ray = run_study(CAPACITY, out=tmp_path, preset="quick", overrides=overrides, progress=False)
    finally:
        ray.shutdown()
    assert not ray.is_initialized()  # the executor shut down the local cluster it started
    assert _accuracies(on_ray) == _accuracies(reference)


def _one_epoch(tiny_run, seed):
    return parse_config({**tiny_run, "train": {**tiny_run["train"], "epochs": 1, "seed": seed}})


def test_a_crashed_pool_worker_is_retried_and_duplicates_run_once(tmp_path, tiny_run, monkeypatch):
    cfgs = [_one_epoch(tiny_run, 0), _one_epoch(tiny_run, 1)]
    store = RunStore(tmp_path)
    with make_executor("pool", workers=2) as executor:
        real_submit = executor._submit
        crashed = []

        def crash_first(args):
            # the first task kills its worker process outright: the pool breaks, and every run in it is resubmitted
            if not crashed:
                crashed.append(args)
                return executor._executor().submit(os._exit, 1)
            return real_submit(args)

        monkeypatch.setattr(executor, "_submit", crash_first)
        summaries = executor.run(store, [cfgs[0], cfgs[1], cfgs[0]], progress=False)
    assert crashed
    assert [s["run_dir"] for s in summaries] == [str(store.path(c)) for c in (cfgs[0], cfgs[1], cfgs[0])]
    assert summaries[0] == summaries[2]
    # as the sequential loop counts: two runs trained, the duplicate reused
    assert (store.trained, store.reused) == (2, 1)
    assert all(store.is_finished(c) for c in cfgs)


def test_local_retries_a_failed_run_up_to_retries_and_raises_kdlab_errors_at_once(tmp_path, tiny_run, monkeypatch):
    cfg = _one_epoch(tiny_run, 0)
    real_run = RunStore.run
    failures = []

    def flaky(self, run_cfg, progress=None):
        if len(failures) < budget:
            failures.append(run_cfg.digest())
            raise exc_type("worker lost")
        return real_run(self, run_cfg, progress=progress)

    monkeypatch.setattr(RunStore, "run", flaky)
    budget, exc_type = 1, RuntimeError
    summary, = make_executor("local", retries=1).run(RunStore(tmp_path / "a"), [cfg], progress=False)
    assert failures == [cfg.digest()] and summary["epochs"] == 1
    failures.clear()
    budget = 2
    with pytest.raises(RuntimeError, match="worker lost"):
        make_executor("local", retries=1).run(RunStore(tmp_path / "b"), [cfg], progress=False)
    assert len(failures) == 2
    failures.clear()
    budget, exc_type = 1, ConfigError
    with pytest.raises(ConfigError):
        make_executor("local", retries=3).run(RunStore(tmp_path / "c"), [cfg], progress=False)
    assert len(failures) == 1  # a verdict on the config: retrying cannot help


def test_executor_config_errors(tmp_path, tiny_run, capsys, monkeypatch):
    with pytest.raises(ConfigError, match="executor"):
        run_study(CAPACITY, out=tmp_path, preset="quick", overrides=TINY + ["executor.name=spark"], progress=False)
    with pytest.raises(ConfigError, match="executor"):
        run_study(CAPACITY, out=tmp_path, preset="quick", overrides=TINY + ["executor.threads=4"], progress=False)
    with pytest.raises(ConfigError, match="address"):
        run_study(CAPACITY, out=tmp_path, preset="quick", overrides=TINY + ["executor.address=auto"], progress=False)
    with pytest.raises(ConfigError, match="not allowed"):
        make_executor("spark")
    with monkeypatch.context() as mp:
        mp.setitem(sys.modules, "ray", None)  # as if Ray were not installed
        with pytest.raises(ConfigError, match=r"pip install 'kdlab\[ray\]'"):
            make_executor("ray").run(RunStore(tmp_path / "store"), [_one_epoch(tiny_run, 0)], progress=False)
    # the CLI flags become executor.* overrides of any study (every study runs through the driver's executor)
    assert main(["study", "fit", "--preset", "quick", "--out", str(tmp_path / "fit"), "--executor", "ray",
                 "--workers", "0", "--no-progress"]) == 2
    assert "workers" in capsys.readouterr().err
    assert main(["study", "capacity", "--preset", "quick", "--out", str(tmp_path / "cap"), "--executor", "pool",
                 "--workers", "0", "--no-progress"]) == 2
    assert "workers" in capsys.readouterr().err
    assert not (tmp_path / "cap").exists() and not (tmp_path / "fit").exists() and not (tmp_path / "runs").exists()
