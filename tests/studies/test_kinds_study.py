"""The kinds study end to end on a tiny digits preset; its claim rules on hand-made paired differences."""

from __future__ import annotations

import json
import math

import pytest

from kdlab.errors import ConfigError
from kdlab.losses import FEATURE_LOSSES
from kdlab.studies import STUDIES
from kdlab.studies import run_study
from kdlab.studies.kinds import KINDS, PRESETS, KindsStudyConfig, claims

TINY = ["data.name=digits", "data.val_size=150", "teacher.train_subset=400", "teacher.epochs=1",
        "teacher.model.width=0.25", "teacher.batch_size=64", "student.train_subset=200", "student.batch_size=64"]


def test_kinds_study_quick_preset_end_to_end_and_rerun_reuses_everything(tmp_path):
    assert STUDIES.get("kinds") is KINDS
    results = run_study(KINDS, out=tmp_path, preset="quick", overrides=TINY, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["study"] == "kinds" and saved["dataset"] == "digits"
    methods = [m["label"] for m in saved["config"]["methods"]]
    assert set(saved["table"]) == set(methods)
    # every feature/relation loss and every scheme ran
    used = {t["loss"]["name"] for s in saved["students"] for t in s["features"]}
    assert used == set(FEATURE_LOSSES.names())
    schemes = {s["scheme"]["name"] for s in saved["students"] if s["scheme"]}
    assert schemes == {"dml", "joint", "byot"}
    assert {s["method"] for s in saved["students"]} == {"ce", "ban_gen1", *methods}
    ban = [s for s in saved["students"] if s["method"] in ("ban_gen1", "ban")]
    assert [s["generation"] for s in ban] == [1, 2] and ban[1]["teacher"] == "generation 1"
    assert [len(g) for g in saved["ban_generations"].values()] == [3]
    for s in saved["students"]:
        assert {"teacher", "method", "hyperparams", "seed", "test_accuracy", "run_dir"} <= set(s)
        assert 0 <= s["test_accuracy"] <= 1
    # the hint stage of feature_mix: its first epoch logged the terms alone
    mix = next(s for s in saved["students"] if s["method"] == "feature_mix")
    first = json.loads((tmp_path / "runs" / mix["run_dir"].split("/")[-1] / "metrics.jsonl").read_text()
                       .splitlines()[0])
    assert "train_ce" not in first and {"train_agd_stage2", "train_nonlocal_stage3"} <= set(first)
    # one seed: no interval, so every claim is undecided, and says why with numbers
    assert all(c["holds"] is None and c["interval"] is None and c["n"] == 1 for c in saved["claims"])
    assert all("(no interval: n = 1)" in c["evidence"] for c in saved["claims"])
    assert [c["claim"] for c in saved["claims"]][:3] == [
        "offline response KD (kd) beats CE for this pair", "feature-based KD beats response KD (kd) for this pair",
        "relation-based KD beats response KD (kd) for this pair"]
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert "feature_mix (feature): loss ce + 1 x agd(stage2 -> stage2)" in (tmp_path / "report.md").read_text()
    assert set(saved["loss_terms"]) == {"fitnet", "at", "rkd", "sp", "feature_mix", "relation_mix"}
    again = run_study(KINDS, out=tmp_path, preset="quick", overrides=TINY, progress=False)
    assert again["runs_trained"] == 0 and again["runs_reused"] == results["runs_trained"] + results["runs_reused"]
    assert [s["test_accuracy"] for s in again["students"]] == [s["test_accuracy"] for s in results["students"]]


def _diff(mean, low, high, n=3):
    return {"mean": mean, "low": low, "high": high, "n": n, "significant": low > 0 or high < 0}


def _cfg():
    raw = {"teacher": {"model": {"name": "cnn"}}, "student": {"model": {"name": "cnn", "width": 0.25}},
           "methods": PRESETS["quick"]["methods"][:9]}
    return KindsStudyConfig.model_validate(raw)


def _verdicts(cfg, table):
    return {c.id: c.evaluate({"table": table})["holds"] for c in claims(cfg)}


def test_claim_rules_on_hand_made_differences():
    cfg = _cfg()
    zero = _diff(0.0, -0.001, 0.001)
    table = {m.label: {"minus_ce": zero, "minus_reference": zero, "val_accuracy": {"mean": 0.80}}
             for m in cfg.methods}
    table["kd"]["minus_ce"] = _diff(0.02, 0.01, 0.03)                 # interval above 0
    table["fitnet"]["minus_reference"] = _diff(0.01, -0.002, 0.022)   # straddles 0
    table["at"]["minus_reference"] = _diff(0.03, 0.02, 0.04)          # clearly better on test ...
    table["fitnet"]["val_accuracy"] = {"mean": 0.83}                  # ... but fitnet is best on validation
    table["rkd"]["minus_reference"] = _diff(-0.01, -0.02, 0.0)
    table["sp"]["minus_reference"] = _diff(0.02, 0.01, 0.03)
    table["rkd"]["val_accuracy"] = {"mean": 0.81}                     # rkd chosen: its interval is at or below 0
    table["dml"]["minus_reference"] = _diff(0.004, -0.008, 0.009)     # within +-1 point
    table["joint"]["minus_reference"] = _diff(-0.03, -0.04, -0.02)    # entirely below -1 point
    table["ban"]["minus_ce"] = _diff(-0.001, -0.004, 0.002)
    table["byot"]["minus_ce"] = _diff(-0.02, -0.03, -0.01)
    assert _verdicts(cfg, table) == {
        "reference_beats_ce": True,
        "feature_beats_response": None,       # validation picks fitnet, whose test interval straddles 0
        "relation_beats_response": False,     # validation picks rkd (not the test-best sp)
        "online_matches_offline_dml": True,
        "online_matches_offline_joint": False,
        "self_improves_ban": None,
        "self_improves_byot": False,
    }
    feature = next(c for c in claims(cfg) if c.id == "feature_beats_response").evaluate({"table": table})
    assert feature["selections"] == {"best method": "fitnet"} and "validation" in feature["selected_on"]
    assert feature["evidence"].startswith("+1.00 [-0.20, +2.20] points")
    table["fitnet"]["val_accuracy"] = {"mean": 0.70}                  # now at is best on validation
    table["dml"]["minus_reference"] = _diff(0.008, -0.004, 0.02)      # straddles +1 point
    verdicts = _verdicts(cfg, table)
    assert verdicts["feature_beats_response"] is True and verdicts["online_matches_offline_dml"] is None
    dml = next(c for c in claims(cfg) if c.id == "online_matches_offline_dml").evaluate({"table": table})
    assert "+0.80 [-0.40, +2.00] points" in dml["evidence"] and "±1 points" in dml["rule"]
    # no feature method has a validation score (e.g. none trained): not applicable, with the reason
    for label in ("fitnet", "at"):
        table[label]["val_accuracy"] = {"mean": math.nan}
    na = next(c for c in claims(cfg) if c.id == "feature_beats_response").evaluate({"table": table})
    assert na["holds"] is None and na["not_applicable"] == "no method of this kind has a validation accuracy"


def _run(tmp_path, **kwargs):
    return run_study(KINDS, out=tmp_path, **kwargs)


def test_study_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="not 'ce'"):
        _run(tmp_path, overrides=["methods=[{label: ce, kind: response, loss: {name: kd}}]"])
    with pytest.raises(ConfigError, match="would be the CE baseline"):
        _run(tmp_path, overrides=["methods=[{label: kd, kind: response}]"])
    with pytest.raises(ConfigError, match="reference='kd' must be the label of an offline method"):
        _run(tmp_path, overrides=["methods=[{label: dml, kind: online, scheme: {name: dml}}]"])
    with pytest.raises(ConfigError, match="scheme.name='mutual' is not allowed"):
        _run(tmp_path, overrides=["methods=[{label: kd, kind: response, loss: {name: kd}}, "
                                           "{label: m, kind: online, scheme: {name: mutual}}]"])
    # a tap the student does not have fails before anything trains, naming the method and the term
    with pytest.raises(ConfigError, match=r"methods 'fit': features\[0\] \(fitnet_stage9\).student_tap='stage9'"):
        _run(tmp_path, preset="quick", overrides=TINY + [
            "methods=[{label: kd, kind: response, loss: {name: kd}}, {label: fit, kind: feature, features: "
            "[{student_tap: stage9, teacher_tap: stage2, loss: {name: fitnet}}]}]"])
    assert not (tmp_path / "runs").exists()


def test_every_kinds_claim_true_false_and_undecided(verdict_intervals):
    cfg = _cfg()
    for claim in claims(cfg):
        for expected, (mean, low, high) in verdict_intervals(claim.rule).items():
            diff = _diff(mean, low, high)
            table = {m.label: {"minus_ce": diff, "minus_reference": diff, "val_accuracy": {"mean": 0.8}}
                     for m in cfg.methods}
            assert claim.evaluate({"table": table})["holds"] is expected, (claim.id, expected)
