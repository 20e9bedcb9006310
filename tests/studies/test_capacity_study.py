"""The capacity study end to end on a tiny digits preset; selection on validation; every claim on hand-made numbers."""

from __future__ import annotations

import json
import math

import pytest

from kdlab.config import parse_config
from kdlab.errors import ConfigError
from kdlab.store import RunStore
from kdlab.studies import run_study
from kdlab.studies.capacity import CAPACITY, DEFAULTS, CapacityStudyConfig, Method, best_kd, claims
from kdlab.studies.capacity_tuning import final_values, method_space, select_configs, trial_points
from kdlab.studies.driver import Planned, RunSet

TINY = ["data.name=digits", "data.val_size=200", "teachers.train_subset=null", "teachers.epochs=2",
        "student.train_subset=300", "student.epochs=2", "seeds=[0,1]",
        "teachers.capacities=[{width: 8}, {width: 64}]"]


def run_capacity(**kwargs):
    return run_study(CAPACITY, **kwargs)


def test_capacity_study_end_to_end_and_rerun_reuses_everything(tmp_path, assert_report_rebuilds):
    results = run_capacity(out=tmp_path, preset="quick", overrides=TINY + ["teacher_seeds=[0,1]"], progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["study"] == "capacity"
    teachers = saved["teachers"]
    assert [t["params"] for t in teachers] == sorted(t["params"] for t in teachers)
    assert [t["name"] for t in teachers] == ["MLP 2x8, 682 params", "MLP 2x64, 8.97k params"]
    for t in teachers:
        assert set(t["derived_std"]) == {"1.0", "2.0", "4.0", "8.0"}
        assert 0 <= t["test_accuracy"] <= 1 and t["inherent_variance"] > 0
        # derived average = (1 - p_gt) / (C - 1): bounded by 1 / (C - 1)
        assert all(0 < v < 1 / 9 for v in t["derived_average"].values())
        assert [s["seed"] for s in t["seeds"]] == [0, 1] and len(t["seeds"][1]["affinity"]) == 10
    methods = saved["config"]["methods"]
    assert len(methods) == 11 and {m["role"] for m in methods} == {"kd", "control", "remedy"}
    assert next(m for m in methods if m["label"] == "kd_std")["role"] == "remedy"  # standardised KD is a remedy
    # CE per seed + every non-TAKD method from every teacher per seed + TAKD from the larger teacher per seed
    assert len(saved["students"]) == 2 + 2 * 10 * 2 + 1 * 2
    assert {s["method"] for s in saved["students"]} == {"ce"} | {m["label"] for m in methods}
    # tuning (the quick preset's 2 trials, tuning seed 100): every method got exactly 2 trials on the largest
    # teacher, vanilla KD also 2 on the smaller one; the evaluated students train at the chosen values
    tuning = saved["tuning"]
    assert tuning["trials"] == 2 and tuning["seeds"] == [100] and tuning["selected_on"] == "validation"
    largest = teachers[1]["name"]
    on_largest = {r["method"]: r for r in tuning["methods"] if r["teacher"] == largest}
    assert set(on_largest) == {m["label"] for m in methods}
    assert {r["trials_run"] for r in on_largest.values()} == {2}
    assert [r["teacher"] for r in tuning["methods"] if r["method"] == "kd"] == [teachers[0]["name"], largest]
    assert tuning["trial_runs"] == 2 * 12
    for r in tuning["methods"]:
        trials = {t["trial"]: t["mean_val_accuracy"] for t in r["trials"]}
        assert r["chosen"]["mean_val_accuracy"] == max(trials.values())
        assert set(r["trials"][0]["val_accuracy"]) == {"100"} and "test_accuracy" not in r["trials"][0]
        cell = saved["table"][r["teacher"]][r["method"]]
        assert cell["values"] == r["chosen"]["values"] and cell["tuned_on"] == r["teacher"]
        assert r["val_to_test_gap"] == pytest.approx(r["chosen"]["mean_val_accuracy"]
                                                     - cell["test_accuracy"]["mean"])
    symmetric = on_largest["ats_symmetric"]["chosen"]["values"]
    assert symmetric["loss.tau_gt"] == symmetric["loss.tau_other"]
    # remedies tuned on the largest teacher train with that choice from the smaller one too
    assert saved["table"][teachers[0]["name"]]["dkd"]["values"] == on_largest["dkd"]["chosen"]["values"]
    # 2 capacities x 2 teacher seeds, 1 TAKD assistant, 24 trials, 2 CE, 10 methods x 2 teachers x 2 seeds,
    # TAKD x 2 seeds (its assistant was trained for the trials)
    assert results["runs_trained"] == 4 + 1 + 24 + 2 + 40 + 2
    found = {c["id"]: c for c in saved["claims"]}
    assert list(found) == ["derived_std_falls", "affinity_agrees", "capacity_mismatch", "ats_beats_kd",
                           "asymmetry_helps", "remedy_closes_gap"]
    for c in saved["claims"]:
        assert {"rule", "statistic", "interval", "n", "selected_on", "evidence", "holds"} <= set(c)
    # claim 1 and 2: a bootstrap over the two teacher seeds of each capacity
    assert found["derived_std_falls"]["n"] == 2 and found["derived_std_falls"]["interval"] is not None
    assert found["capacity_mismatch"]["selected_on"] == "validation accuracy (mean over seeds)"
    md = (tmp_path / "report.md").read_text()
    assert "capacity-mismatch curve" in md and "MLP 2x64, 8.97k params" in md
    assert "## Tuning: equal budget, chosen on validation" in md and "dkd from MLP 2x64" in md
    assert (tmp_path / "report.html").read_text().count("data:image/png;base64,") == 4
    assert_report_rebuilds(tmp_path, saved["report_files"])
    again = run_capacity(out=tmp_path, preset="quick", overrides=TINY + ["teacher_seeds=[0,1]"], progress=False)
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
    with pytest.raises(ConfigError, match="role='kd' is not allowed for method 'std'"):
        run_capacity(out=tmp_path, overrides=['methods=[{label: std, role: kd, loss: {name: kd, standardize: true}}]'],
                     progress=False)
    with pytest.raises(ConfigError, match=r"tuning.seeds=\[1\] is not allowed: \[1\] also in seeds"):
        run_capacity(out=tmp_path, preset="quick", overrides=TINY + ["tuning.seeds=[1]"], progress=False)
    with pytest.raises(ConfigError, match="tuning.trials=13 is not allowed for an equal budget: method 'kd' has 12"):
        run_capacity(out=tmp_path, preset="quick", overrides=TINY + ["tuning.trials=13"], progress=False)
    with pytest.raises(ConfigError, match="split"):
        run_capacity(out=tmp_path, preset="quick", overrides=TINY + ["tuning.split=test"], progress=False)
    with pytest.raises(ConfigError, match="seeds"):
        run_capacity(out=tmp_path, preset="quick", overrides=TINY + ["seeds=[-1]"], progress=False)
    with pytest.raises(ConfigError, match=r"keep_epochs=\[9\] is not allowed"):
        run_capacity(out=tmp_path, preset="quick", overrides=TINY + ["teachers.keep_epochs=[9]"], progress=False)
    with pytest.raises(ConfigError, match="stop_fraction"):
        run_capacity(out=tmp_path, preset="quick",
                     overrides=TINY + ['methods=[{label: e, stop_fraction: 1.5, loss: {name: kd}}]'], progress=False)
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


def test_method_roles():
    assert Method(label="a", loss={"name": "kd", "temperature": 2.0}).role == "kd"
    assert Method(label="b", loss={"name": "kd", "standardize": True}).role == "remedy"
    assert Method(label="c", loss={"name": "kd"}, teacher_epoch=2).role == "remedy"
    assert Method(label="e", loss={"name": "kd"}, stop_fraction=0.5).role == "remedy"
    assert Method(label="d", loss={"name": "ats"}, role="control").role == "control"


# ---------------------------------------------------------------------------------------------- selection


def _study_config(**changes):
    return CapacityStudyConfig.model_validate({**DEFAULTS, **changes})


def test_every_method_gets_the_same_trials_over_its_own_space():
    cfg = _study_config()
    largest = len(cfg.teachers.capacities) - 1
    for m in cfg.methods:
        points = trial_points(cfg, m, largest)
        space = method_space(m, largest)
        assert len(points) == cfg.tuning.trials == 4 and all(space.contains(p) for p in points)
    ats, symmetric = (next(m for m in cfg.methods if m.label == label) for label in ("ats", "ats_symmetric"))
    # the control tunes over ATS's values with tau_gt = tau_other: the same values, the asymmetry removed
    assert method_space(symmetric, largest).values == method_space(ats, largest).values
    assert all(p["loss.tau_gt"] == p["loss.tau_other"] for p in method_space(symmetric, largest).grid())
    assert all(p["loss.tau_gt"] > p["loss.tau_other"] for p in method_space(ats, largest).grid())
    takd = next(m for m in cfg.methods if m.assistant)
    assert method_space(takd, largest).values["assistant"] == (0, 1, 2)


def _trial_runs(cfg, label, teacher, scores):
    """RunSet of one method's trials from ``teacher``: ``scores[k] = {seed: val}``. The summaries carry no test
    accuracy: a selection that read it would fail."""
    runs = RunSet()
    for k, by_seed in enumerate(scores):
        runs.add([Planned({"role": "trial", "method": label, "teacher": teacher, "trial": k, "seed": s}, None)
                  for s in by_seed], [{"best_val_accuracy": v, "run_dir": f"r{k}{s}"} for s, v in by_seed.items()])
    return runs


def test_tuning_selects_on_validation_where_the_test_best_trial_differs():
    cfg = _study_config(methods=[{"label": "dkd", "loss": {"name": "dkd"}}],
                        tuning={"trials": 3, "seeds": [100, 101]})
    # trial 0 would win on test (its runs' test accuracy is the best) but trial 2 has the best mean validation
    runs = _trial_runs(cfg, "dkd", 3, [{100: 0.70, 101: 0.74}, {100: 0.76, 101: 0.70}, {100: 0.75, 101: 0.74}])
    for r in runs.runs:
        r.summary["test_accuracy"] = {0: 0.95, 1: 0.60, 2: 0.61}[r.tags["trial"]]
    found = select_configs(cfg, runs)
    assert found["dkd", 3]["chosen"] == 2
    assert [t.mean_val for t in found["dkd", 3]["trials"]] == pytest.approx([0.72, 0.73, 0.745])
    chosen = trial_points(cfg, cfg.methods[0], 3)[2]
    # the choice on the largest teacher is what dkd trains with from every teacher
    assert final_values(cfg, found, cfg.methods[0], 0) == (chosen, 3)
    # ties go to the earlier trial; the summaries without test accuracy are enough for the whole selection
    tied = _trial_runs(cfg, "dkd", 3, [{100: 0.7, 101: 0.7}, {100: 0.8, 101: 0.6}, {100: 0.6, 101: 0.6}])
    assert select_configs(cfg, tied)["dkd", 3]["chosen"] == 0


def test_takd_assistant_is_tuned_and_clamped_below_smaller_teachers():
    cfg = _study_config(methods=[{"label": "takd", "assistant": True, "loss": {"name": "kd"}}],
                        tuning={"trials": 2})
    points = trial_points(cfg, cfg.methods[0], 3)
    runs = _trial_runs(cfg, "takd", 3, [{100: 0.6}, {100: 0.7}])
    found = select_configs(cfg, runs)
    values, tuned_on = final_values(cfg, found, cfg.methods[0], 3)
    assert values == points[1] and tuned_on == 3
    # from teacher 1 only assistant 0 is smaller: the chosen loss values, the largest smaller member
    assert final_values(cfg, found, cfg.methods[0], 1)[0] == {**points[1], "assistant": 0}
    assert final_values(cfg, found, cfg.methods[0], 0) is None
    off = _study_config(methods=[{"label": "takd", "assistant": True, "loss": {"name": "kd"}}], tuning={"trials": 0})
    assert final_values(off, {}, off.methods[0], 3) == ({"assistant": 2}, None)


def _cell(val, test, ce=0.80):
    """A table cell with its validation mean and per-seed test accuracies."""
    tests = test if isinstance(test, list) else [test, test + 0.001, test + 0.002]
    return {"val_accuracy": {"mean": val}, "test_accuracy": {"mean": sum(tests) / len(tests), "std": 0.0},
            "test_by_seed": {str(i): v for i, v in enumerate(tests)}}


METHODS = [{"label": "kd_T2", "role": "kd"}, {"label": "kd_T4", "role": "kd"}, {"label": "ats", "role": "remedy"},
           {"label": "ats_symmetric", "role": "control"}, {"label": "dkd", "role": "remedy"},
           {"label": "takd", "role": "remedy"}]


# a 4-class affinity matrix (diagonal 0, rows sum to 1) and one with every row's ranking reversed
A = [[0.0, 0.1, 0.3, 0.6], [0.2, 0.0, 0.3, 0.5], [0.5, 0.3, 0.0, 0.2], [0.6, 0.3, 0.1, 0.0]]
B = [[0.0, 0.6, 0.3, 0.1], [0.5, 0.0, 0.3, 0.2], [0.2, 0.3, 0.0, 0.5], [0.1, 0.3, 0.6, 0.0]]


def _results(table, params=(100, 1000, 10000), val=(0.80, 0.85, 0.84), derived=None, affinity=None):
    """Hand-made results of three teachers T1 < T2 < T3 (their validation accuracy ``val``)."""
    names = [f"T{i + 1}" for i in range(len(params))]
    derived = derived or [[0.05, 0.052], [0.045, 0.046], [0.04, 0.041]]
    affinity = affinity or [[A, A]] * 3
    teachers = [{"label": n, "name": n, "params": p, "val_accuracy": v, "test_accuracy": v,
                 "seeds": [{"derived_std": {"4.0": d}, "affinity": a} for d, a in zip(ds, af)]}
                for n, p, v, ds, af in zip(names, params, val, derived, affinity)]
    return {"teachers": teachers, "table": dict(zip(names, table)), "ce_test_by_seed": {"0": 0.8, "1": 0.8, "2": 0.8},
            "config": {"methods": METHODS, "claim_temperature": 4.0, "num_bootstrap": 500}}


def _claims():
    cfg = CapacityStudyConfig.model_validate({"teachers": {"model": {"name": "mlp"}, "capacities": [{}, {}]},
                                              "student": {"model": {"name": "mlp"}},
                                              "methods": [{"label": "kd", "loss": {"name": "kd"}}]})
    return {c.id: c for c in claims(cfg)}


def test_selection_reads_validation_where_test_best_differs():
    # from T3, kd_T2 is best on test (0.90) but kd_T4 is best on validation: the statistic uses kd_T4
    t3 = {"kd_T2": _cell(0.70, 0.90), "kd_T4": _cell(0.75, 0.84), "ats": _cell(0.74, 0.86),
          "ats_symmetric": _cell(0.70, 0.83), "dkd": _cell(0.76, 0.85)}
    t1 = {"kd_T2": _cell(0.78, 0.84), "kd_T4": _cell(0.79, 0.845), "ats": _cell(0.7, 0.8),
          "ats_symmetric": _cell(0.7, 0.8), "dkd": _cell(0.7, 0.8)}
    t2 = {"kd_T2": _cell(0.60, 0.95), "kd_T4": _cell(0.61, 0.95), "ats": _cell(0.7, 0.8),
          "ats_symmetric": _cell(0.7, 0.8), "dkd": _cell(0.7, 0.8)}
    results = _results([t1, t2, t3], val=(0.80, 0.85, 0.84))
    assert best_kd(results, "T3") == "kd_T4"
    found = _claims()
    # most accurate on validation: T2 (0.85), although T3 would be chosen on test; best smaller teacher: T1
    mismatch = found["capacity_mismatch"].evaluate(results)
    assert mismatch["selections"] == {"most accurate teacher": "T2", "best KD of T2": "kd_T4",
                                      "best smaller teacher": "T1", "best KD of T1": "kd_T4"}
    # T2 kd_T4 (0.95...) - T1 kd_T4 (0.845...) on test: a bigger teacher that teaches better
    assert mismatch["holds"] is False and mismatch["estimate"] == pytest.approx(0.105)
    ats = found["ats_beats_kd"].evaluate(results)
    assert ats["selections"] == {"best KD of T3": "kd_T4"}
    assert ats["estimate"] == pytest.approx(0.02) and ats["holds"] is True   # 0.86 - 0.84, not 0.86 - 0.90


def test_capacity_claims_true_false_null_and_not_applicable():
    found = _claims()
    flat = {m: _cell(0.8, 0.80) for m in ("kd_T2", "kd_T4", "ats", "ats_symmetric", "dkd")}

    # claims 1-2: derived std falls with size in every teacher seed; affinities identical -> agree
    r = _results([flat, flat, flat])
    assert found["derived_std_falls"].evaluate(r)["holds"] is True
    assert found["affinity_agrees"].evaluate(r)["holds"] is True
    rising = _results([flat, flat, flat], derived=[[0.04, 0.041], [0.045, 0.046], [0.05, 0.051]])
    assert found["derived_std_falls"].evaluate(rising)["holds"] is False
    mixed = _results([flat, flat, flat], derived=[[0.04, 0.06], [0.05, 0.05], [0.045, 0.055]])
    assert found["derived_std_falls"].evaluate(mixed)["holds"] is None
    one_seed = _results([flat, flat, flat], derived=[[0.05], [0.045], [0.04]], affinity=[[A]] * 3)
    assert found["derived_std_falls"].evaluate(one_seed)["holds"] is None  # one teacher seed: no interval
    disagree = _results([flat, flat, flat], affinity=[[A, A], [B, B], [A, A]])
    assert found["affinity_agrees"].evaluate(disagree)["holds"] is False
    # one teacher's two seeds disagree with each other: resampling them spans both answers
    unsure = _results([flat, flat, flat], affinity=[[A, A], [A, B], [A, A]])
    assert found["affinity_agrees"].evaluate(unsure)["holds"] is None

    # claim 3: the most accurate teacher (T3 here) teaches worse than the best smaller one
    worse = {**flat, "kd_T4": _cell(0.85, 0.76)}
    better = {**flat, "kd_T4": _cell(0.9, 0.84)}
    r = _results([flat, better, worse], val=(0.80, 0.82, 0.86))
    assert found["capacity_mismatch"].evaluate(r)["holds"] is True
    noisy = {**flat, "kd_T4": _cell(0.85, [0.76, 0.92, 0.80])}
    r = _results([flat, better, noisy], val=(0.80, 0.82, 0.86))
    assert found["capacity_mismatch"].evaluate(r)["holds"] is None
    r = _results([flat, better, worse], val=(0.90, 0.82, 0.86))   # the smallest teacher is the most accurate
    na = found["capacity_mismatch"].evaluate(r)
    assert na["holds"] is None and "there is no smaller teacher" in na["not_applicable"]

    # claims 4a/4b on the largest teacher T3
    t3 = {**flat, "ats": _cell(0.8, 0.83), "ats_symmetric": _cell(0.8, 0.85)}
    r = _results([flat, flat, t3])
    assert found["ats_beats_kd"].evaluate(r)["holds"] is True
    assert found["asymmetry_helps"].evaluate(r)["holds"] is False
    t3 = {**flat, "ats": _cell(0.8, [0.79, 0.81, 0.80])}
    assert found["ats_beats_kd"].evaluate(_results([flat, flat, t3]))["holds"] is None
    assert found["asymmetry_helps"].evaluate(_results([flat, flat, t3]))["holds"] is None
    t3 = {**flat, "ats": _cell(0.8, 0.77), "ats_symmetric": _cell(0.8, 0.75)}
    assert found["ats_beats_kd"].evaluate(_results([flat, flat, t3]))["holds"] is False
    assert found["asymmetry_helps"].evaluate(_results([flat, flat, t3]))["holds"] is True
    no_ats = {k: v for k, v in flat.items() if k != "ats"}
    assert found["ats_beats_kd"].evaluate(_results([flat, flat, no_ats]))["not_applicable"] is not None

    # claim 5: needs a gap (T3's best KD reliably below the best KD teacher's)
    no_gap = _results([flat, flat, flat])
    na = found["remedy_closes_gap"].evaluate(no_gap)
    assert na["holds"] is None and na["not_applicable"].startswith("no capacity-mismatch gap")
    best = {**flat, "kd_T4": _cell(0.9, 0.85)}
    gap_closed = {**flat, "dkd": _cell(0.85, 0.848)}      # the remedy reaches the best KD student: within 0.5
    assert found["remedy_closes_gap"].evaluate(_results([best, flat, gap_closed]))["holds"] is True
    gap_open = {**flat, "dkd": _cell(0.85, 0.81)}         # 4 points behind
    entry = found["remedy_closes_gap"].evaluate(_results([best, flat, gap_open]))
    assert entry["holds"] is False and entry["selections"]["best remedy of T3"] == "dkd"
    unclear = {**flat, "dkd": _cell(0.85, [0.80, 0.86, 0.83])}
    assert found["remedy_closes_gap"].evaluate(_results([best, flat, unclear]))["holds"] is None
    assert not math.isnan(found["remedy_closes_gap"].evaluate(_results([best, flat, unclear]))["estimate"])
