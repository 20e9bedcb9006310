"""The nasty-teacher study end to end on a tiny digits preset: runs, numbers recomputed by hand, claims, report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from kdlab.errors import ConfigError
from kdlab.studies import STUDIES, run_study
from kdlab.studies.nasty import NASTY, NastyStudyConfig, claims


def run_nasty(**kwargs):
    return run_study(NASTY, **kwargs)

TINY = ["data.name=digits", "data.val_size=200", "teacher.train_subset=null", "teacher.epochs=3",
        "teacher.model={name: mlp, width: 64, depth: 1}", "teacher.batch_size=64", "nasty.epochs=3",
        "nasty.omega=0.5", "nasty.batch_size=64", "student.train_subset=300", "student.epochs=3",
        "student.batch_size=64", "skeptical.hidden=16", "seeds=[0,1]"]


def test_nasty_study_end_to_end_on_digits(tmp_path):
    assert STUDIES.get("nasty") is NASTY
    results = run_nasty(out=tmp_path, preset="quick", overrides=TINY, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["study"] == "nasty" and saved["dataset"] == "digits"
    normal, nasty = saved["teachers"]
    assert (normal["name"], nasty["name"]) == ("normal", "nasty")
    # the protected model is the last epoch of the nasty run, fine-tuned against the normal teacher
    nasty_run = nasty["run_dir"]
    assert nasty["weights"] == f"{nasty_run}/checkpoints/last.safetensors"
    protected = json.loads((tmp_path / "runs" / nasty_run.split("/")[-1] / "protected.json").read_text())
    assert protected["test_accuracy"] == nasty["test_accuracy"]
    assert protected["teacher_test_accuracy"] == pytest.approx(normal["test_accuracy"])
    assert nasty["kl_to_adversary_test"] == pytest.approx(saved["kl_nasty_to_normal_test"], rel=1e-4)
    assert saved["kl_nasty_to_normal_test"] > 0.05
    for t in saved["teachers"]:
        assert sum(t["probs_by_normal_rank"]) == pytest.approx(1.0, abs=1e-5)
        assert set(t["nongt_entropy"]) == {"1.0", "2.0", "4.0", "8.0"}
    # ranked by the normal teacher's own probabilities, its curve cannot rise
    ranked = normal["probs_by_normal_rank"]
    assert all(a >= b - 1e-7 for a, b in zip(ranked, ranked[1:]))
    assert nasty["probs_by_normal_rank"] != normal["probs_by_normal_rank"]

    students = saved["students"]
    assert len(students) == 2 * 5  # per seed: CE + KD and skeptical from each teacher
    groups: dict[str, dict[int, float]] = {}
    for s in students:
        key = "ce" if s["teacher"] is None else f"{s['method']}_{s['teacher']}"
        groups.setdefault(key, {})[s["seed"]] = s["test_accuracy"]
        assert s["hyperparams"] == ({"name": "ce"} if s["method"] == "ce" else
                                    {"name": "kd", "temperature": 4.0, "alpha": 0.9})
    assert set(groups) == {"ce", "kd_normal", "kd_nasty", "skeptical_normal", "skeptical_nasty"}
    for key, accs in groups.items():
        assert saved["table"][key]["mean"] == pytest.approx(np.mean(list(accs.values())))
    d = [groups["kd_nasty"][s] - groups["kd_normal"][s] for s in (0, 1)]
    half = stats.t.ppf(0.975, 1) * np.std(d, ddof=1) / np.sqrt(2)
    diff = saved["differences"]["kd_nasty - kd_normal"]
    assert diff["mean"] == pytest.approx(np.mean(d)) and diff["high"] == pytest.approx(np.mean(d) + half)

    found = {c["id"]: c for c in saved["claims"]}
    assert list(found) == ["keeps_accuracy", "students_worse", "skeptical_recovers", "skeptical_cheap"]
    drop = nasty["test_accuracy"] - normal["test_accuracy"]
    assert found["keeps_accuracy"]["estimate"] == pytest.approx(drop)
    assert found["keeps_accuracy"]["n"] > 100  # paired over the test samples
    assert found["students_worse"]["interval"] == [diff["low"], diff["high"]]
    expected = True if diff["high"] < 0 else False if diff["low"] >= 0 else None
    assert found["students_worse"]["holds"] is expected
    if expected is not True:  # no measurable harm: recovery is not applicable
        assert found["skeptical_recovers"]["not_applicable"].startswith("the nasty teacher did not measurably hurt")
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "Paired differences" in (tmp_path / "report.md").read_text()
    assert results["runs_trained"] == 2 + 10


def test_nasty_study_config_errors_before_training(tmp_path):
    with pytest.raises(ConfigError, match="student.tap='hidden7'"):
        run_nasty(out=tmp_path, preset="quick", overrides=TINY + ["student.tap=hidden7"], progress=False)
    with pytest.raises(ConfigError, match="unknown key 'nasty.omgea'"):
        run_nasty(out=tmp_path, preset="quick", overrides=TINY + ["nasty.omgea=1"], progress=False)
    with pytest.raises(ConfigError, match="nasty.start"):
        run_nasty(out=tmp_path, preset="quick", overrides=TINY + ["nasty.start=later"], progress=False)
    with pytest.raises(ConfigError, match="--preset 'huge'"):
        run_nasty(out=tmp_path, preset="huge", progress=False)
    assert not (tmp_path / "runs").exists()


def _diff(mean, low, high, n=3):
    return {"mean": mean, "low": low, "high": high, "n": n}


def _results(harm, recover, cheap, accuracy=(-0.004, -0.01, 0.002)):
    zero = _diff(0.0, -0.01, 0.01)
    return {"teacher_accuracy_difference": {**_diff(*accuracy), "n": 10000},
            "teachers": [{"test_accuracy": 0.9}, {"test_accuracy": 0.896, "kl_to_adversary_test": 0.3}],
            "differences": {"kd_nasty - kd_normal": harm, "kd_nasty - ce": zero, "kd_normal - ce": zero,
                            "skeptical_nasty - kd_nasty": recover, "skeptical_nasty - kd_normal": zero,
                            "skeptical_nasty - ce": zero, "skeptical_normal - kd_normal": cheap}}


def test_nasty_claims_on_hand_made_numbers():
    cfg = NastyStudyConfig.model_validate({"teacher": {"model": {"name": "mlp"}},
                                           "student": {"model": {"name": "mlp"}}})
    keeps, worse, recovers, cheap = claims(cfg)
    harm, no_harm = _diff(-0.05, -0.07, -0.03), _diff(0.001, -0.01, 0.012)
    up, down, unclear = _diff(0.03, 0.01, 0.05), _diff(-0.03, -0.05, -0.01), _diff(0.0, -0.02, 0.02)
    r = _results(harm, up, _diff(-0.002, -0.008, 0.004))
    assert [c.evaluate(r)["holds"] for c in (keeps, worse, recovers, cheap)] == [True, True, True, True]
    r = _results(_diff(0.03, 0.01, 0.05), down, _diff(-0.03, -0.04, -0.02), accuracy=(-0.04, -0.05, -0.03))
    verdicts = [c.evaluate(r) for c in (keeps, worse, recovers, cheap)]
    assert [v["holds"] for v in verdicts] == [False, False, None, False]
    assert verdicts[2]["not_applicable"].startswith("the nasty teacher did not measurably hurt")
    r = _results(harm, down, _diff(-0.012, -0.02, -0.004), accuracy=(-0.018, -0.02, -0.016))
    assert [c.evaluate(r)["holds"] for c in (keeps, worse, recovers, cheap)] == [False, True, False, None]
    r = _results(no_harm, unclear, _diff(0.0, -0.005, 0.005), accuracy=(-0.015, -0.02, -0.01))
    verdicts = [c.evaluate(r) for c in (keeps, worse, recovers, cheap)]
    assert [v["holds"] for v in verdicts] == [None, None, None, True]
    assert verdicts[2]["not_applicable"] is not None and verdicts[1]["not_applicable"] is None
    r = _results(harm, unclear, cheap=_diff(0.0, float("nan"), float("nan"), 1))
    assert recovers.evaluate(r)["holds"] is None and cheap.evaluate(r)["holds"] is None


def test_every_nasty_claim_true_false_and_undecided(verdict_intervals):
    cfg = NastyStudyConfig.model_validate({"teacher": {"model": {"name": "mlp"}},
                                           "student": {"model": {"name": "mlp"}}})
    harm = _diff(-0.05, -0.07, -0.03)
    for claim in claims(cfg):
        for expected, (mean, low, high) in verdict_intervals(claim.rule).items():
            d = _diff(mean, low, high)
            if claim.id == "students_worse":
                r = _results(d, d, d)
            else:  # the other claims read their own difference; the harm keeps 'recovers' applicable
                r = _results(harm, d, d, accuracy=(mean, low, high))
            assert claim.evaluate(r)["holds"] is expected, (claim.id, expected)
