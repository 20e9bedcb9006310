"""The undistillable-classes study end to end on a tiny digits preset, reusing the capacity study's runs."""

from __future__ import annotations

import json

import pytest

from kdlab.cli import main
from kdlab.errors import ConfigError
from kdlab.studies import STUDIES, run_study
from kdlab.studies.capacity import CAPACITY
from kdlab.studies.undistillable import UNDISTILLABLE, UndistillableStudyConfig, claims


def run_capacity(**kwargs):
    return run_study(CAPACITY, **kwargs)


def run_undistillable(**kwargs):
    return run_study(UNDISTILLABLE, **kwargs)

SHARED = ["data.name=digits", "data.val_size=200", "teachers.train_subset=null", "teachers.epochs=2",
          "teachers.capacities=[{width: 8}, {width: 64}]", "student.train_subset=300", "student.epochs=3",
          "seeds=[0,1]"]
# a loose interval (60%) so that the barely trained tiny students surely flag classes and TLLM gets exercised
TINY = SHARED + ["confidence=0.6", "num_bootstrap=500"]


def test_study_end_to_end_reuses_the_capacity_runs_and_reruns_for_free(tmp_path):
    store = f"store={tmp_path / 'store'}"
    kd_only = 'methods=[{label: kd_T4, loss: {name: kd, temperature: 4.0, alpha: 0.9}}]'
    # tuning off: the capacity study's KD students are the declared T4 / 0.9 ones this study examines
    run_capacity(out=tmp_path / "capacity", preset="quick", overrides=SHARED + [store, kd_only, "tuning.trials=0"],
                 progress=False)

    results = run_undistillable(out=tmp_path / "und", preset="quick", overrides=TINY + [store], progress=False)
    saved = json.loads((tmp_path / "und" / "results.json").read_text())
    assert saved["study"] == "undistillable" and saved["dataset"] == "digits"
    assert saved["class_names"] == [str(d) for d in range(10)]
    assert saved["detection"]["interval"] == "bootstrap" and saved["detection"]["split"] == "val"
    teachers = saved["teachers"]
    assert len(teachers) == 2 and teachers[0]["params"] < teachers[1]["params"]
    with_tllm = [t for t in teachers if t["undistillable_classes"]]
    assert with_tllm, "the loose tiny preset must flag at least one class (it exercises TLLM)"
    # teachers, CE and KD students all came from the capacity study's store; only TLLM students are new
    assert results["runs_trained"] == 2 * len(with_tllm)
    assert results["runs_reused"] == 2 + 2 + 2 * 2

    for t in teachers:
        for split in ("detect", "test"):
            g = t["gain"][split]
            assert len(g["mean"]) == len(g["low"]) == len(g["high"]) == 10 and g["n_seeds"] == 2
            assert all(lo <= m <= hi for lo, m, hi in zip(g["low"], g["mean"], g["high"]))
        # detected exactly where the interval lies below 0, on the validation split
        assert t["undistillable_classes"] == [c for c, h in enumerate(t["gain"]["detect"]["high"]) if h < 0]
        assert set(t["replicated_on_test"]) <= set(t["undistillable_classes"])
        assert t["undistillable_names"] == [str(c) for c in t["undistillable_classes"]]
        for c in t["undistillable_classes"]:
            row = t["confusion_shift"][str(c)]["row"]
            assert sum(row) == pytest.approx(0, abs=1e-9)
            assert row[c] == pytest.approx(t["gain"]["test"]["mean"][c])
        profile = t["teacher_profile"]
        assert len(profile["test_accuracy_per_class"]) == 10
        assert set(profile["distill_set"]["classes"]) == {str(c) for c in t["undistillable_classes"]}
        if t["tllm"]:
            assert t["tllm"]["classes"] == t["undistillable_classes"]
            assert t["tllm"]["minus_kd"]["n"] == 2

    students = saved["students"]
    tllm_students = [s for s in students if s["method"] == "tllm"]
    assert len(students) == 2 + 2 * 2 + len(tllm_students) and len(tllm_students) == 2 * len(with_tllm)
    for s in students:
        assert {"teacher", "method", "hyperparams", "seed", "test_accuracy", "run_dir"} <= set(s)
    for s in tllm_students:
        assert s["hyperparams"]["name"] == "tllm" and s["hyperparams"]["undistillable_classes"]
        assert (s["hyperparams"]["temperature"], s["hyperparams"]["alpha"]) == (4.0, 0.9)

    found = {c["id"]: c for c in saved["claims"]}
    assert list(found) == ["classes_exist", "count_grows", "tllm_improves"]
    counts = [len(t["undistillable_classes"]) for t in teachers]
    assert str(counts) in found["count_grows"]["evidence"]
    # the count interval: [detected and replicated on test, flagged on either split]
    replicated = sum(len(t["replicated_on_test"]) for t in teachers)
    flagged = sum(len(set(t["undistillable_classes"]) | set(t["undistillable_on_test"])) for t in teachers)
    assert found["classes_exist"]["interval"] == [replicated, flagged]
    assert found["classes_exist"]["holds"] is (True if replicated >= 1 else None)
    assert found["tllm_improves"]["n"] == 2 and found["tllm_improves"]["not_applicable"] is None

    report = (tmp_path / "und" / "report.md").read_text()
    assert "Remedy: TLLM" in report and "Detection rule (fixed in advance)" in report
    html = (tmp_path / "und" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert main(["report", str(tmp_path / "und")]) == 0
    assert (tmp_path / "und" / "report.md").read_text() == report

    again = run_undistillable(out=tmp_path / "und", preset="quick", overrides=TINY + [store], progress=False)
    assert again["runs_trained"] == 0
    assert [t["undistillable_classes"] for t in again["teachers"]] == [t["undistillable_classes"] for t in teachers]
    assert [s["test_accuracy"] for s in again["students"]] == [s["test_accuracy"] for s in students]


def test_study_is_registered_and_config_errors_name_the_key_before_training(tmp_path):
    assert STUDIES.get("undistillable") is UNDISTILLABLE
    with pytest.raises(ConfigError, match="kd.name='dkd'"):
        run_undistillable(out=tmp_path, overrides=["kd={name: dkd}"], progress=False)
    with pytest.raises(ConfigError, match="kd option 'standardize'"):
        run_undistillable(out=tmp_path, overrides=["kd={name: kd, standardize: true}"], progress=False)
    with pytest.raises(ConfigError, match="temperature=-1"):
        run_undistillable(out=tmp_path, preset="quick", overrides=TINY + ["kd.temperature=-1"], progress=False)
    with pytest.raises(ConfigError, match="data.val_size=0"):
        run_undistillable(out=tmp_path, overrides=["data.val_size=0"], progress=False)
    with pytest.raises(ConfigError, match="interval"):
        run_undistillable(out=tmp_path, overrides=["interval=normal"], progress=False)
    with pytest.raises(ConfigError, match="--preset 'huge'"):
        run_undistillable(out=tmp_path, preset="huge", progress=False)
    assert not (tmp_path / "runs").exists()  # nothing trained


def _gain(high, mean=-0.05):
    return {"mean": [mean] * 3, "low": [h - 0.1 for h in high], "high": high}


def _teacher(label, params, detected, on_test, high, tllm=None, kd=(0.80, 0.81)):
    return {"label": label, "params": params, "params_ratio": params / 100, "undistillable_classes": detected,
            "undistillable_on_test": on_test, "replicated_on_test": [c for c in detected if c in on_test],
            "gain": {"detect": _gain(high), "test": _gain(high)}, "kd_test_accuracy_per_seed": list(kd),
            "tllm": None if tllm is None else {"classes": detected, "test_accuracy_per_seed": list(tllm),
                                               "minus_kd": {"mean": 0.0, "low": -0.01, "high": 0.01, "n": 2}}}


def _results(teachers, trend=(0.9, 0.85, 1.0)):
    return {"teachers": teachers, "class_names": ["a", "b", "c"], "ce_test_accuracy_per_seed": [0.78, 0.79],
            "detection": {"split": "val", "rule": "undistillable if ...", "n_seeds": 2},
            "count_trend": {"estimate": trend[0], "low": trend[1], "high": trend[2], "replicates": 1000}}


def test_undistillable_claims_on_hand_made_numbers():
    exist, grows, tllm = claims(UndistillableStudyConfig.model_validate(
        {"teachers": {"model": {"name": "mlp"}, "capacities": [{}, {}]}, "student": {"model": {"name": "mlp"}}}))
    none = [_teacher("T1", 1000, [], [], [0.01] * 3), _teacher("T2", 5000, [], [], [0.01] * 3)]
    r = _results(none)
    assert exist.evaluate(r)["holds"] is False                   # [0, 0]: nothing flagged on either split
    for claim in (grows, tllm):                                  # nothing to test: not applicable, not false
        entry = claim.evaluate(r)
        assert entry["holds"] is None and entry["not_applicable"].startswith("nothing to test")
    found = [_teacher("T1", 1000, [], [], [0.01] * 3),
             _teacher("T2", 5000, [0, 2], [0], [-0.01, 0.02, -0.02], tllm=(0.83, 0.84))]
    r = _results(found)
    assert exist.evaluate(r)["interval"] == [1.0, 2.0] and exist.evaluate(r)["holds"] is True
    assert grows.evaluate(r)["holds"] is True                    # rho 0.9 [0.85, 1.0] >= 0.8
    assert tllm.evaluate(r)["holds"] is True                     # +3 points on both seeds
    assert grows.evaluate(_results(found, (0.5, -0.2, 1.0)))["holds"] is None
    assert grows.evaluate(_results(found, (-0.5, -1.0, 0.2)))["holds"] is False
    unreplicated = [_teacher("T1", 1000, [1], [], [0.01, -0.02, 0.01], tllm=(0.79, 0.80))]
    r = _results(unreplicated)
    assert exist.evaluate(r)["interval"] == [0.0, 1.0] and exist.evaluate(r)["holds"] is None
    assert tllm.evaluate(r)["holds"] is False                    # -1 point on both seeds
    one_seed = [_teacher("T1", 1000, [], [], [float("nan")] * 3)]
    assert exist.evaluate(_results(one_seed))["holds"] is None
    noisy = [_teacher("T1", 1000, [1], [1], [0.01, -0.02, 0.01], tllm=(0.83, 0.79))]   # +3 and -2 points
    assert tllm.evaluate(_results(noisy))["holds"] is None
