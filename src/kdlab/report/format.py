"""Formatting of statistics for tables and evidence text: mean +- std and paired differences with intervals."""

from __future__ import annotations

import math


def format_pm(stats: dict[str, float], scale: float = 100.0, digits: int = 2) -> str:
    """'mean ± std' (scaled, e.g. accuracy in percent)."""
    return f"{stats['mean'] * scale:.{digits}f} ± {stats['std'] * scale:.{digits}f}"


def format_interval(diff: dict[str, float], scale: float = 100.0, digits: int = 2) -> str:
    if math.isnan(diff["low"]):
        return f"{diff['mean'] * scale:+.{digits}f} (n=1, no interval)"
    return f"{diff['mean'] * scale:+.{digits}f} [{diff['low'] * scale:+.{digits}f}, {diff['high'] * scale:+.{digits}f}]"
