"""Statistics over seeds: mean +- std, paired differences with t confidence intervals."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of ``values``."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0, "n": int(arr.size)}


def t_quantile(p: float, dof: int) -> float:
    """Quantile of Student's t distribution (scipy.stats.t.ppf)."""
    from scipy.stats import t  # lazily: scipy (installed with scikit-learn) is slow to import

    return float(t.ppf(p, dof))


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean of a_i - b_i over paired seeds with a two-sided t interval.

    d_i = a_i - b_i; mean d, s = std(d, ddof=1); interval = mean +- t_{(1+c)/2, n-1} * s / sqrt(n).
    With one pair the interval is unbounded (NaN). ``significant`` is True when the interval excludes 0.
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.size == 0:
        raise ValueError("paired_difference needs at least one pair")
    mean = float(d.mean())
    if d.size < 2:
        return {"mean": mean, "low": float("nan"), "high": float("nan"), "n": 1, "significant": False}
    half = t_quantile((1 + confidence) / 2, d.size - 1) * float(d.std(ddof=1)) / math.sqrt(d.size)
    low, high = mean - half, mean + half
    return {"mean": mean, "low": low, "high": high, "n": int(d.size), "significant": bool(low > 0 or high < 0)}


def paired_by_seed(a: dict[int, float], b: dict[int, float], confidence: float = 0.95) -> dict[str, Any]:
    """:func:`paired_difference` of a - b over the seeds both have (``{seed: value}`` dicts); with no common seed,
    mean and interval are NaN and n is 0."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0, "significant": False}
    return paired_difference([a[s] for s in seeds], [b[s] for s in seeds], confidence)


def bootstrap_over_groups(groups: Sequence[Sequence[Any]], statistic: Callable[[list[list[Any]]], float],
                          num_bootstrap: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """A statistic of several groups of replicates with a percentile bootstrap interval over the replicates.

    ``groups[g]`` holds independent replicates of group g (e.g. the teachers of one capacity trained with different
    seeds); ``statistic(groups)`` maps a list of groups to a number (e.g. the Spearman correlation of capacity with
    the mean derived std of each group). Each bootstrap replicate resamples every group with replacement (same size,
    groups independently) and recomputes the statistic; the interval is the (1-c)/2 and (1+c)/2 quantiles of the
    replicates (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13). With a group of one
    replicate there is nothing to resample: the interval is NaN. ``n`` is the smallest group size.
    """
    groups = [list(g) for g in groups]
    if not groups or any(len(g) == 0 for g in groups):
        raise ValueError("bootstrap_over_groups needs at least one non-empty group")
    estimate = float(statistic(groups))
    n = min(len(g) for g in groups)
    if n < 2:
        return {"estimate": estimate, "low": math.nan, "high": math.nan, "n": n, "replicates": 0}
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_bootstrap):
        sample = [[g[i] for i in rng.integers(0, len(g), len(g))] for g in groups]
        values.append(float(statistic(sample)))
    values_arr = np.asarray(values)
    values_arr = values_arr[~np.isnan(values_arr)]
    if values_arr.size == 0:
        return {"estimate": estimate, "low": math.nan, "high": math.nan, "n": n, "replicates": num_bootstrap}
    low, high = np.quantile(values_arr, [(1 - confidence) / 2, (1 + confidence) / 2])
    return {"estimate": estimate, "low": float(low), "high": float(high), "n": n, "replicates": num_bootstrap}


def binomial_interval(successes: int, trials: int, confidence: float = 0.95) -> dict[str, float]:
    """The fraction successes / trials with its exact (Clopper-Pearson) two-sided interval.

    low = Beta^-1((1-c)/2; k, n-k+1) (0 when k = 0), high = Beta^-1((1+c)/2; k+1, n-k) (1 when k = n) (Clopper &
    Pearson, "The use of confidence or fiducial limits illustrated in the case of the binomial", Biometrika 1934).
    """
    from scipy.stats import beta  # lazily: scipy is slow to import (as in t_quantile)

    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"binomial_interval needs 0 <= successes <= trials and trials >= 1, got {successes}/{trials}")
    alpha = 1 - confidence
    low = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return {"estimate": successes / trials, "low": low, "high": high, "n": trials}


def paired_proportion_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Difference of two accuracies measured on the same samples, with a normal-approximation interval.

    ``a``, ``b``: per-sample correctness (1/0) of two models on the same N samples; d_i = a_i - b_i;
    mean d +- z_{(1+c)/2} * std(d, ddof=1) / sqrt(N) (the paired-proportions setting of McNemar, "Note on the
    sampling error of the difference between correlated proportions or percentages", Psychometrika 1947).
    """
    from scipy.stats import norm  # lazily: scipy is slow to import (as in t_quantile)

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.size < 2:
        raise ValueError("paired_proportion_difference needs at least two samples")
    mean = float(d.mean())
    half = float(norm.ppf((1 + confidence) / 2)) * float(d.std(ddof=1)) / math.sqrt(d.size)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": int(d.size)}
