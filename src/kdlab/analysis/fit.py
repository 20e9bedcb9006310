"""Capacity diagnostics from learning curves: is a model too simple (high bias), too complex (high variance), or fine?

A model too simple for the data underfits: it cannot even fit its training set, so training accuracy stays low. A
model too complex overfits: it fits the training set while validation accuracy falls behind, so the train-validation
gap is large or keeps growing and the validation loss turns upwards while the training loss still falls. Bias is
checked first, as in the usual recipe (fix training error before generalisation error; Goodfellow, Bengio &
Courville, "Deep Learning", MIT Press 2016, section 11.4).

Also: :func:`recommend_capacity` (the smallest model within a tolerance of the best; the "one standard error rule"
of Hastie, Tibshirani & Friedman, "The Elements of Statistical Learning", 2nd ed., Springer 2009, section 7.10)
and :func:`kfold_indices` (deterministic stratified k-fold splits).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = [
    "FIT_VERDICTS",
    "fit_verdict",
    "kfold_indices",
    "recommend_capacity",
    "sweep_verdicts",
]

FIT_VERDICTS = ("under-capacity", "good fit", "over-capacity")


def _curve(name: str, values: Any, *, accuracy: bool) -> list[float]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) and not hasattr(values, "__len__"):
        raise ValueError(f"{name}={values!r} is not allowed; allowed: a non-empty sequence of numbers, one per epoch")
    out = [float(v) for v in values]
    if not out or not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers, one per epoch; got {out!r}")
    if accuracy and not all(0.0 <= v <= 1.0 for v in out):
        raise ValueError(f"{name}={out!r} is not allowed; allowed: accuracies as fractions in [0, 1] "
                         f"(divide percentages by 100)")
    return out


def _check_fraction(name: str, value: Any, *, low_open: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (0.0 < value if low_open else 0.0 <= value) and value <= 1.0
    if not ok:
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{name}={value!r} is not allowed; allowed: a number in {interval}")
    return float(value)


def _slope(values: Sequence[float]) -> float:
    """Least-squares slope of ``values`` against 0, 1, ..., m-1 (per epoch); 0.0 for fewer than two points.

    ``slope = sum_t (t - t_mean)(y_t - y_mean) / sum_t (t - t_mean)^2``.
    """
    m = len(values)
    if m < 2:
        return 0.0
    t_mean = (m - 1) / 2
    y_mean = sum(values) / m
    num = sum((t - t_mean) * (y - y_mean) for t, y in enumerate(values))
    den = sum((t - t_mean) ** 2 for t in range(m))
    return num / den


def fit_verdict(train_acc: Sequence[float], val_acc: Sequence[float], train_loss: Sequence[float] | None = None,
                val_loss: Sequence[float] | None = None, *, reference_train_acc: float | None = None,
                underfit_train_acc: float = 0.95, overfit_gap: float = 0.05, large_gap: float = 0.15,
                gap_trend_epochs: int = 5, val_loss_rise: float = 0.05) -> dict[str, Any]:
    """Classify one training run from its per-epoch curves as "under-capacity", "good fit" or "over-capacity".

    Statistics (t = last epoch, window W = the last ``min(gap_trend_epochs, epochs)`` epochs):

    - ``final_train_acc = train_acc[t]``, ``final_val_acc = val_acc[t]``, ``final_gap = train_acc[t] - val_acc[t]``;
    - ``gap_trend``: least-squares slope per epoch of ``train_acc - val_acc`` over W (0 with a single epoch);
    - with losses: ``generalization_loss = val_loss[t] / min(val_loss) - 1`` (Prechelt, "Early Stopping -- But
      When?", Neural Networks: Tricks of the Trade, Springer 1998: GL), ``val_loss_trend`` and
      ``train_loss_trend`` (slopes over W), and ``val_loss_rising = GL > val_loss_rise and val_loss_trend > 0 and
      train_loss_trend < 0``.

    Rules, checked in this order; the first that fires gives the verdict (``rule`` names it):

    1. ``"low_train_accuracy"`` -> under-capacity: ``final_train_acc < underfit_train_acc * reference``, where
       ``reference = reference_train_acc`` (the best final train accuracy of the sweep this run belongs to, see
       :func:`sweep_verdicts`) or 1.0 when not given (a network that can fit its training set reaches ~100%).
       Validation accuracy is then low as well; whether train and val are close is reported (``train_val_close``:
       ``final_gap <= overfit_gap``) as the usual high-bias signature, but not required.
    2. ``"large_gap"`` -> over-capacity: ``final_gap > large_gap`` (high variance even if the gap stopped growing).
    3. ``"growing_gap"`` -> over-capacity: ``final_gap > overfit_gap and gap_trend > 0``.
    4. ``"rising_val_loss"`` -> over-capacity: ``val_loss_rising`` (only when both losses are given).
    5. ``"none"`` -> good fit.

    Defaults: ``underfit_train_acc=0.95``, ``overfit_gap=0.05`` (5 accuracy points), ``large_gap=0.15``,
    ``gap_trend_epochs=5``, ``val_loss_rise=0.05`` (validation loss 5% above its minimum; Prechelt's GL_5).
    Accuracies are fractions in [0, 1]. Returns ``{"verdict", "rule", "reason", <statistics>, "thresholds"}``.
    """
    train = _curve("train_acc", train_acc, accuracy=True)
    val = _curve("val_acc", val_acc, accuracy=True)
    if len(train) != len(val):
        raise ValueError(f"train_acc has {len(train)} epochs but val_acc has {len(val)}; allowed: equal lengths")
    reference = 1.0 if reference_train_acc is None else _check_fraction("reference_train_acc", reference_train_acc,
                                                                       low_open=True)
    underfit_train_acc = _check_fraction("underfit_train_acc", underfit_train_acc)
    overfit_gap = _check_fraction("overfit_gap", overfit_gap)
    large_gap = _check_fraction("large_gap", large_gap)
    if large_gap < overfit_gap:
        raise ValueError(f"large_gap={large_gap} is not allowed; allowed: a number >= overfit_gap={overfit_gap}")
    if isinstance(gap_trend_epochs, bool) or not isinstance(gap_trend_epochs, numbers.Integral) or gap_trend_epochs < 2:
        raise ValueError(f"gap_trend_epochs={gap_trend_epochs!r} is not allowed; allowed: an integer >= 2")
    if isinstance(val_loss_rise, bool) or not isinstance(val_loss_rise, numbers.Real) or not val_loss_rise >= 0:
        raise ValueError(f"val_loss_rise={val_loss_rise!r} is not allowed; allowed: a number >= 0 (relative rise)")
    window = min(int(gap_trend_epochs), len(train))

    gaps = [a - b for a, b in zip(train, val)]
    stats: dict[str, Any] = {
        "epochs": len(train),
        "final_train_acc": train[-1],
        "final_val_acc": val[-1],
        "best_val_acc": max(val),
        "final_gap": gaps[-1],
        "gap_trend": _slope(gaps[-window:]),
        "trend_window": window,
        "reference_train_acc": reference,
        "train_val_close": gaps[-1] <= overfit_gap,
        "generalization_loss": None,
        "val_loss_trend": None,
        "train_loss_trend": None,
        "val_loss_rising": None,
    }
    if (train_loss is None) != (val_loss is None):
        raise ValueError("give both train_loss and val_loss, or neither")
    if train_loss is not None:
        t_loss = _curve("train_loss", train_loss, accuracy=False)
        v_loss = _curve("val_loss", val_loss, accuracy=False)
        if not len(t_loss) == len(v_loss) == len(train):
            raise ValueError(f"train_loss ({len(t_loss)}), val_loss ({len(v_loss)}) and train_acc ({len(train)}) "
                             f"must have one value per epoch each")
        best = min(v_loss)
        gl = v_loss[-1] / best - 1.0 if best > 0 else (0.0 if v_loss[-1] == 0 else math.inf)
        stats["generalization_loss"] = gl
        stats["val_loss_trend"] = _slope(v_loss[-window:])
        stats["train_loss_trend"] = _slope(t_loss[-window:])
        stats["val_loss_rising"] = bool(gl > val_loss_rise and stats["val_loss_trend"] > 0
                                        and stats["train_loss_trend"] < 0)

    floor = underfit_train_acc * reference
    gap, trend = stats["final_gap"], stats["gap_trend"]
    if stats["final_train_acc"] < floor:
        verdict, rule = "under-capacity", "low_train_accuracy"
        reason = (f"final train accuracy {train[-1]:.4f} < {underfit_train_acc} x reference {reference:.4f} "
                  f"= {floor:.4f}: the model cannot fit its training data (high bias)")
    elif gap > large_gap:
        verdict, rule = "over-capacity", "large_gap"
        reason = f"train-val gap {gap:.4f} > large_gap {large_gap} (high variance)"
    elif gap > overfit_gap and trend > 0:
        verdict, rule = "over-capacity", "growing_gap"
        reason = (f"train-val gap {gap:.4f} > overfit_gap {overfit_gap} and growing "
                  f"({trend:+.4f}/epoch over the last {window} epochs)")
    elif stats["val_loss_rising"]:
        verdict, rule = "over-capacity", "rising_val_loss"
        reason = (f"validation loss {100 * stats['generalization_loss']:.1f}% above its minimum and rising while "
                  f"training loss falls (over the last {window} epochs)")
    else:
        verdict, rule = "good fit", "none"
        reason = "train accuracy is high and the train-val gap is small or not growing"
    return {"verdict": verdict, "rule": rule, "reason": reason, **stats,
            "thresholds": {"underfit_train_acc": underfit_train_acc, "overfit_gap": overfit_gap,
                           "large_gap": large_gap, "gap_trend_epochs": int(gap_trend_epochs),
                           "val_loss_rise": float(val_loss_rise)}}


def sweep_verdicts(curves: Sequence[Mapping[str, Sequence[float]]], **thresholds: Any) -> list[dict[str, Any]]:
    """:func:`fit_verdict` for every run of a capacity sweep, with ``reference_train_acc`` = the best final train
    accuracy in the sweep (so "low" means low compared with what the largest models reach on this data).

    Each run is a mapping with ``"train_acc"`` and ``"val_acc"`` and optionally ``"train_loss"`` and ``"val_loss"``;
    ``thresholds`` are passed on to :func:`fit_verdict`.
    """
    if not curves:
        raise ValueError("curves must hold at least one run")
    if "reference_train_acc" in thresholds:
        raise ValueError("sweep_verdicts computes reference_train_acc from the sweep; do not pass it")
    reference = max(_curve(f"curves[{i}]['train_acc']", run["train_acc"], accuracy=True)[-1]
                    for i, run in enumerate(curves))
    if reference <= 0:
        raise ValueError("every run of the sweep ends at train accuracy 0; there is no reference to compare with")
    return [fit_verdict(run["train_acc"], run["val_acc"], run.get("train_loss"), run.get("val_loss"),
                        reference_train_acc=reference, **thresholds) for run in curves]


def recommend_capacity(results: Sequence[Mapping[str, Any]], tolerance: float = 0.01, *,
                       score_key: str = "val_accuracy", size_key: str = "params") -> int:
    """Index of the smallest model whose validation accuracy is within ``tolerance`` of the best.

    Rule: ``best = max_i score_i``; among the runs with ``score_i >= best - tolerance`` return the one with the
    fewest ``size_key`` (parameters), ties to the higher score, then to the earlier index. ``tolerance`` is in
    accuracy units (default 0.01 = 1 point); passing the standard error of the best model's score (e.g. over
    k folds, see :func:`kfold_indices`) gives the one-standard-error rule of Hastie, Tibshirani & Friedman
    ("The Elements of Statistical Learning", 2009, section 7.10).
    """
    if not results:
        raise ValueError("results must hold at least one run")
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or not tolerance >= 0:
        raise ValueError(f"tolerance={tolerance!r} is not allowed; allowed: a number >= 0 (accuracy units)")
    scores, sizes = [], []
    for i, run in enumerate(results):
        if score_key not in run or size_key not in run:
            raise ValueError(f"results[{i}] lacks '{score_key}' or '{size_key}'; allowed: mappings with both keys")
        score, size = float(run[score_key]), run[size_key]
        if not math.isfinite(score):
            raise ValueError(f"results[{i}]['{score_key}']={score!r} is not allowed; allowed: a finite number")
        scores.append(score)
        sizes.append(size)
    best = max(scores)
    eligible = [i for i in range(len(results)) if scores[i] >= best - tolerance]
    return min(eligible, key=lambda i: (sizes[i], -scores[i], i))


def kfold_indices(labels: Sequence[int] | torch.Tensor, k: int,
                  seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Stratified k-fold split: ``k`` pairs ``(train_idx, val_idx)`` of sorted int64 positions.

    Each class's positions are shuffled with a generator seeded by ``seed``; the shuffled lists are concatenated in
    ascending class order and position j of that list goes to validation fold ``j mod k``. So the validation folds
    are disjoint and cover every sample, every class is spread over the folds as evenly as possible (its counts per
    fold differ by at most 1) and fold sizes differ by at most 1. ``train_idx`` is the complement of ``val_idx``.
    The result is a pure function of ``(labels, k, seed)``. A class with fewer than ``k`` samples is missing from
    some validation folds.
    """
    y = torch.as_tensor(labels)
    if y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool or y.dtype.is_complex:
        raise ValueError(f"labels must be a 1-D sequence of integer class labels; got shape {list(y.shape)}, "
                         f"dtype {y.dtype}")
    n = y.numel()
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 2 <= k <= n:
        raise ValueError(f"k={k!r} is not allowed; allowed: an integer in [2, {n}] (number of samples)")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed={seed!r} is not allowed; allowed: an integer")
    y = y.to(torch.int64)
    generator = torch.Generator().manual_seed(int(seed))
    dealt = []
    for cls in torch.unique(y, sorted=True):
        members = torch.nonzero(y == cls).flatten()
        dealt.append(members[torch.randperm(len(members), generator=generator)])
    order = torch.cat(dealt)
    fold_of = torch.empty(n, dtype=torch.int64)
    fold_of[order] = torch.arange(n) % int(k)
    folds = []
    for f in range(int(k)):
        in_fold = fold_of == f
        folds.append((torch.nonzero(~in_fold).flatten(), torch.nonzero(in_fold).flatten()))
    return folds
