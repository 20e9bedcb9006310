"""One renderer for every study figure: a figure is declared as plain data (a spec), drawn here to a PNG.

A spec is a dict::

    {"title": str, "layout": [rows, cols], "size": [width, height] (inches), "sharex": bool, "sharey": bool,
     "panels": [panel, ...]}

and each panel has a ``type``:

- ``lines``: ``series`` = [{"label", "x", "y", "err" (list, or [lower, upper] lists), "style" ("o-", "s--", "o"
  for markers only), "color", "band": true (err drawn as a shaded band)}], ``hlines`` = [{"y", "label", "style",
  "color", "band": [low, high]}], ``vlines`` = [{"x", "label", "style", "color", "width"}];
- ``bars``: ``categories`` and ``series`` = [{"label", "values", "errors", "color" or "colors", "alpha"}] (grouped
  side by side), ``hlines`` as above;
- ``intervals``: ``rows`` = [{"label", "mean", "low", "high", "color"}] (a point with its interval per row; NaN
  interval = point only), ``vspans`` = [{"from", "to", "label", "color"}], ``vlines`` as above;
- ``heatmap``: ``matrix`` (NaN cells blank), ``xlabels``, ``ylabels``, ``vmin``, ``vmax``, ``cmap``, ``annotate``
  (``format``: the annotation's format string), ``colorbar`` (its label; ``colorbar_location``: "right" or
  "bottom"), ``hatch`` (a matrix of booleans: those entries hatched), ``outline`` ([[row, col], ...]: those entries
  framed), ``row_notes`` (one string per row, written in the right margin).

Every panel may set ``title``, ``xlabel``, ``ylabel``, ``xscale`` / ``yscale`` ("log", "log2"), ``xticks`` ([values,
labels]), ``ylim``, ``legend`` ("best", "right", "none"). Studies build specs from results.json alone, so a report
can be redrawn from its results (``kdlab report DIR``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle
from matplotlib.ticker import NullFormatter

from .plots import save_figure

PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac",
           "#eeca3b")
MARKERS = "os^vDPX*hd<>"


def draw_figure(spec: dict[str, Any], path: str | Path) -> Path:
    """Draw ``spec`` (module docstring) to a PNG at ``path``."""
    panels = spec["panels"]
    rows, cols = spec.get("layout") or [1, len(panels)]
    if rows * cols < len(panels):
        raise ValueError(f"layout {rows}x{cols} has room for {rows * cols} panels, not {len(panels)}")
    width, height = spec.get("size") or [5.0 * cols, 3.8 * rows]
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False, sharex=spec.get("sharex", False),
                             sharey=spec.get("sharey", False))
    flat = list(axes.flat)
    for ax, panel in zip(flat, panels):
        _DRAW[panel["type"]](fig, ax, panel)
        _decorate(ax, panel)
    for ax in flat[len(panels):]:
        ax.axis("off")
    if spec.get("title"):
        fig.suptitle(spec["title"], fontsize=spec.get("title_size", 11))
    fig.tight_layout()
    return save_figure(fig, path)


def _colour(i: int, given: str | None = None) -> str:
    return given or PALETTE[i % len(PALETTE)]


def _finite(values: Any) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def _errors(err: Any) -> Any:
    if err is None:
        return None
    if len(err) == 2 and isinstance(err[0], (list, tuple)):
        return [np.nan_to_num(_finite(err[0])), np.nan_to_num(_finite(err[1]))]
    return np.nan_to_num(_finite(err))


def _lines(fig: Any, ax: Any, panel: dict[str, Any]) -> None:
    for i, s in enumerate(panel.get("series", [])):
        colour = _colour(i, s.get("color"))
        style = s.get("style", "o-")
        x, y = _finite(s["x"]), _finite(s["y"])
        err = _errors(s.get("err"))
        if s.get("band") and err is not None:
            ax.plot(x, y, style, color=colour, label=s.get("label"), markersize=s.get("markersize", 5))
            lo, hi = (err if isinstance(err, list) else (err, err))
            ax.fill_between(x, np.asarray(y) - lo, np.asarray(y) + hi, color=colour, alpha=0.15, linewidth=0)
        elif err is not None:
            marker = style.rstrip("-:.") or "o"
            linestyle = style[len(marker):] or "none"
            ax.errorbar(x, y, yerr=err, marker=marker, linestyle=linestyle, color=colour, capsize=3,
                        label=s.get("label"), markersize=s.get("markersize", 5))
        else:
            ax.plot(x, y, style, color=colour, label=s.get("label"), markersize=s.get("markersize", 5))
    _reference_lines(ax, panel)


def _reference_lines(ax: Any, panel: dict[str, Any]) -> None:
    for h in panel.get("hlines", []):
        ax.axhline(h["y"], color=h.get("color", "k"), linestyle=h.get("style", "--"), linewidth=h.get("width", 1),
                   label=h.get("label"))
        if h.get("band"):
            ax.axhspan(h["band"][0], h["band"][1], color=h.get("color", "k"), alpha=0.08)
    for v in panel.get("vlines", []):
        ax.axvline(v["x"], color=v.get("color", "#888"), linestyle=v.get("style", ":"), linewidth=v.get("width", 1),
                   alpha=v.get("alpha", 1.0), label=v.get("label"))


def _bars(fig: Any, ax: Any, panel: dict[str, Any]) -> None:
    categories = panel["categories"]
    series = panel["series"]
    x = np.arange(len(categories))
    width = 0.8 / len(series)
    for i, s in enumerate(series):
        offset = (i - (len(series) - 1) / 2) * width
        colours = s.get("colors") or _colour(i, s.get("color"))
        err = _errors(s.get("errors"))
        ax.bar(x + offset, _finite(s["values"]), width, yerr=err, capsize=3 if err is not None else 0,
               color=colours, alpha=s.get("alpha", 1.0), label=s.get("label"))
    ax.set_xticks(x, categories, rotation=panel.get("rotate", 20), ha="right" if panel.get("rotate", 20) else "center")
    for key, colour in (panel.get("legend_colors") or {}).items():
        ax.bar([0], [0], color=colour, label=key)  # a legend entry only (colours that mean a category)
    _reference_lines(ax, panel)
    if "ylim" not in panel:
        values = [v for s in series for v in _finite(s["values"]) if not math.isnan(v)]
        spreads = [float(e) for s in series if s.get("errors") is not None
                   for e in np.ravel(np.asarray(_errors(s["errors"]), dtype=float))]
        refs = [h["y"] for h in panel.get("hlines", [])]
        low = min(values + refs) - max(spreads, default=0)
        high = max(values + refs) + max(spreads, default=0)
        pad = max(0.5, (high - low) * 0.3)
        ax.set_ylim(low - pad, high + pad)


def _intervals(fig: Any, ax: Any, panel: dict[str, Any]) -> None:
    rows = panel["rows"]
    for span in panel.get("vspans", []):
        ax.axvspan(span["from"], span["to"], color=span.get("color", "#b279a2"), alpha=0.12, label=span.get("label"))
    for i, r in enumerate(rows):
        colour = r.get("color", PALETTE[0])
        mean, low, high = (math.nan if r[k] is None else r[k] for k in ("mean", "low", "high"))
        if math.isnan(low) or math.isnan(high):
            ax.plot(mean, i, "o", color=colour)
        else:
            ax.errorbar(mean, i, xerr=[[mean - low], [high - mean]], fmt="o", color=colour, capsize=3)
    ax.axvline(panel.get("zero", 0.0), color="k", linewidth=0.8)
    _reference_lines(ax, panel)
    ax.set_yticks(range(len(rows)), [r["label"] for r in rows], fontsize=panel.get("label_size", 10))
    ax.set_ylim(len(rows) - 0.5, -0.5)


def _heatmap(fig: Any, ax: Any, panel: dict[str, Any]) -> None:
    values = np.asarray([_finite(row) for row in panel["matrix"]], dtype=float)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=panel.get("cmap", "viridis"), vmin=panel.get("vmin"),
                      vmax=panel.get("vmax"), aspect=panel.get("aspect", "equal"))
    location = panel.get("colorbar_location", "right")
    right = location == "right"
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04 if right else 0.25, label=panel.get("colorbar", ""),
                 location=location, shrink=1.0 if right else 0.6)
    ax.set_xticks(range(values.shape[1]), panel.get("xlabels", range(values.shape[1])), rotation=panel.get(
        "xtick_rotation", 45), ha="right" if panel.get("xtick_rotation", 45) else "center", fontsize=8)
    ax.set_yticks(range(values.shape[0]), panel.get("ylabels", range(values.shape[0])), fontsize=8)
    for (i, j), hatched in np.ndenumerate(np.asarray(panel.get("hatch") or np.zeros(values.shape, bool))):
        if hatched:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="#777",
                                   linewidth=0))
    for i, j in panel.get("outline", []):
        ax.add_patch(Rectangle((j - 0.46, i - 0.46), 0.92, 0.92, fill=False, edgecolor="k", linewidth=2.2))
    for i, note in enumerate(panel.get("row_notes", [])):
        ax.text(values.shape[1] - 0.35, i, note, ha="left", va="center", fontsize=7.5, clip_on=False)
    if panel.get("annotate") and values.size <= 400:
        vmin = panel.get("vmin", np.nanmin(values) if np.isfinite(values).any() else 0.0)
        vmax = panel.get("vmax", np.nanmax(values) if np.isfinite(values).any() else 1.0)
        for (i, j), v in np.ndenumerate(values):
            if not math.isnan(v):
                dark = (v - vmin) / max(vmax - vmin, 1e-12) < 0.5 if panel.get("cmap", "viridis") == "viridis" \
                    else abs(v) > 0.6 * max(abs(vmin), abs(vmax))
                ax.text(j, i, panel.get("format", "{:.2f}").format(v), ha="center", va="center",
                        fontsize=panel.get("annotate_size", 7), color="w" if dark else "k")


_DRAW = {"lines": _lines, "bars": _bars, "intervals": _intervals, "heatmap": _heatmap}


def _decorate(ax: Any, panel: dict[str, Any]) -> None:
    for axis, key in ((ax.xaxis, "xscale"), (ax.yaxis, "yscale")):
        scale = panel.get(key)
        if scale == "log":
            (ax.set_xscale if key == "xscale" else ax.set_yscale)("log")
        elif scale == "log2":
            (ax.set_xscale if key == "xscale" else ax.set_yscale)("log", base=2)
    if panel.get("xticks"):
        values, labels = panel["xticks"]
        rotation = panel.get("xtick_rotation", 0)
        ax.set_xticks(values, labels, rotation=rotation, ha="right" if rotation else "center")
        ax.xaxis.set_minor_formatter(NullFormatter())
    if panel.get("ylim"):
        ax.set_ylim(*panel["ylim"])
    ax.set_title(panel.get("title", ""), fontsize=panel.get("title_size", 9))
    ax.set_xlabel(panel.get("xlabel", ""))
    ax.set_ylabel(panel.get("ylabel", ""))
    if panel["type"] != "heatmap":
        ax.grid(alpha=0.3, axis="y" if panel["type"] == "bars" else "both")
    legend = panel.get("legend", "best")
    handles, labels = ax.get_legend_handles_labels()
    if legend != "none" and labels:
        if legend == "right":
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        else:
            ax.legend(fontsize=7, loc=legend, ncol=panel.get("legend_columns", 1))
