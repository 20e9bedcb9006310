"""Formatting of statistics for tables and evidence text: mean +- std, paired differences with intervals, Markdown
tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def format_pm(stats: dict[str, float], scale: float = 100.0, digits: int = 2) -> str:
    """'mean ± std' (scaled, e.g. accuracy in percent)."""
    return f"{stats['mean'] * scale:.{digits}f} ± {stats['std'] * scale:.{digits}f}"


def format_interval(diff: dict[str, float], scale: float = 100.0, digits: int = 2) -> str:
    """'mean [low, high]' of a paired difference (scaled, signed); 'mean (n=1, no interval)' without one."""
    if math.isnan(diff["low"]):
        return f"{diff['mean'] * scale:+.{digits}f} (n=1, no interval)"
    return f"{diff['mean'] * scale:+.{digits}f} [{diff['low'] * scale:+.{digits}f}, {diff['high'] * scale:+.{digits}f}]"


def format_values(values: dict[str, Any], *, empty: str, sep: str = "=", float_format: str = ".4g",
                  drop_prefix: str = "") -> str:
    """Hyperparameter values as text, e.g. ``temperature=2, alpha=0.5`` (``sep=" "``: ``temperature 2``); floats by
    ``float_format``, ``drop_prefix`` removed from each key, ``empty`` when there are no values."""
    if not values:
        return empty
    return ", ".join(f"{k.removeprefix(drop_prefix)}{sep}{format(v, float_format) if isinstance(v, float) else v}"
                     for k, v in values.items())


def format_params(params: int) -> str:
    """A parameter count as people write it: 1,860,000 -> "1.86M", 24,586 -> "24.6k", 850 -> "850"."""
    if params >= 1_000_000:
        return f"{params / 1e6:.3g}M"
    if params >= 1_000:
        return f"{params / 1e3:.3g}k"
    return str(params)


_DEFAULT_OPTIONS = {"mlp": {"width": 256, "depth": 2}, "cnn": {"width": 1.0, "depth": 2}}


def model_name(spec: dict[str, Any], params: int | None = None) -> str:
    """A model named as people do: "MLP 2x1024" (hidden layers x width), "CNN 3 stages x0.5", "ResNet-20",
    "WRN-16-2"; with ``params``, ", 1.86M params" is appended. Options other than the capacity knobs follow in
    brackets (e.g. "dropout 0.5")."""
    name = spec.get("name", "?")
    options = {k: v for k, v in spec.items() if k not in ("name", "num_classes", "in_shape")}
    options = {**_DEFAULT_OPTIONS.get(name, {}), **options}
    rest: dict[str, Any] = {}
    if name == "mlp":
        if options.get("widths") is not None:
            hidden = list(options.pop("widths"))
            options.pop("width"), options.pop("depth")
            text = "linear" if not hidden else "MLP " + "-".join(str(w) for w in hidden)
        else:
            depth, width = options.pop("depth"), options.pop("width")
            text = "linear" if depth == 0 else f"MLP {depth}x{width}"
        rest = {k: v for k, v in options.items() if (k, v) not in (("dropout", 0), ("activation", "relu"))}
    elif name == "cnn":
        depth, width = options.pop("depth"), options.pop("width")
        text = f"CNN {depth} stage{'s' * (depth != 1)} x{width:g}"
        rest = {k: v for k, v in options.items() if (k, v) != ("dropout", 0)}
    elif name.startswith("resnet"):
        depth = options.pop("depth", name.removeprefix("resnet") or 20)
        width = options.pop("width", 1.0)
        text = f"ResNet-{depth}" + (f" x{width:g}" if width != 1.0 else "")
        rest = options
    elif name.startswith("wrn"):
        if name == "wrn":
            text = f"WRN-{options.pop('depth', 16)}-{options.pop('widen_factor', 1)}"
        else:
            text = "WRN-" + name.removeprefix("wrn_").replace("_", "-")
        rest = {k: v for k, v in options.items() if (k, v) != ("dropout", 0)}
    else:
        text, rest = name, options
    if rest:
        text += " (" + ", ".join(f"{k} {v}" for k, v in rest.items()) + ")"
    if params is not None:
        text += f", {format_params(params)} params"
    return text


def markdown_cell(value: Any) -> str:
    """A Markdown table cell: a literal pipe (e.g. KL(p||q)) would start a new column and a newline would end the row,
    so the pipe is escaped and the newline becomes a space."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[Any], rows: Sequence[Sequence[Any]]) -> list[str]:
    """The lines of a Markdown table: header, rule, one line per row; every cell through :func:`markdown_cell`."""
    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(markdown_cell(c) for c in cells) + " |"
    return [line(headers), "|" + "|".join("---" for _ in headers) + "|", *(line(r) for r in rows)]
