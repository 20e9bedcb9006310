"""The capacity study end to end on a tiny digits preset, and the run store's reuse of finished runs."""

from __future__ import annotations

import json

import pytest

from kdlab.config import parse_config
from kdlab.errors import ConfigError
from kdlab.studies import run_capacity
from kdlab.store import RunStore

TINY = ["data.name=digits", "data.val_size=200", "teachers.train_subset=null", "teachers.epochs=2",
        "student.train_subset=300", "student.epochs=2", "seeds=[0,1]",
        "teachers.capacities=[{width: 8}, {width: 64}]"]


def test_capacity_study_end_to_end_and_rerun_reuses_everything(tmp_path):
    results = run_capacity(out=tmp_path, preset="quick", overrides=TINY, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["study"] == "capacity"
    teachers = saved["teachers"]
    assert [t["params"] for t in teachers] == sorted(t["params"] for t in teachers)
    for t in teachers:
        assert set(t["derived_std"]) == {"1.0", "2.0", "4.0", "8.0"}
        assert 0 <= t["test_accuracy"] <= 1 and t["inherent_variance"] > 0
        # derived average = (1 - p_gt) / (C - 1): bounded by 1 / (C - 1)
        assert all(0 < v < 1 / 9 for v in t["derived_average"].values())
    methods = saved["config"]["methods"]
    chains = sum(1 for m in methods if m["assistant"])  # TAKD: one chain (teacher 2 -> assistant 1)
    assert chains == 1 and {m["role"] for m in methods} == {"kd", "control", "remedy"}
    # CE per seed + every non-TAKD method from every teacher per seed + the TAKD chain per seed
    assert len(saved["students"]) == 2 + 2 * (len(methods) - chains) * 2 + 1 * 2
    assert {s["method"] for s in saved["students"]} == {"ce"} | {m["label"] for m in methods}
    for s in saved["students"]:
        assert {"teacher", "method", "hyperparams", "seed", "test_accuracy"} <= set(s)
    claims = saved["claims"]
    assert len(claims) == 5
    assert all(c["holds"] in (True, False, None) and any(ch.isdigit() for ch in c["evidence"]) for c in claims)
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 + 2  # curve, dark knowledge, consistency + 2 heatmaps
    assert "capacity-mismatch curve" in (tmp_path / "report.md").read_text()
    again = run_capacity(out=tmp_path, preset="quick", overrides=TINY, progress=False)
    assert again["runs_trained"] == 0 and again["runs_reused"] == results["runs_trained"]
    assert [s["test_accuracy"] for s in again["students"]] == [s["test_accuracy"] for s in results["students"]]


def test_study_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="methods"):
        run_capacity(out=tmp_path, overrides=['methods=[{label: ce, loss: {name: ce}}]'], progress=False)
    with pytest.raises(ConfigError, match="--preset 'huge'"):
        run_capacity(out=tmp_path, preset="huge", progress=False)
    with pytest.raises(ConfigError, match="temperature"):
        run_capacity(out=tmp_path, preset="quick",
                     overrides=TINY + ['methods=[{label: kd, loss: {name: kd, temperature: -1}}]'], progress=False)
    assert not (tmp_path / "runs").exists()  # nothing trained


def test_run_store_reuses_a_finished_run(tmp_path, tiny_run):
    cfg = parse_config({**tiny_run, "train": {**tiny_run["train"], "epochs": 1}})
    store = RunStore(tmp_path)
    first = store.run(cfg)
    assert (store.trained, store.reused) == (1, 0)
    second = store.run(cfg)
    assert (store.trained, store.reused) == (1, 1)
    assert first == second
    assert store.path(cfg).name == cfg.digest()[:16]
