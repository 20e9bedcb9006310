"""Plots as PNG (matplotlib, Agg backend), written atomically."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..io import atomic_write_bytes  # noqa: E402


def save_figure(fig: "plt.Figure", path: str | Path) -> Path:
    """Write ``fig`` as a PNG (110 dpi, tight bounding box) atomically and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
