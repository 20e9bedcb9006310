"""Plots as PNG (matplotlib, Agg backend), written atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..io import atomic_write_bytes  # noqa: E402


def save_figure(fig: "plt.Figure", path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def bar_chart(labels: Sequence[str], means: Sequence[float], stds: Sequence[float], path: str | Path,
              ylabel: str, title: str = "") -> Path:
    """Bars with +- std error bars."""
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(labels)), 3.5))
    ax.bar(range(len(labels)), means, yerr=stds, capsize=4, color="#4c78a8")
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    low = min(m - s for m, s in zip(means, stds))
    high = max(m + s for m, s in zip(means, stds))
    pad = max(1e-3, (high - low) * 0.5)
    ax.set_ylim(low - pad, high + pad)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def line_chart(series: dict[str, tuple[Sequence[float], Sequence[float], Sequence[float] | None]],
               path: str | Path, xlabel: str, ylabel: str, title: str = "", logx: bool = False) -> Path:
    """One line per series name: (x, y, yerr or None)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (x, y, err) in series.items():
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=name)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
