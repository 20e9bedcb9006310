"""Multiple-testing corrections for a family of cells (Benjamini-Hochberg, Holm) and the matching interval level.

A map of many cells (dataset x family x training length x student size ...) tests the same hypothesis in each; some
will clear a 95% interval by chance. These functions turn per-cell p-values into decisions with a controlled error
rate over the family, and give the confidence level at which the selected cells' intervals keep that control.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

__all__ = ["CORRECTIONS", "adjusted_p_values", "benjamini_hochberg", "fcr_adjusted_confidence", "holm", "rejected"]

CORRECTIONS: tuple[str, ...] = ("bh", "holm")


def _check_p(p_values: Sequence[float]) -> np.ndarray:
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"p_values must be a flat sequence, got shape {p.shape}")
    if p.size and (np.isnan(p).any() or p.min() < 0 or p.max() > 1):
        raise ValueError(f"p_values must lie in [0, 1], got {p.tolist()}")
    return p


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values, in the input order.

    With p_(1) <= ... <= p_(m) sorted: p~_(i) = min_{j >= i} min(1, m p_(j) / j). Rejecting every hypothesis with
    p~ <= q controls the false discovery rate at q for independent or positively dependent (PRDS) tests.
    Paper: "Controlling the False Discovery Rate: A Practical and Powerful Approach to Multiple Testing", Benjamini &
    Hochberg, JRSS B 1995; PRDS: Benjamini & Yekutieli, Annals of Statistics 2001.
    """
    p = _check_p(p_values)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted_sorted = np.minimum.accumulate(scaled[::-1])[::-1].clip(max=1.0)
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted.tolist()


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order.

    With p_(1) <= ... <= p_(m) sorted: p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)). Rejecting p~ <= alpha
    controls the family-wise error rate at alpha under any dependence. Paper: "A Simple Sequentially Rejective
    Multiple Test Procedure", Holm, Scandinavian Journal of Statistics 1979.
    """
    p = _check_p(p_values)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    adjusted_sorted = np.maximum.accumulate(scaled).clip(max=1.0)
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted.tolist()


def adjusted_p_values(p_values: Sequence[float], method: Literal["bh", "holm"] = "bh") -> list[float]:
    """Adjusted p-values by ``method``: ``bh`` (false discovery rate) or ``holm`` (family-wise error rate)."""
    if method == "bh":
        return benjamini_hochberg(p_values)
    if method == "holm":
        return holm(p_values)
    raise ValueError(f"method={method!r} is not a correction; allowed: {', '.join(CORRECTIONS)}")


def rejected(p_values: Sequence[float], level: float, method: Literal["bh", "holm"] = "bh") -> list[bool]:
    """Which hypotheses ``method`` rejects at ``level`` (q for BH, alpha for Holm): adjusted p <= level."""
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} is invalid; allowed: a number in (0, 1)")
    return [a <= level for a in adjusted_p_values(p_values, method)]


def fcr_adjusted_confidence(num_selected: int, num_tests: int, level: float) -> float:
    """Confidence level of intervals for the cells BH selected that keeps the false coverage rate at ``level``.

    1 - R q / m for R selected cells out of m tested at FDR level q; with nothing selected, 1 - q / m (the level
    at which the first cell would have been selected). For one-sided tests this is exactly BH: a cell is rejected at
    q iff its one-sided (1 - R q / m) bound clears the threshold. Paper: "False Discovery Rate-Adjusted Multiple
    Confidence Intervals for Selected Parameters", Benjamini & Yekutieli, JASA 2005.
    """
    if num_tests < 1 or not 0 <= num_selected <= num_tests:
        raise ValueError(f"num_selected={num_selected!r}, num_tests={num_tests!r}; allowed: 0 <= selected <= tests, "
                         "tests >= 1")
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} is invalid; allowed: a number in (0, 1)")
    return 1.0 - max(num_selected, 1) * level / num_tests
