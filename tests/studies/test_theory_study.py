"""The theory study end to end on a tiny preset, rerun reuse, and config errors."""

from __future__ import annotations

import json

import pytest

from kdlab.errors import ConfigError
from kdlab.studies import run_study
from kdlab.studies.theory import THEORY, TheoryStudyConfig, claims


def run_theory(**kwargs):
    return run_study(THEORY, **kwargs)

TINY = ["bound.n_train=300", "bound.n_test=500", "bound.teacher.epochs=2", "bound.teacher.model.width=32",
        "bound.student.epochs=2", "bound.capacities=[{depth: 0}, {width: 4}, {width: 8}]", "bound.seeds=[0,1]",
        "variance.sizes=[10,40]", "variance.replicates=60", "variance.num_bootstrap=100",
        "ntk.widths=[8,32,128]", "ntk.n_train=10", "ntk.n_test=12", "ntk.steps=20", "ntk.seeds=[0,1]"]


def test_theory_study_end_to_end_and_rerun_reuses_everything(tmp_path):
    results = run_theory(out=tmp_path, preset="quick", overrides=TINY, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["study"] == "theory"
    assert [c["id"] for c in saved["claims"]] == [
        "bayes_variance", "teacher_variance", "student_bound_tighter", "bound_non_vacuous", "complexity_grows",
        "distillation_error_shrinks", "ntk_lazy", "ntk_linear"]
    found = {c["id"]: c for c in saved["claims"]}
    assert found["bayes_variance"]["interval"] == [
        max(r["bayes_over_onehot"]["low"] for r in saved["risk_variance"]["rows"]),
        max(r["bayes_over_onehot"]["high"] for r in saved["risk_variance"]["rows"])]
    assert found["ntk_lazy"]["n"] == 2 and found["ntk_lazy"]["interval_kind"].startswith("95% bootstrap")

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
    # the teacher, 3 student sizes x 2 seeds, 3 NTK widths x 2 seeds
    assert again["runs_trained"] == 0 and again["runs_reused"] == results["runs_trained"] == 1 + 6 + 6
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


def _results():
    rows = [{"n": 10, "replicates": 60, "bayes_over_onehot": {"ratio": 0.6, "low": 0.5, "high": 0.7},
             "teacher_over_onehot": {"ratio": 0.9, "low": 0.8, "high": 1.05}},
            {"n": 40, "replicates": 60, "bayes_over_onehot": {"ratio": 0.7, "low": 0.55, "high": 0.95},
             "teacher_over_onehot": {"ratio": 1.2, "low": 1.1, "high": 1.3}}]
    bound_rows = [{"seed": s, "total": t} for s, t in ((0, 0.5), (1, 0.52), (0, 3.0), (1, 3.1))]
    summary = {"linear": {"params": 68, "total": {"mean": 0.51}, "training": {"mean": 0.1},
                          "distillation_error": {"mean": 0.2}, "distillation_complexity": {"mean": 0.2},
                          "per_seed": {"total": [0.5, 0.52], "complexity": [0.1, 0.11], "phi": [0.3, 0.31]}},
               "MLP 1x4": {"params": 90, "total": {"mean": 3.05}, "training": {"mean": 0.1},
                           "distillation_error": {"mean": 0.1}, "distillation_complexity": {"mean": 2.8},
                           "per_seed": {"total": [3.0, 3.1], "complexity": [0.5, 0.52], "phi": [0.2, 0.22]}},
               "MLP 1x8": {"params": 180, "total": {"mean": 6.0}, "training": {"mean": 0.1},
                           "distillation_error": {"mean": 0.05}, "distillation_complexity": {"mean": 5.8},
                           "per_seed": {"total": [6.0, 6.0], "complexity": [0.9, 0.95], "phi": [0.25, 0.1]}}}
    return {"risk_variance": {"rows": rows},
            "bound": {"teacher": {"own_bound": {"total": 2.0}, "test_error": 0.05}, "rows": bound_rows,
                      "summary": summary},
            "ntk": {"per_seed": {"8": {"drift": [0.5, 0.6], "linearization_error": [0.5, 0.6]},
                                 "32": {"drift": [0.2, 0.25], "linearization_error": [0.2, 0.3]},
                                 "128": {"drift": [0.05, 0.06], "linearization_error": [0.05, 0.07]}},
                    "summary": {w: {"argmax_agreement": {"mean": 0.9}, "linearization_error": {"mean": 0.1}}
                                for w in ("8", "32", "128")}}}


def test_theory_claims_on_hand_made_numbers():
    cfg = TheoryStudyConfig.model_validate({"bound": {"teacher": {"model": {"name": "mlp"}},
                                                      "student": {"model": {"name": "mlp"}},
                                                      "capacities": [{"depth": 0}]}})
    found = {c.id: c for c in claims(cfg)}
    verdicts = {k: c.evaluate(_results()) for k, c in found.items()}
    assert verdicts["bayes_variance"]["holds"] is True            # every upper end below 1 (0.7, 0.95)
    assert verdicts["teacher_variance"]["holds"] is False         # n = 40: [1.1, 1.3] lies above 1
    assert verdicts["student_bound_tighter"]["holds"] is True     # 0.5, 0.52 vs 2.0: [-1.62, -1.36]
    assert verdicts["bound_non_vacuous"]["selections"] == {"student": "linear"}
    assert verdicts["bound_non_vacuous"]["holds"] is True         # 0.51 [0.38, 0.64] lies below 1
    assert verdicts["complexity_grows"]["holds"] is True          # monotone in every bootstrap resample
    assert verdicts["distillation_error_shrinks"]["holds"] is None  # phi of the largest straddles the middle one
    assert verdicts["ntk_lazy"]["holds"] is True
    assert verdicts["ntk_linear"]["holds"] is None                # 0.06 [-0.067, 0.187] straddles 0.1
    r = _results()
    r["risk_variance"]["rows"][1]["bayes_over_onehot"] = {"ratio": 1.1, "low": 0.9, "high": 1.3}
    r["ntk"]["per_seed"]["128"]["linearization_error"] = [0.02, 0.021]
    r["ntk"]["per_seed"]["128"]["drift"] = [0.9, 0.95]                # the widest moves most: rho is +0.5
    verdicts = {k: c.evaluate(r)["holds"] for k, c in found.items()}
    assert verdicts["bayes_variance"] is None and verdicts["ntk_linear"] is True and verdicts["ntk_lazy"] is False


def test_every_theory_claim_true_false_and_undecided(verdict_values, verdict_intervals):
    cfg = TheoryStudyConfig.model_validate({"bound": {"teacher": {"model": {"name": "mlp"}},
                                                      "student": {"model": {"name": "mlp"}},
                                                      "capacities": [{"depth": 0}]}})
    trends = {True: [[0.1, 0.11], [0.3, 0.31], [0.5, 0.51]], False: [[0.5, 0.51], [0.3, 0.31], [0.1, 0.11]],
              None: [[0.1, 0.5], [0.3, 0.3], [0.5, 0.1]]}
    for claim in claims(cfg):
        for expected in (True, False, None):
            r = _results()
            rule = claim.rule
            if claim.id in ("bayes_variance", "teacher_variance"):
                ratio, low, high = verdict_intervals(rule)[expected]
                for row in r["risk_variance"]["rows"]:
                    row[f"{claim.id.split('_')[0]}_over_onehot"] = {"ratio": ratio, "low": low, "high": high}
            elif claim.id == "student_bound_tighter":
                r["bound"]["rows"] = [{"seed": s, "total": 2.0 + v}
                                      for s, v in enumerate(verdict_values(rule, expected))]
            elif claim.id == "bound_non_vacuous":
                for v in r["bound"]["summary"].values():
                    v["total"]["mean"], v["per_seed"]["total"] = 9.0, [9.0, 9.0]
                r["bound"]["summary"]["linear"]["total"]["mean"] = 0.0
                r["bound"]["summary"]["linear"]["per_seed"]["total"] = verdict_values(rule, expected)
            elif claim.id in ("complexity_grows", "distillation_error_shrinks"):
                key = "complexity" if claim.id == "complexity_grows" else "phi"
                # 'shrinks' holds when the values fall with size: the mirror image of 'grows'
                groups = trends[expected if key == "complexity" or expected is None else not expected]
                for v, g in zip(r["bound"]["summary"].values(), groups):
                    v["per_seed"][key] = g
            elif claim.id == "ntk_lazy":
                groups = trends[None if expected is None else not expected]
                for v, g in zip(r["ntk"]["per_seed"].values(), groups):
                    v["drift"] = g
            elif claim.id == "ntk_linear":
                r["ntk"]["per_seed"]["128"]["linearization_error"] = verdict_values(rule, expected)
            assert claim.evaluate(r)["holds"] is expected, (claim.id, expected)
