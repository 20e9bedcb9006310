"""The theory study end to end on a tiny preset, rerun reuse, and config errors."""

from __future__ import annotations

import json

import pytest

from kdlab.errors import ConfigError
from kdlab.studies.theory import run_theory

TINY = ["bound.n_train=300", "bound.n_test=500", "bound.teacher.epochs=2", "bound.teacher.model.width=32",
        "bound.student.epochs=2", "bound.capacities=[{depth: 0}, {width: 4}, {width: 8}]", "bound.seeds=[0,1]",
        "variance.sizes=[10,40]", "variance.replicates=60", "variance.num_bootstrap=100",
        "ntk.widths=[8,32,128]", "ntk.n_train=10", "ntk.n_test=12", "ntk.steps=20", "ntk.seeds=[0,1]"]


def test_theory_study_end_to_end_and_rerun_reuses_everything(tmp_path):
    results = run_theory(out=tmp_path, preset="quick", overrides=TINY, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["study"] == "theory"
    claims = saved["claims"]
    assert len(claims) == 7
    assert all(c["holds"] in (True, False, None) and any(ch.isdigit() for ch in c["evidence"]) for c in claims)

    bound = saved["bound"]
    assert len(bound["rows"]) == 3 * 2 and len(saved["students"]) == 6
    for row in bound["rows"]:
        parts = row["training"] + row["distillation_error"] + row["distillation_complexity"]
        assert row["total"] == pytest.approx(parts)
        assert row["distillation"] == pytest.approx(8 * row["phi"]) and 0 <= row["phi"] <= row["l1"] / 2 + 1e-12
        assert row["complexity"] == pytest.approx(row["rademacher"] / 2.0)  # gamma = 2
        assert all(level >= norm for level, norm in zip(row["norm_levels"], row["layer_norms"]))
    own = bound["teacher"]["own_bound"]
    assert own["phi"] == 0 and own["distillation"] == 0
    assert own["train_surrogate"] == pytest.approx(own["train_surrogate_teacher"])

    rows = saved["risk_variance"]["rows"]
    assert [r["n"] for r in rows] == [10, 40]
    for r in rows:
        for key in ("onehot", "bayes", "teacher"):
            assert r[key]["low"] <= r[key]["variance"] <= r[key]["high"]
        assert r["bayes_over_onehot"]["low"] <= r["bayes_over_onehot"]["ratio"] <= r["bayes_over_onehot"]["high"]

    ntk = saved["ntk"]
    assert len(ntk["rows"]) == 3 * 2 and set(ntk["summary"]) == {"8", "32", "128"}
    assert all(r["drift"] > 0 and r["linearization_error"] >= 0 for r in ntk["rows"])

    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "distillation bound" in (tmp_path / "report.md").read_text()

    again = run_theory(out=tmp_path, preset="quick", overrides=TINY, progress=False)
    assert again["runs_trained"] == 0 and again["runs_reused"] == results["runs_trained"] == 1 + 6
    assert [r["total"] for r in again["bound"]["rows"]] == [r["total"] for r in results["bound"]["rows"]]


def test_theory_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="capacities"):
        run_theory(out=tmp_path, preset="quick", overrides=["bound.capacities=[{width: 0}]"], progress=False)
    with pytest.raises(ConfigError, match="widths"):
        run_theory(out=tmp_path, preset="quick", overrides=["ntk.widths=[64, 32]"], progress=False)
    with pytest.raises(ConfigError, match="ReLU 'mlp'"):
        run_theory(out=tmp_path, preset="quick", overrides=["bound.student.model.activation=tanh"], progress=False)
    with pytest.raises(ConfigError, match="--preset 'huge'"):
        run_theory(out=tmp_path, preset="huge", progress=False)
    assert not (tmp_path / "runs").exists()  # nothing trained
