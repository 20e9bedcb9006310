"""The fit study: early stopping from curves, point verdicts, and the study end to end on a tiny digits preset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kdlab.analysis import FIT_VERDICTS
from kdlab.errors import ConfigError
from kdlab.studies.fit import early_stopping_epoch, mean_curves, point_verdict, read_curves, run_fit

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

    assert len(saved["claims"]) == 9
    for claim in saved["claims"]:
        assert set(claim) == {"claim", "holds", "evidence"}
        assert claim["holds"] in (True, False, None) and any(ch.isdigit() for ch in claim["evidence"])
    assert saved["claims"][0]["holds"] is True and saved["claims"][1]["holds"] is True
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
