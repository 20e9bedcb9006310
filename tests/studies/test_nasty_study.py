"""The nasty-teacher study end to end on a tiny digits preset: runs, numbers recomputed by hand, claims, report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from kdlab.errors import ConfigError
from kdlab.studies import STUDIES
from kdlab.studies.nasty import run_nasty

TINY = ["data.name=digits", "data.val_size=200", "teacher.train_subset=null", "teacher.epochs=3",
        "teacher.model={name: mlp, width: 64, depth: 1}", "teacher.batch_size=64", "nasty.epochs=3",
        "nasty.omega=0.5", "nasty.batch_size=64", "student.train_subset=300", "student.epochs=3",
        "student.batch_size=64", "skeptical.hidden=16", "seeds=[0,1]"]


def test_nasty_study_end_to_end_on_digits(tmp_path):
    assert STUDIES.get("nasty") is run_nasty
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

    claims = saved["claims"]
    assert len(claims) == 4
    drop = normal["test_accuracy"] - nasty["test_accuracy"]
    assert claims[0]["holds"] is bool(drop <= 0.015)
    assert f"{drop * 100:+.2f}" in claims[0]["evidence"]
    assert claims[1]["holds"] is (True if diff["high"] < 0 else False if diff["mean"] >= 0 else None)
    assert all(c["holds"] in (True, False, None) and any(ch.isdigit() for ch in c["evidence"]) for c in claims)
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
