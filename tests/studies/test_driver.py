"""The study driver: every planned run validated before anything trains, waves in order, a dependent wave built
from earlier results (a tuning stage whose selection on validation feeds the next wave), results.json, report."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from pydantic import Field

from kdlab.analysis.verdict import Claim, Rule, paired_measurement
from kdlab.config import parse_config
from kdlab.errors import ConfigError
from kdlab.report import Report
from kdlab.space import Space
from kdlab.studies.driver import Planned, RunSet, Study, StudyConfig, Wave, run_study
from kdlab.tuning import final_configs, plan_trials, select_trial, trial_results


class ToyConfig(StudyConfig):
    base: dict[str, Any]
    lrs: list[float] = Field(min_length=1)
    final_seeds: list[int] = Field(default_factory=lambda: [5, 6])


def _plan(cfg: ToyConfig, store):
    """Wave 1: one trial per learning rate (tuning seed 0); wave 2, built from wave 1: the trial with the best
    validation accuracy retrained on fresh seeds."""
    tuning = plan_trials(parse_config(cfg.base), Space.from_dict({"values": {"optim": {"lr": cfg.lrs}}}),
                         budget=len(cfg.lrs), seeds=[0])
    trials = [Planned({"stage": "trial", "trial": t.index}, t.configs[0]) for t in tuning.trials]

    def finals(runs: RunSet) -> list[Planned]:
        results = trial_results(tuning, [r.summary for r in runs.select(stage="trial")])
        chosen = results[select_trial(results)].values
        return [Planned({"stage": "final", "seed": seed, "lr": chosen["optim.lr"]}, job)
                for seed, job in zip(cfg.final_seeds, final_configs(tuning, chosen, cfg.final_seeds))]

    return [Wave("trials", trials), Wave("fresh seeds", build=finals, preview=trials[:1])]


def _analyse(cfg: ToyConfig, runs: RunSet) -> dict[str, Any]:
    trials = {r.tags["trial"]: {"val": r.val_accuracy, "test": r.test_accuracy} for r in runs.select(stage="trial")}
    finals = runs.select(stage="final")
    test = [r.test_accuracy for r in finals]
    return {"dataset": "digits", "trials": trials, "chosen_lr": finals[0].tags["lr"],
            "final": {"mean": sum(test) / len(test), "low": min(test), "high": max(test), "n": len(test)}}


def _claims(cfg: ToyConfig) -> list[Claim]:
    return [Claim("learns", "the tuned student beats chance", "tuned student test accuracy - 0.1",
                  Rule(">", 0.0), lambda r: paired_measurement(
                      {**r["final"], "mean": r["final"]["mean"] - 0.1, "low": r["final"]["low"] - 0.1,
                       "high": r["final"]["high"] - 0.1}))]


def _report(results: dict[str, Any]) -> Report:
    rep = Report("toy")
    rep.paragraph(f"chosen lr {results['chosen_lr']}")
    rep.claims_section(results)
    return rep


TOY = Study(name="toy", config=ToyConfig, defaults={}, presets={}, plan=_plan, analyse=_analyse, claims=_claims,
            report=_report)


def _base(tiny_run, **train):
    return {**tiny_run, "train": {**tiny_run["train"], "epochs": 2, **train}}


def test_a_tuning_stage_feeds_the_next_wave(tmp_path, tiny_run):
    overrides = [f"base={json.dumps(_base(tiny_run))}", "lrs=[0.0001, 0.1]"]
    results = run_study(TOY, out=tmp_path, overrides=overrides, progress=False)
    trials = results["trials"]
    best = max(trials, key=lambda t: trials[t]["val"])          # chosen on validation, never on test
    assert results["chosen_lr"] == [0.0001, 0.1][int(best)]
    assert results["runs_trained"] == 2 + 2 and results["claims"][0]["n"] == 2
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["chosen_lr"] == results["chosen_lr"] and saved["report_files"] == ["report.md", "report.html"]
    again = run_study(TOY, out=tmp_path, overrides=overrides, progress=False)
    assert again["runs_trained"] == 0 and again["runs_reused"] == 4


def test_every_known_run_is_validated_before_anything_trains(tmp_path, tiny_run):
    good = parse_config(_base(tiny_run))
    bad = parse_config({**_base(tiny_run), "loss": {"name": "kd", "temperature": -1}})

    def plan(cfg, store):  # a good wave first: it must not train when a later known run is bad
        return [Wave("first", [Planned({"stage": "trial", "trial": 0}, good)]),
                Wave("second", [Planned({"stage": "trial", "trial": 1}, bad)])]

    study = Study(name="toy", config=ToyConfig, defaults={}, presets={}, plan=plan, analyse=_analyse,
                  claims=_claims, report=_report)
    with pytest.raises(ConfigError, match=r"run \(stage=trial, trial=1\): .*temperature=-1"):
        run_study(study, out=tmp_path, overrides=[f"base={json.dumps(_base(tiny_run))}", "lrs=[0.1]"],
                  progress=False)
    assert not (tmp_path / "runs").exists()


def test_a_built_wave_is_validated_before_it_trains(tmp_path, tiny_run, monkeypatch):
    def bad_finals(cfg, store):
        trials, finals = _plan(cfg, store)
        broken = parse_config({**_base(tiny_run), "loss": {"name": "nope"}})
        return [trials, Wave("fresh seeds", build=lambda runs: [Planned({"stage": "final"}, broken)])]

    study = Study(name="toy", config=ToyConfig, defaults={}, presets={}, plan=bad_finals, analyse=_analyse,
                  claims=_claims, report=_report)
    with pytest.raises(ConfigError, match=r"run \(stage=final\): .*nope"):
        run_study(study, out=tmp_path, overrides=[f"base={json.dumps(_base(tiny_run))}", "lrs=[0.1]"],
                  progress=False)
    # the trial wave trained (the final wave could not be known before it); nothing of the bad wave did
    assert len(list((tmp_path / "runs").iterdir())) == 1


def test_selected_claims_are_instantiated_from_the_results_and_decided_like_the_declared_ones(tmp_path, tiny_run):
    def per_chosen_lr(cfg: ToyConfig, results: dict[str, Any]) -> list[Claim]:
        # a template claim, one instance per selection the results hold (here: the chosen learning rate)
        return [Claim(f"chosen|{results['chosen_lr']}", f"the student tuned at lr {results['chosen_lr']} beats 0.05",
                      "tuned student test accuracy - 0.05", Rule(">", 0.05), lambda r: paired_measurement(r["final"]))]

    study = dataclasses.replace(TOY, selected_claims=per_chosen_lr)
    overrides = [f"base={json.dumps(_base(tiny_run))}", "lrs=[0.1]"]
    results = run_study(study, out=tmp_path, overrides=overrides, progress=False)
    assert [c["id"] for c in results["claims"]] == ["learns", "chosen|0.1"]
    low, high = results["final"]["low"], results["final"]["high"]
    assert results["claims"][1]["holds"] is (True if low > 0.05 else False if high <= 0.05 else None)
    assert results["claims"][1]["rule"].startswith("holds if the 95% interval lies above 0.05")
