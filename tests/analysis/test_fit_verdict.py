"""Capacity verdicts on synthetic learning curves, the capacity recommendation rule and stratified k-fold."""

from __future__ import annotations

import pytest
import torch

from kdlab.analysis.fit import fit_verdict, kfold_indices, recommend_capacity, sweep_verdicts

# A small model: both curves plateau around 0.70 and stay close.
UNDER_TRAIN = [0.50, 0.60, 0.65, 0.68, 0.70, 0.70]
UNDER_VAL = [0.49, 0.58, 0.63, 0.66, 0.68, 0.69]
# A big model: train accuracy reaches 1.0 while val accuracy peaks and the gap widens every epoch.
OVER_TRAIN = [0.90, 0.95, 0.97, 0.98, 0.99, 1.00]
OVER_VAL = [0.89, 0.92, 0.92, 0.91, 0.91, 0.90]
# A right-sized model: high train accuracy, val accuracy close behind.
GOOD_TRAIN = [0.90, 0.95, 0.97, 0.98, 0.98, 0.99]
GOOD_VAL = [0.89, 0.94, 0.95, 0.96, 0.96, 0.965]


def test_underfitting_curves_are_under_capacity():
    out = fit_verdict(UNDER_TRAIN, UNDER_VAL)
    assert out["verdict"] == "under-capacity"
    assert out["rule"] == "low_train_accuracy"
    assert out["final_train_acc"] == 0.70
    assert out["final_gap"] == pytest.approx(0.01)
    assert out["train_val_close"] is True


def test_overfitting_curves_are_over_capacity_by_growing_gap():
    out = fit_verdict(OVER_TRAIN, OVER_VAL)
    assert out["verdict"] == "over-capacity"
    assert out["rule"] == "growing_gap"
    assert out["final_gap"] == pytest.approx(0.10)
    # gaps of the last 5 epochs 0.03, 0.05, 0.07, 0.08, 0.10 around t = 0..4 (mean 2, mean gap 0.066):
    # slope = (-2*-0.036 - 1*-0.016 + 0 + 1*0.014 + 2*0.034) / (4 + 1 + 0 + 1 + 4) = 0.17 / 10
    assert out["gap_trend"] == pytest.approx(0.017)
    assert out["trend_window"] == 5


def test_good_fit_curves():
    out = fit_verdict(GOOD_TRAIN, GOOD_VAL)
    assert out["verdict"] == "good fit"
    assert out["rule"] == "none"
    assert out["final_gap"] == pytest.approx(0.025)


def test_large_gap_is_over_capacity_even_when_shrinking():
    # gap 0.20 at the end, shrinking by 0.01 per epoch
    out = fit_verdict([1.0, 1.0, 1.0], [0.78, 0.79, 0.80])
    assert out["rule"] == "large_gap"
    assert out["gap_trend"] == pytest.approx(-0.01)


def test_moderate_shrinking_gap_is_a_good_fit():
    # gap 0.10 > overfit_gap but shrinking and below large_gap: the model is still catching up
    out = fit_verdict([1.0, 1.0, 1.0], [0.88, 0.89, 0.90])
    assert out["verdict"] == "good fit"


def test_rising_val_loss_while_train_loss_falls_is_over_capacity():
    val_loss = [0.50, 0.40, 0.35, 0.36, 0.38, 0.40]
    train_loss = [0.60, 0.40, 0.30, 0.20, 0.15, 0.10]
    out = fit_verdict(GOOD_TRAIN, GOOD_VAL, train_loss, val_loss)
    assert out["verdict"] == "over-capacity"
    assert out["rule"] == "rising_val_loss"
    assert out["generalization_loss"] == pytest.approx(0.40 / 0.35 - 1)
    # last 5 val losses 0.40, 0.35, 0.36, 0.38, 0.40 (mean 0.378): slope = (-2*0.022 + 1*0.028 + 0.002 + 2*0.022) / 10
    assert out["val_loss_trend"] == pytest.approx(0.003)
    assert out["train_loss_trend"] < 0
    # the same val loss while the train loss rises too is not overfitting (e.g. an unstable optimiser)
    assert fit_verdict(GOOD_TRAIN, GOOD_VAL, train_loss[::-1], val_loss)["verdict"] == "good fit"
    # a rise below val_loss_rise does not count
    assert fit_verdict(GOOD_TRAIN, GOOD_VAL, train_loss, val_loss, val_loss_rise=0.2)["verdict"] == "good fit"


