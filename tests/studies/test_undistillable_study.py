"""The undistillable-classes study end to end on a tiny digits preset, reusing the capacity study's runs."""

from __future__ import annotations

import json

import pytest

from kdlab.errors import ConfigError
from kdlab.studies import STUDIES, run_capacity
from kdlab.studies.undistillable import run_undistillable

SHARED = ["data.name=digits", "data.val_size=200", "teachers.train_subset=null", "teachers.epochs=2",
          "teachers.capacities=[{width: 8}, {width: 64}]", "student.train_subset=300", "student.epochs=3",
          "seeds=[0,1]"]
# a loose interval (60%) so that the barely trained tiny students surely flag classes and TLLM gets exercised
TINY = SHARED + ["confidence=0.6", "num_bootstrap=500"]


def test_study_end_to_end_reuses_the_capacity_runs_and_reruns_for_free(tmp_path):
    store = f"store={tmp_path / 'store'}"
    kd_only = 'methods=[{label: kd_T4, loss: {name: kd, temperature: 4.0, alpha: 0.9}}]'
    run_capacity(out=tmp_path / "capacity", preset="quick", overrides=SHARED + [store, kd_only], progress=False)

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

    claims = saved["claims"]
    assert [c["claim"] for c in claims] == [
        "undistillable classes exist",
        "the number of undistillable classes grows with the teacher-student capacity gap",
        "TLLM improves overall accuracy over KD"]
    assert all(c["holds"] in (True, False, None) and any(ch.isdigit() for ch in c["evidence"]) for c in claims)
    counts = [len(t["undistillable_classes"]) for t in teachers]
    assert str(counts) in claims[1]["evidence"]
    if counts[0] == counts[1]:
        assert claims[1]["holds"] is False  # rule: no growth

    report = (tmp_path / "und" / "report.md").read_text()
    assert "Remedy: TLLM" in report and "Detection rule (fixed in advance)" in report
    html = (tmp_path / "und" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4

    again = run_undistillable(out=tmp_path / "und", preset="quick", overrides=TINY + [store], progress=False)
    assert again["runs_trained"] == 0
    assert [t["undistillable_classes"] for t in again["teachers"]] == [t["undistillable_classes"] for t in teachers]
    assert [s["test_accuracy"] for s in again["students"]] == [s["test_accuracy"] for s in students]


def test_study_is_registered_and_config_errors_name_the_key_before_training(tmp_path):
    assert STUDIES.get("undistillable") is run_undistillable
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
