"""Student architectures derived from a teacher's spec (Gou, Yu, Maybank, Tao, "Knowledge Distillation: A Survey",
IJCV 2021, Sec. 5): a simplified version of the teacher, a smaller member of its family, or the teacher's own
architecture (self-distillation, born-again networks).

Every builder takes a kdlab model spec (``model.spec``: ``{"name", "num_classes", "in_shape", **capacity}``) or a
kdlab model, and returns a new spec that ``create_model(**spec)`` builds; the input is never modified. The capacity
knobs per family:

    family   depth                                width
    mlp      hidden layers (``depth`` or len(widths))  units per layer (``width`` or each of ``widths``)
    cnn      stages (1..6)                        channel multiplier ``width`` (32, 64, ... times width)
    resnet   6n + 2 (n basic blocks per stage)    channel multiplier ``width`` (16, 32, 64 times width)
    wrn      6n + 4 (n blocks per group)          integer ``widen_factor`` k (16k, 32k, 64k channels)

Fixed-depth names (``resnet20``, ``wrn_16_2``) are rewritten to their family (``resnet`` with depth 20, ``wrn`` with
depth 16 and widen_factor 2) so depth can change.
"""

from __future__ import annotations

import copy
import math
import numbers
from typing import Any

from torch import nn

from ..errors import ConfigError

RESNET_DEPTHS = (8, 14, 20, 32, 44, 56, 110)
WRN_DEPTHS = (10, 16, 22, 28, 40)
_FIXED = {f"resnet{d}": ("resnet", {"depth": d}) for d in RESNET_DEPTHS}
_FIXED.update({f"wrn_{d}_{k}": ("wrn", {"depth": d, "widen_factor": k}) for d in (16, 40) for k in (1, 2)})
FAMILIES = ("mlp", "cnn", "resnet", "wrn")


def same_architecture(spec: dict[str, Any] | nn.Module) -> dict[str, Any]:
    """The teacher's own architecture, as a new spec (for self-distillation and born-again generations)."""
    return _family_spec(spec)


def simplified(spec: dict[str, Any] | nn.Module, depth_factor: float = 1.0,
               width_factor: float = 1.0) -> dict[str, Any]:
    """The teacher with fewer layers and/or channels: depth and width scaled by the factors (each in (0, 1]).

    depth' = max(1, round(depth * depth_factor)) in the family's units (hidden layers, stages, blocks per stage n for
    resnet/wrn, so depth = 6 n' + 2 or 6 n' + 4); width' = width * width_factor for multipliers (cnn, resnet),
    max(1, round(width * width_factor)) for unit counts (mlp) and widen factors (wrn). An MLP with explicit ``widths``
    keeps its first depth' layers, each scaled.
    """
    out = _family_spec(spec)
    depth_factor = _factor("depth_factor", depth_factor)
    width_factor = _factor("width_factor", width_factor)
    name = out["name"]
    if name == "mlp":
        if out.get("widths") is not None:
            widths = list(out["widths"])
            keep = max(1, round(len(widths) * depth_factor)) if widths else 0
            out["widths"] = [max(1, round(w * width_factor)) for w in widths[:keep]]
        else:
            out["depth"] = max(1, round(out["depth"] * depth_factor)) if out["depth"] > 0 else 0
            out["width"] = max(1, round(out["width"] * width_factor))
    elif name == "cnn":
        out["depth"] = max(1, round(out["depth"] * depth_factor))
        out["width"] = out["width"] * width_factor
    elif name == "resnet":
        blocks = (out["depth"] - 2) // 6
        out["depth"] = 6 * max(1, round(blocks * depth_factor)) + 2
        out["width"] = out["width"] * width_factor
    else:  # wrn
        blocks = (out["depth"] - 4) // 6
        out["depth"] = 6 * max(1, round(blocks * depth_factor)) + 4
        out["widen_factor"] = max(1, round(out["widen_factor"] * width_factor))
    return out