def test_boundaries_are_strict():
    # train accuracy exactly at underfit_train_acc * reference is not under-capacity; just below is
    assert fit_verdict([0.5, 0.75], [0.5, 0.75], underfit_train_acc=0.75)["verdict"] == "good fit"
    assert fit_verdict([0.5, 0.74], [0.5, 0.74], underfit_train_acc=0.75)["verdict"] == "under-capacity"
    # gaps 0, 1/32, 1/16 (exact in binary): growing, and exactly at overfit_gap -> not over-capacity
    train, val = [1.0, 1.0, 1.0], [1.0, 0.96875, 0.9375]
    assert fit_verdict(train, val, overfit_gap=0.0625)["verdict"] == "good fit"
    assert fit_verdict(train, val, overfit_gap=0.0624)["rule"] == "growing_gap"
    assert fit_verdict(train, val, overfit_gap=0.03, large_gap=0.0625)["rule"] == "growing_gap"
    assert fit_verdict(train, val, overfit_gap=0.03, large_gap=0.0624)["rule"] == "large_gap"


def test_reference_train_accuracy_sets_what_low_means():
    # 0.80 is low against a perfect fit (0.80 < 0.95) but not against a sweep whose best reaches 0.82
    assert fit_verdict([0.7, 0.8], [0.69, 0.79])["verdict"] == "under-capacity"
    assert fit_verdict([0.7, 0.8], [0.69, 0.79], reference_train_acc=0.82)["verdict"] == "good fit"
    runs = [{"train_acc": [0.5, 0.6], "val_acc": [0.5, 0.6]},
            {"train_acc": [0.7, 0.8], "val_acc": [0.69, 0.79]},
            {"train_acc": [0.8, 0.82], "val_acc": [0.79, 0.81]}]
    verdicts = sweep_verdicts(runs)
    assert [v["verdict"] for v in verdicts] == ["under-capacity", "good fit", "good fit"]
    assert all(v["reference_train_acc"] == 0.82 for v in verdicts)


def test_single_epoch_has_no_trend():
    out = fit_verdict([0.99], [0.90])
    assert out["gap_trend"] == 0.0 and out["trend_window"] == 1
    assert out["verdict"] == "good fit"


@pytest.mark.parametrize("kwargs, match", [
    ({"train_acc": [95.0], "val_acc": [90.0]}, "fractions"),
    ({"train_acc": [0.9, 0.9], "val_acc": [0.9]}, "equal lengths"),
    ({"train_acc": [], "val_acc": []}, "non-empty"),
    ({"train_acc": [0.9], "val_acc": [0.9], "gap_trend_epochs": 1}, "gap_trend_epochs=1"),
    ({"train_acc": [0.9], "val_acc": [0.9], "train_loss": [0.1]}, "both"),
    ({"train_acc": [0.9], "val_acc": [0.9], "overfit_gap": 0.2, "large_gap": 0.1}, "large_gap=0.1"),
])
def test_bad_input_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_verdict(**kwargs)


def test_recommend_capacity_picks_smallest_within_tolerance():
    results = [{"params": 100, "val_accuracy": 0.90}, {"params": 200, "val_accuracy": 0.945},
               {"params": 400, "val_accuracy": 0.95}, {"params": 800, "val_accuracy": 0.951}]
    # best 0.951; within 0.01: 0.945, 0.95, 0.951 -> the smallest of those has 200 parameters
    assert recommend_capacity(results) == 1
    assert recommend_capacity(results, tolerance=0.0) == 3
    assert recommend_capacity(results, tolerance=0.06) == 0
    # ties in size go to the higher score
    assert recommend_capacity([{"params": 5, "val_accuracy": 0.8}, {"params": 5, "val_accuracy": 0.81}]) == 1
    with pytest.raises(ValueError, match="lacks"):
        recommend_capacity([{"params": 1}])


def test_kfold_is_stratified_disjoint_and_covering():
    labels = [0] * 6 + [1] * 3 + [2] * 4
    folds = kfold_indices(labels, k=3, seed=7)
    assert len(folds) == 3
    vals = [val for _, val in folds]
    everything = torch.cat(vals).sort().values
    assert torch.equal(everything, torch.arange(13))  # disjoint and covering
    for train, val in folds:
        assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(13))
    y = torch.tensor(labels)
    per_fold = [[int((y[val] == c).sum()) for c in range(3)] for val in vals]
    # class 0: 6 -> 2 per fold; class 1: 3 -> 1 per fold; class 2: dealt to folds 0, 1, 2, 0 -> 2, 1, 1
    assert per_fold == [[2, 1, 2], [2, 1, 1], [2, 1, 1]]
    assert [len(v) for v in vals] == [5, 4, 4]


def test_kfold_is_deterministic_and_seed_dependent():
    labels = torch.arange(40) % 4
    a, b = kfold_indices(labels, 5, seed=1), kfold_indices(labels, 5, seed=1)
    assert all(torch.equal(x[1], y[1]) for x, y in zip(a, b))
    c = kfold_indices(labels, 5, seed=2)
    assert any(not torch.equal(x[1], y[1]) for x, y in zip(a, c))
    with pytest.raises(ValueError, match="k=1"):
        kfold_indices(labels, 1)
    with pytest.raises(ValueError, match="integer class labels"):
        kfold_indices([0.5, 1.5], 2)
