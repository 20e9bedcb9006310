"""The fit study: early stopping from curves, point verdicts, and the study end to end on a tiny digits preset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kdlab.analysis import FIT_VERDICTS
from kdlab.errors import ConfigError
from kdlab.studies import run_study
from kdlab.studies.fit import FIT, FitStudyConfig, claims, early_stopping_epoch, mean_curves, point_verdict, read_curves


def run_fit(**kwargs):
    return run_study(FIT, **kwargs)

THRESHOLDS = {"underfit_train_acc": 0.95, "overfit_gap": 0.05, "large_gap": 0.15, "gap_trend_epochs": 5,
              "val_loss_rise": 0.05}

# digits: 100 labelled images so that a 128-wide MLP memorises them; width 1 cannot fit anything
TINY = ["data.name=digits", "data.val_size=300", "sweep.train_subset=100", "sweep.batch_size=20", "sweep.epochs=8",
        "sweep.capacities=[{width: 1}, {width: 128}]", "seeds=[0,1]", "regularise.patience=1",
        "cv.capacities=[{width: 2}, {width: 32}]", "cv.k=2", "cv.seeds=[0]", "cv.epochs=3"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models train faster on one thread, and several times faster when other processes share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_early_stopping_epoch_restores_the_best_epoch_within_patience():
    curve = [0.50, 0.60, 0.70, 0.65, 0.66, 0.69, 0.71]
    # best at epoch 3; epochs 4, 5, 6 do not beat it -> patience 3 stops after epoch 6, before epoch 7's 0.71
    assert early_stopping_epoch(curve, 3) == {"epoch": 3, "stopped_at": 6}
    # patience 4 waits long enough to see epoch 7
    assert early_stopping_epoch(curve, 4) == {"epoch": 7, "stopped_at": 7}
    # a tie is not an improvement (as the loop's best checkpoint): epoch 3 stays best
    assert early_stopping_epoch([0.5, 0.6, 0.7, 0.7, 0.7], 2) == {"epoch": 3, "stopped_at": 5}
    assert early_stopping_epoch([0.9], 3) == {"epoch": 1, "stopped_at": 1}


def test_point_verdict_rules_in_order():
    # train 0.90 < 0.95 * 1.0: under-capacity even though the gap is large
    assert point_verdict(0.90, 0.70, 1.0, THRESHOLDS)["verdict"] == "under-capacity"
    # the floor scales with the sweep's reference: 0.90 >= 0.95 * 0.92 = 0.874
    assert point_verdict(0.90, 0.86, 0.92, THRESHOLDS)["verdict"] == "good fit"
    over = point_verdict(1.0, 0.90, 1.0, THRESHOLDS)
    assert over["verdict"] == "over-capacity" and over["gap"] == pytest.approx(0.10)
    assert point_verdict(1.0, 0.96, 1.0, THRESHOLDS)["verdict"] == "good fit"


def test_mean_curves_are_elementwise_mean_and_sample_std():
    out = mean_curves([{"a": [0.0, 1.0]}, {"a": [1.0, 3.0]}])
    assert out["a"] == [0.5, 2.0]
    assert out["a_std"] == pytest.approx([0.70710678, 1.41421356])


def test_fit_study_end_to_end_and_rerun_reuses_everything(tmp_path):
    results = run_fit(out=tmp_path, preset="quick", overrides=TINY, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["study"] == "fit"
    models = saved["models"]
    assert [m["params"] for m in models] == [87, 26122]  # mlp depth 2 on 8x8: w^2 + 76 w + 10
    for m in models:
        assert m["verdict"]["verdict"] in FIT_VERDICTS
        assert len(m["curves"]["train_acc"]) == len(m["curves"]["val_loss"]) == 8
        assert set(m["seed_verdicts"]) == {"0", "1"}
    # a 1-unit bottleneck cannot fit 10 classes; 128 units memorise 100 images
    assert models[0]["verdict"]["verdict"] == "under-capacity"
    assert models[1]["verdict"]["verdict"] == "over-capacity"
    assert models[1]["final_train_accuracy"]["mean"] > 0.9

    [reg] = saved["regularisation"]
    assert reg["model"] == models[1]["name"]
    assert list(reg["arms"]) == ["none", "early_stopping", "dropout", "weight_decay"]
    for label, arm in reg["arms"].items():
        assert len(arm["points"]) == 2
        for p in arm["points"]:
            assert p["gap"] == pytest.approx(p["train_accuracy"] - p["val_accuracy"])
            assert 0 <= p["test_accuracy"] <= 1
        assert arm["verdict"]["verdict"] in FIT_VERDICTS
    assert [p["epoch"] for p in reg["arms"]["none"]["points"]] == [8, 8]
    assert reg["arms"]["none"]["minus_none"]["gap"]["mean"] == 0
    for seed_dir, p in zip(models[1]["run_dirs"], reg["arms"]["early_stopping"]["points"]):
        curve = read_curves(seed_dir)["val_acc"]
        assert p["epoch"] == early_stopping_epoch(curve, 1)["epoch"]
        assert p["val_accuracy"] == curve[p["epoch"] - 1]
    # the replay path: a seed whose validation accuracy improved again after a dip replays its run
    assert any(p["weights_from"].startswith("replay") for p in reg["arms"]["early_stopping"]["points"])

    cv = saved["cross_validation"]
    assert cv["k"] == 2 and len(cv["models"]) == 2
    for m in cv["models"]:
        assert len(m["fold_scores"]) == 2
        assert m["cv_accuracy"]["mean"] == pytest.approx(sum(m["fold_scores"]) / 2)
    assert cv["models"][1]["cv_accuracy"]["mean"] > cv["models"][0]["cv_accuracy"]["mean"]
    assert 0 <= saved["recommended"]["index"] < 2

    assert [c["id"] for c in saved["claims"]] == [
        "smallest_underfits", "largest_overfits", "early_stopping_narrows_gap", "dropout_narrows_gap",
        "weight_decay_narrows_gap", "regularisation_improves_test", "regularisation_closes_gap", "smaller_as_good",
        "cv_next_size_as_good"]
    found = {c["id"]: c for c in saved["claims"]}
    # a width-1 MLP stays far below the floor on both seeds; 128 units memorise 100 images
    assert found["smallest_underfits"]["holds"] is True
    assert found["largest_overfits"]["estimate"] == pytest.approx(models[1]["final_gap"]["mean"])
    assert found["regularisation_improves_test"]["selected_on"] == "validation accuracy (mean over seeds)"
    assert found["cv_next_size_as_good"]["n"] == 2 and found["smaller_as_good"]["n"] == 2
    for s in saved["students"]:
        assert {"teacher", "method", "hyperparams", "seed", "test_accuracy", "run_dir"} <= set(s)
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5
    md = (tmp_path / "report.md").read_text()
    assert "## Capacity sweep" in md and f"Recommended capacity: {saved['recommended']['name']}" in md
    assert "2-fold cross-validation on digits" in md

    again = run_fit(out=tmp_path, preset="quick", overrides=TINY, progress=False)
    assert again["runs_trained"] == 0 and again["runs_reused"] == results["runs_trained"]
    assert again["claims"] == results["claims"]


def test_fit_study_config_errors_name_the_key_before_training(tmp_path):
    with pytest.raises(ConfigError, match="remedies"):
        run_fit(out=tmp_path, preset="quick", overrides=TINY + ['regularise.remedies=[{label: none}]'],
                progress=False)
    with pytest.raises(ConfigError, match="regularise.remedies 'wd'.*weight_decay"):
        run_fit(out=tmp_path, preset="quick",
                overrides=TINY + ['regularise.remedies=[{label: wd, optim: {weight_decay: -1}}]'], progress=False)
    with pytest.raises(ConfigError, match="dropout"):
        run_fit(out=tmp_path, preset="quick",
                overrides=TINY + ['regularise.remedies=[{label: d, model: {dropout: 2}}]'], progress=False)
    with pytest.raises(ConfigError, match="cv.k"):
        run_fit(out=tmp_path, preset="quick", overrides=TINY + ["cv.k=1"], progress=False)
    assert not Path(tmp_path, "runs").exists()  # nothing trained


def _arm(gap, test, val, gaps=(0.02, 0.03)):
    return {"minus_none": {"gap": gap, "test_accuracy": test}, "val_accuracy": {"mean": val},
            "gap": {"mean": 0.0, "std": 0.0}, "test_accuracy": {"mean": 0.8, "std": 0.0},
            "points": [{"gap": g} for g in gaps],
            "verdict": {"train_accuracy": 0.99, "floor": 0.9, "verdict": "good fit"}}


def _diff(mean, low, high, n=2):
    return {"mean": mean, "low": low, "high": high, "n": n}


def _model(name, params, train, gaps, val, test, verdict="good fit"):
    return {"name": name, "params": params, "final_train_accuracy_per_seed": train, "final_gap_per_seed": gaps,
            "final_train_accuracy": {"mean": sum(train) / 2, "std": 0.0}, "best_val_accuracy": {"mean": val},
            "test_accuracy_per_seed": test, "test_accuracy": {"mean": sum(test) / 2, "std": 0.0},
            "verdict": {"verdict": verdict, "rule": "r", "gap_trend": 0.0, "reference_train_acc": 1.0,
                        "thresholds": {"underfit_train_acc": 0.95}}}


def _fit_cfg():
    return FitStudyConfig.model_validate({"sweep": {"model": {"name": "mlp"}, "capacities": [{"width": 2},
                                                                                          {"width": 8}]},
                                          "cv": {"model": {"name": "mlp"}, "capacities": [{"width": 2}, {"width": 8}]},
                                          "regularise": {"remedies": [{"label": "dropout", "model": {"dropout": 0.5}}]}})


def test_fit_claims_on_hand_made_numbers():
    cfg = FitStudyConfig.model_validate({"sweep": {"model": {"name": "mlp"}, "capacities": [{"width": 2},
                                                                                          {"width": 8}]},
                                         "cv": {"model": {"name": "mlp"}, "capacities": [{"width": 2}, {"width": 8}]},
                                         "regularise": {"remedies": [{"label": "dropout", "model": {"dropout": 0.5}}]}})
    found = {c.id: c for c in claims(cfg)}
    none = _arm(_diff(0, 0, 0), _diff(0, 0, 0), 0.70)
    # dropout is best on validation but early stopping is better on test: the claim reads dropout's test difference
    arms = {"none": none, "early_stopping": _arm(_diff(-0.05, -0.08, -0.02), _diff(0.04, 0.02, 0.06), 0.72),
            "dropout": _arm(_diff(-0.01, -0.03, 0.01), _diff(-0.01, -0.02, -0.005), 0.75, gaps=(0.01, 0.011))}
    results = {
        "models": [_model("small", 100, [0.50, 0.52], [0.0, 0.01], 0.51, [0.50, 0.51], "under-capacity"),
                   _model("mid", 500, [0.99, 0.995], [0.10, 0.12], 0.82, [0.80, 0.80]),
                   _model("large", 1000, [1.0, 1.0], [0.20, 0.22], 0.80, [0.805, 0.8051], "over-capacity")],
        "regularisation": [{"model": "large", "sweep_verdict": "over-capacity", "arms": arms}],
        "recommended": {"name": "mid"},
        "cross_validation": {"recommended": {"name": "mid"}, "models": [
            {"name": "small", "params": 1, "fold_scores": [0.5, 0.52], "cv_accuracy": {"mean": 0.51, "std": 0.01}},
            {"name": "mid", "params": 2, "fold_scores": [0.90, 0.92], "cv_accuracy": {"mean": 0.91, "std": 0.01}},
            {"name": "large", "params": 3, "fold_scores": [0.905, 0.93], "cv_accuracy": {"mean": 0.92,
                                                                                         "std": 0.01}}]},
    }
    verdict = {k: c.evaluate(results) for k, c in found.items()}
    assert verdict["smallest_underfits"]["holds"] is True            # 0.51 [..] far below the floor 0.95
    assert verdict["largest_overfits"]["holds"] is True              # gap 0.20, 0.22 > 0.05 over both seeds
    assert verdict["early_stopping_narrows_gap"]["holds"] is True
    assert verdict["dropout_narrows_gap"]["holds"] is None
    assert verdict["regularisation_improves_test"]["selections"] == {"regularisation arm": "dropout"}
    assert verdict["regularisation_improves_test"]["holds"] is False
    assert verdict["regularisation_closes_gap"]["holds"] is True     # dropout's gaps 0.01, 0.011: [0.4, 1.7] < 5
    # mid is best on validation among the smaller models; on test it is 0.5 points behind: [-0.57, -0.44] > -1
    assert verdict["smaller_as_good"]["selections"] == {"smaller model": "mid"}
    assert verdict["smaller_as_good"]["holds"] is True
    assert verdict["cv_next_size_as_good"]["holds"] is None           # -0.75 [-3.9, +2.4] points
    results["models"][1]["test_accuracy_per_seed"] = [0.70, 0.701]    # now 10 points behind the largest
    assert found["smaller_as_good"].evaluate(results)["holds"] is False
    # no over-capacity model: the regularisation claims are not applicable
    results["regularisation"][0]["sweep_verdict"] = "good fit"
    for key in ("early_stopping_narrows_gap", "regularisation_improves_test", "regularisation_closes_gap"):
        entry = found[key].evaluate(results)
        assert entry["holds"] is None and entry["not_applicable"].startswith("no model of the sweep is over-capacity")


def test_every_fit_claim_true_false_and_undecided(verdict_values, verdict_intervals):
    found = {c.id: c for c in claims(_fit_cfg())}
    for expected in (True, False, None):
        def arm(val, gaps=None, test=None, gap=None):
            a = _arm(_diff(*(gap or (0, -0.1, 0.1))), _diff(*(test or (0, -0.1, 0.1))), val,
                     gaps=gaps or (0.0, 0.0))
            return a

        def results(claim):
            rule = found[claim].rule
            triple = verdict_intervals(rule)[expected]
            diff = (triple[0], triple[1], triple[2])
            arms = {"none": arm(0.7), "early_stopping": arm(0.72), "dropout": arm(0.75)}
            if claim.endswith("_narrows_gap"):
                arms[claim.removesuffix("_narrows_gap")] = arm(0.75 if claim.startswith("dropout") else 0.72,
                                                                gap=diff)
            if claim == "regularisation_improves_test":
                arms["dropout"] = arm(0.75, test=diff)
            if claim == "regularisation_closes_gap":
                arms["dropout"] = arm(0.75, gaps=tuple(verdict_values(rule, expected)))
            small = _model("small", 100, [0.5, 0.5], [0.0, 0.0], 0.5, [0.5, 0.5], "under-capacity")
            large = _model("large", 1000, [1.0, 1.0], [0.1, 0.1], 0.8, [0.8, 0.8], "over-capacity")
            if claim == "smallest_underfits":
                small["final_train_accuracy_per_seed"] = verdict_values(rule, expected, offset=0.95)
            if claim == "largest_overfits":
                large["final_gap_per_seed"] = verdict_values(rule, expected)
            if claim == "smaller_as_good":
                small["test_accuracy_per_seed"] = verdict_values(rule, expected, offset=0.8)
            folds = verdict_values(rule, expected, offset=0.9) if claim == "cv_next_size_as_good" else [0.5, 0.5]
            return {"models": [small, large],
                    "regularisation": [{"model": "large", "sweep_verdict": "over-capacity", "arms": arms}],
                    "recommended": {"name": "large"},
                    "cross_validation": {"recommended": {"name": "large"}, "models": [
                        {"name": "small", "params": 1, "fold_scores": folds, "cv_accuracy": {"mean": 0.5, "std": 0}},
                        {"name": "large", "params": 2, "fold_scores": [0.9, 0.9],
                         "cv_accuracy": {"mean": 0.9, "std": 0}}]}}

        for claim in found:
            assert found[claim].evaluate(results(claim))["holds"] is expected, (claim, expected)