def smaller_member(spec: dict[str, Any] | nn.Module, steps: int = 1, along: str = "auto") -> dict[str, Any]:
    """The member of the teacher's family ``steps`` sizes down, along ``depth`` or ``width``.

    One step down: depth -> the next smaller standard depth (resnet 8, 14, 20, 32, 44, 56, 110; wrn 10, 16, 22, 28,
    40), or one layer/stage fewer (mlp, cnn); width -> half (mlp units and cnn/resnet multipliers; wrn's widen
    factor k -> k // 2). ``along="auto"`` steps depth for resnet and wrn (their families are named by depth) and
    width for mlp and cnn. ConfigError when the family has no smaller member that way.
    """
    if along not in ("auto", "depth", "width"):
        raise ConfigError(f"along={along!r} is not allowed; must be one of auto, depth, width")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps={steps!r} is not allowed; must be an integer >= 1")
    out = _family_spec(spec)
    name = out["name"]
    axis = along if along != "auto" else ("depth" if name in ("resnet", "wrn") else "width")
    for _ in range(steps):
        out = _one_step_down(out, axis)
    return out


def _one_step_down(spec: dict[str, Any], axis: str) -> dict[str, Any]:
    out = dict(spec)
    name = out["name"]
    smallest = ConfigError(f"model '{name}' ({_describe(spec)}) has no smaller member along {axis}")
    if name == "mlp" and out.get("widths") is not None:
        widths = list(out["widths"])
        if axis == "depth":
            if len(widths) <= 1:
                raise smallest
            out["widths"] = widths[:-1]
        else:
            if all(w <= 1 for w in widths):
                raise smallest
            out["widths"] = [max(1, w // 2) for w in widths]
    elif name in ("mlp", "cnn"):
        if axis == "depth":
            if out["depth"] <= 1:
                raise smallest
            out["depth"] -= 1
        elif name == "mlp":
            if out["width"] <= 1:
                raise smallest
            out["width"] = out["width"] // 2
        else:
            out["width"] = out["width"] / 2
    elif name == "resnet":
        if axis == "depth":
            out["depth"] = _next_below(out["depth"], RESNET_DEPTHS, smallest, step=6, floor=8)
        else:
            out["width"] = out["width"] / 2
    else:  # wrn
        if axis == "depth":
            out["depth"] = _next_below(out["depth"], WRN_DEPTHS, smallest, step=6, floor=10)
        else:
            if out["widen_factor"] <= 1:
                raise smallest
            out["widen_factor"] = out["widen_factor"] // 2
    return out


def _next_below(depth: int, ladder: tuple[int, ...], error: ConfigError, step: int, floor: int) -> int:
    below = [d for d in ladder if d < depth]
    if below:
        return below[-1]
    if depth - step >= floor:
        return depth - step
    raise error


def _family_spec(spec: dict[str, Any] | nn.Module) -> dict[str, Any]:
    """A deep copy of the spec with fixed-depth names rewritten to their family; ConfigError for anything else."""
    raw = getattr(spec, "spec", spec)
    if not isinstance(raw, dict) or "name" not in raw:
        raise ConfigError(f"spec={spec!r} is not allowed; must be a kdlab model spec (model.spec) or a kdlab model")
    if "pruned_from" in raw or "lowrank_from" in raw:
        raise ConfigError("a compressed model's spec has no family to derive students from; use the spec of the "
                          "model it was compressed from")
    out = copy.deepcopy(raw)
    if out["name"] in _FIXED:
        family, fixed = _FIXED[out["name"]]
        out = {**out, "name": family, **fixed}
    if out["name"] not in FAMILIES:
        raise ConfigError(f"model '{out['name']}' is not allowed; students can be derived from: {', '.join(FAMILIES)} "
                          f"(and their fixed-depth names)")
    return out


def _factor(key: str, value: Any) -> float:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or not 0 < value <= 1):
        raise ConfigError(f"{key}={value!r} is not allowed; must be a number in (0, 1] (1 keeps the teacher's size)")
    return float(value)


def _describe(spec: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in spec.items() if k not in ("name", "num_classes", "in_shape"))
