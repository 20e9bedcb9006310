"""The baseline study through the driver on a tiny digits preset; its claim on hand-made paired differences."""

from __future__ import annotations

import json
import math

from kdlab.studies import STUDIES, run_study
from kdlab.studies.baseline import BASELINE, BaselineStudyConfig, claims

TINY = ["data.name=digits", "data.val_size=150", "teacher.train_subset=400", "teacher.batch_size=64",
        "student.train_subset=200", "student.batch_size=64", "seeds=[0,1]"]


def test_baseline_end_to_end_report_rebuilds_byte_identically(tmp_path, assert_report_rebuilds):
    assert STUDIES.get("baseline") is BASELINE
    results = run_study(BASELINE, out=tmp_path, preset="quick", overrides=TINY, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["study"] == "baseline" and saved["runs_trained"] == 5 and saved["runs_reused"] == 0
    assert set(saved["methods"]) == {"ce", "kd(temperature=4.0, alpha=0.9)"}
    [claim] = saved["claims"]
    assert claim["n"] == 2 and claim["rule"].startswith("holds if the 95% interval lies above 0 points")
    assert {"rule", "statistic", "interval", "n", "selected_on", "evidence", "holds"} <= set(claim)
    assert saved["report_files"] == ["student_accuracy.png", "report.md", "report.html"]
    assert_report_rebuilds(tmp_path, saved["report_files"])
    again = run_study(BASELINE, out=tmp_path, preset="quick", overrides=TINY, progress=False)
    assert again["runs_trained"] == 0 and again["runs_reused"] == 5
    assert again["methods"] == results["methods"]


def _results(mean, low, high, n=3):
    return {"methods": {"ce": {}, "kd(temperature=4.0, alpha=0.9)": {
        "minus_ce": {"mean": mean, "low": low, "high": high, "n": n}}}}


def test_claim_kd_beats_ce_on_hand_made_differences():
    cfg = BaselineStudyConfig.model_validate({"teacher": {"model": {"name": "cnn"}},
                                              "student": {"model": {"name": "mlp"}},
                                              "methods": [{"name": "ce"}, {"name": "kd", "temperature": 4.0,
                                                                           "alpha": 0.9}]})
    [claim] = claims(cfg)
    assert claim.evaluate(_results(0.02, 0.01, 0.03))["holds"] is True
    assert claim.evaluate(_results(-0.02, -0.03, -0.01))["holds"] is False
    undecided = claim.evaluate(_results(0.01, -0.01, 0.03))
    assert undecided["holds"] is None and undecided["not_applicable"] is None
    assert claim.evaluate(_results(0.01, math.nan, math.nan, 1))["holds"] is None
    na = claim.evaluate(_results(math.nan, math.nan, math.nan, 0))
    assert na["holds"] is None and na["not_applicable"] == "no seed has both students"
    no_ce = cfg.model_copy(update={"methods": cfg.methods[1:]})
    assert claims(no_ce) == []
