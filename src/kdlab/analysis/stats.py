"""Statistics over seeds: mean +- std, paired differences with t confidence intervals."""

from __future__ import annotations

import math
from typing import Any, Sequence

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
