"""Pruning baselines: unstructured magnitude pruning with masks, and structured (neuron / filter) pruning.

Unstructured: Han, Pool, Tran & Dally, "Learning both Weights and Connections for Efficient Neural Networks",
NeurIPS 2015 -- remove the weights of smallest magnitude |w| and fine-tune the rest with the removed ones held at 0.

Structured: Li, Kadav, Durdanovic, Samet & Graf, "Pruning Filters for Efficient ConvNets", ICLR 2017 -- score each
output channel (hidden neuron) by the L1 norm of the filter that produces it, keep the highest-scoring ones and cut the
matching input slice of the next layer, which gives a genuinely smaller dense model.

How masks are kept (unstructured): each pruned layer gets a ``torch.nn.utils.parametrize`` parametrization
``weight = original * mask`` whose ``mask`` is a persistent buffer. The effective weight is recomputed from the mask on
every access, so a pruned weight is exactly 0 whatever the optimiser does (momentum, Adam state, weight decay, a loaded
state dict), and the gradient reaching ``original`` at a pruned position is 0. The price: while pruned, the state dict
keys of a layer read ``<layer>.parametrizations.weight.original`` and ``...weight.0.mask`` instead of
``<layer>.weight`` (a checkpoint of a pruned model loads into a model pruned the same way, masks included);
:func:`remove_pruning` bakes the masks in and restores the plain keys.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import ConfigError
from ..models.cnn import CNN
from ..models.complexity import count_params
from ..models.factory import model_from_spec, register_spec_builder
from ..models.mlp import MLP
from .modules import classifier_head, replace_submodule

__all__ = [
    "IMPORTANCES",
    "build_pruned",
    "layer_sparsity",
    "magnitude_prune",
    "magnitude_prune_to_budget",
    "nonzero_params",
    "pruned_param_count",
    "remove_pruning",
    "sparsity",
    "structured_prune",
    "structured_prune_to_budget",
]

DEFAULT_INCLUDE: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)
SCOPES = ("global", "layer")
IMPORTANCES = ("l1", "l2")

# Bisection steps on keep_ratio in (0, 1]: 2**-60 is far below the smallest step 1/width that changes a layer.
_BISECTION_STEPS = 60


# ---------------------------------------------------------------------------------------------
# Unstructured magnitude pruning
# ---------------------------------------------------------------------------------------------


class WeightMask(nn.Module):
    """Parametrization ``weight = original * mask``; ``mask`` (0/1, same shape as the weight) is a buffer."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        """The effective (masked) weight."""
        return original * self.mask


def _mask_of(module: nn.Module) -> WeightMask | None:
    """The WeightMask on ``module.weight``, or None when the weight is not pruned."""
    if not parametrize.is_parametrized(module, "weight"):
        return None
    for p in module.parametrizations.weight:
        if isinstance(p, WeightMask):
            return p
    return None


def _check_include(include: Any) -> tuple[type[nn.Module], ...]:
    if isinstance(include, type):
        include = (include,)
    if (not isinstance(include, (tuple, list)) or not include
            or not all(isinstance(t, type) and issubclass(t, nn.Module) for t in include)):
        raise ValueError(f"include={include!r} is not allowed; allowed: a non-empty tuple of nn.Module classes "
                         f"whose instances have a 'weight', e.g. (nn.Linear, nn.Conv2d)")
    return tuple(include)


def _prunable(model: nn.Module, include: tuple[type[nn.Module], ...], prune_head: bool) -> list[tuple[str, nn.Module]]:
    """(name, module) of every included layer with a weight tensor, in definition order, head excluded unless asked."""
    head = None if prune_head else classifier_head(model, include)
    layers = []
    for name, module in model.named_modules():
        if isinstance(module, include) and module is not head and isinstance(getattr(module, "weight", None),
                                                                              torch.Tensor):
            layers.append((name, module))
    return layers


def _check_sparsity(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ValueError(f"sparsity={value!r} is not allowed; allowed: a fraction of weights to zero in [0, 1)")
    return float(value)


def _round_half_up(x: float) -> int:
    # Python's round() rounds half to even (round(2.5) == 2); counts here round half up, as people do by hand.
    return int(math.floor(x + 0.5))


def _set_mask(module: nn.Module, mask: torch.Tensor) -> None:
    """Install (or replace) the mask of ``module.weight``; also zero the stored original so that the pruned values
    are gone even if someone strips the parametrization without baking it in (only when the mask is the weight's
    one parametrization: after e.g. weight norm, ``original`` is not the weight)."""
    existing = _mask_of(module)
    if existing is None:
        parametrize.register_parametrization(module, "weight", WeightMask(mask))
    else:
        existing.mask.copy_(mask)
    if len(module.parametrizations.weight) == 1:
        with torch.no_grad():
            module.parametrizations.weight.original.mul_(mask)


def _layer_stats(layers: list[tuple[str, nn.Module]]) -> dict[str, Any]:
    per_layer, zeros_total, total = {}, 0, 0
    for name, module in layers:
        weight = module.weight.detach()
        zeros = int((weight == 0).sum())
        per_layer[name] = {"weights": weight.numel(), "zeros": zeros, "sparsity": zeros / max(1, weight.numel())}
        zeros_total += zeros
        total += weight.numel()
    return {"layers": per_layer, "zeros": zeros_total, "weights": total, "overall": zeros_total / max(1, total)}


@torch.no_grad()
def _prune_counts(layers: list[tuple[str, nn.Module]], counts: list[int] | int) -> None:
    """Zero the ``counts[i]`` smallest-|w| weights of layer i, or (an int) the ``counts`` smallest over all layers.

    Ties are broken by position (a stable sort over the layers in definition order), so the result is deterministic
    and the number of zeros is exact even when many weights share a magnitude (e.g. weights already pruned to 0).
    """
    magnitudes = [module.weight.detach().abs().flatten() for _, module in layers]
    if isinstance(counts, int):
        flat = torch.cat(magnitudes) if magnitudes else torch.zeros(0)
        order = torch.sort(flat.to(torch.float64), stable=True).indices
        drop = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
        drop[order[:counts]] = True
        drops = list(torch.split(drop, [m.numel() for m in magnitudes]))
    else:
        drops = []
        for m, n in zip(magnitudes, counts):
            drop = torch.zeros(m.numel(), dtype=torch.bool, device=m.device)
            drop[torch.sort(m.to(torch.float64), stable=True).indices[:n]] = True
            drops.append(drop)
    for (_, module), drop in zip(layers, drops):
        weight = module.weight
        mask = (~drop).reshape(weight.shape).to(dtype=weight.dtype)
        _set_mask(module, mask)


def magnitude_prune(model: nn.Module, sparsity: float, scope: str = "global",
                    include: Sequence[type[nn.Module]] = DEFAULT_INCLUDE, prune_head: bool = False) -> dict[str, Any]:
    """Zero the fraction ``sparsity`` of smallest-magnitude weights IN PLACE and keep them 0 from now on (masks).

    Which weights: the ``weight`` of every layer of a type in ``include`` (default Linear and Conv2d); never biases,
    batch-norm parameters or other parameters; the classifier head (``model.head``, else the last included layer)
    only when ``prune_head=True``.

    ``scope="global"``: one threshold over all those weights, i.e. the ``n = round(sparsity * P)`` weights of smallest
    |w| among all ``P`` of them are zeroed (layers end up with different sparsities; Han et al., NeurIPS 2015, prune
    by a magnitude threshold). ``scope="layer"``: each layer loses ``round(sparsity * P_l)`` of its own ``P_l``
    weights. Rounding is half up; ties in |w| go to the earlier position. Pruning an already pruned model prunes its
    effective weights again (already-zero weights are the smallest, so they stay pruned when sparsity grows).

    Returns ``{"target", "scope", "layers": {name: {"weights", "zeros", "sparsity"}}, "zeros", "weights",
    "overall"}`` measured after pruning over the pruned layers. Fine-tune with any optimiser; see the module
    docstring for how the masks work and :func:`remove_pruning` to bake them in.
    """
    target = _check_sparsity(sparsity)
    if scope not in SCOPES:
        raise ValueError(f"scope={scope!r} is not allowed; allowed: {', '.join(SCOPES)}")
    include = _check_include(include)
    layers = _prunable(model, include, prune_head)
    if not layers:
        raise ValueError(f"model has no layer of the types include={[t.__name__ for t in include]} to prune "
                         f"(prune_head={prune_head})")
    if scope == "global":
        _prune_counts(layers, _round_half_up(target * sum(m.weight.numel() for _, m in layers)))
    else:
        _prune_counts(layers, [_round_half_up(target * m.weight.numel()) for _, m in layers])
    return {"target": target, "scope": scope, **_layer_stats(layers)}


def magnitude_prune_to_budget(model: nn.Module, target_params: int,
                              include: Sequence[type[nn.Module]] = DEFAULT_INCLUDE,
                              prune_head: bool = False) -> dict[str, Any]:
    """Globally magnitude-prune IN PLACE until at most ``target_params`` parameter values are non-zero.

    With ``O`` the non-zero values outside the prunable weights (biases, BN, head, ...) and ``P`` prunable weights,
    the ``P - (target_params - O)`` smallest-|w| prunable weights are zeroed. Returns the :func:`magnitude_prune`
    report plus ``"target_params"`` and ``"nonzero_params"`` (:func:`nonzero_params` after pruning).
    """
    include = _check_include(include)
    if isinstance(target_params, bool) or not isinstance(target_params, numbers.Integral) or target_params < 1:
        raise ValueError(f"target_params={target_params!r} is not allowed; allowed: an integer >= 1")
    layers = _prunable(model, include, prune_head)
    if not layers:
        raise ValueError(f"model has no layer of the types include={[t.__name__ for t in include]} to prune")
    prunable = sum(m.weight.numel() for _, m in layers)
    prunable_nonzero = sum(int((m.weight != 0).sum()) for _, m in layers)
    other_nonzero = nonzero_params(model) - prunable_nonzero
    keep = int(target_params) - other_nonzero
    if keep < 0:
        raise ValueError(f"target_params={target_params} is below the {other_nonzero} non-zero parameters that "
                         f"magnitude pruning does not touch (biases, normalisation, head); allowed: >= {other_nonzero}")
    drop = max(0, prunable - keep)
    _prune_counts(layers, drop)
    stats = _layer_stats(layers)
    return {"target": drop / prunable, "scope": "global", **stats, "target_params": int(target_params),
            "nonzero_params": nonzero_params(model)}


def _own_class(module: nn.Module) -> None:
    """Give ``module`` a private copy of its parametrized class.

    ``parametrize`` puts the ``weight`` property on a class made for the module, and ``copy.deepcopy`` of the module
    shares that class with the copy; ``remove_parametrizations`` deletes the property from the class, which would
    break every other copy still pruned (torch 2.x). A private class confines the removal to this module.
    """
    cls = type(module)
    namespace = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    module.__class__ = type(cls.__name__, cls.__bases__, namespace)


def remove_pruning(model: nn.Module) -> nn.Module:
    """Bake the masks into the weights IN PLACE (``weight`` becomes a plain parameter holding the zeros) and return
    ``model``; the zeros are no longer enforced afterwards. A weight whose mask is stacked with other
    parametrizations (e.g. weight norm) raises NotImplementedError: which part to bake would be ambiguous."""
    # a list first: removing a parametrization edits the module tree being walked
    for name, module in list(model.named_modules()):
        if _mask_of(module) is None:
            continue
        if len(module.parametrizations.weight) != 1:
            raise NotImplementedError(f"remove_pruning: the weight of '{name}' has other parametrizations besides "
                                      f"the pruning mask; remove those first")
        _own_class(module)
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


def layer_sparsity(model: nn.Module, include: Sequence[type[nn.Module]] = DEFAULT_INCLUDE,
                   include_head: bool = True) -> dict[str, float]:
    """Fraction of exactly-zero values in the (effective) weight of each included layer, by module name."""
    layers = _prunable(model, _check_include(include), include_head)
    return {name: stats["sparsity"] for name, stats in _layer_stats(layers)["layers"].items()}


def sparsity(model: nn.Module, include: Sequence[type[nn.Module]] = DEFAULT_INCLUDE,
             include_head: bool = True) -> float:
    """Fraction of exactly-zero values among the (effective) weights of all included layers (head too by default):
    ``sum_l zeros_l / sum_l numel_l``; 0.0 for a model without such layers."""
    return _layer_stats(_prunable(model, _check_include(include), include_head))["overall"]


def nonzero_params(model: nn.Module) -> int:
    """Number of non-zero parameter values, reading masked weights through their mask.

    The parameter count that unstructured pruning actually saves: ``count_params`` still counts pruned weights, as
    they are stored (a dense tensor with zeros).
    """
    total, masked = 0, set()
    for module in model.modules():
        if _mask_of(module) is not None:
            total += int((module.weight != 0).sum())
            masked.add(id(module.parametrizations.weight.original))
    for p in model.parameters():
        if id(p) not in masked:
            total += int((p != 0).sum())
    return total


# ---------------------------------------------------------------------------------------------
# Structured pruning (mlp and cnn families)
# ---------------------------------------------------------------------------------------------


@dataclass
class _Link:
    """One prunable layer of a chain: ``producer`` (Linear or Conv2d) computes the units, ``bn`` (optional)
    normalises them; the next link's producer (or the head) reads them. ``path`` / ``bn_path`` locate the modules."""

    path: str
    producer: nn.Module
    bn_path: str | None = None
    bn: nn.BatchNorm2d | None = None


def _family(model: nn.Module) -> str:
    spec = getattr(model, "spec", None) or {}
    return str(spec.get("name", type(model).__name__))


def _chain(model: nn.Module) -> list[_Link]:
    """The prunable layers of a kdlab mlp or cnn, input side first; NotImplementedError for anything else.

    Both families are plain chains: every unit a layer produces is read only by the next layer, and everything in
    between (activation, dropout, max-pool, global average pool) acts per unit, so removing a unit means removing
    one output row/filter of its producer, one BN channel and one input column/channel of the next layer.
    """
    links: list[_Link] = []
    if isinstance(model, MLP):
        for i, block in enumerate(model.hidden):
            layer = block[0]
            if not isinstance(layer, nn.Linear):
                raise NotImplementedError(f"structured_prune: layer 'hidden.{i}.0' of this mlp is a "
                                          f"{type(layer).__name__}, not nn.Linear (was it factorized or wrapped?)")
            links.append(_Link(f"hidden.{i}.0", layer))
    elif isinstance(model, CNN):
        for s, stage in enumerate(model.stages):
            for j, layer in enumerate(stage):
                path = f"stages.{s}.{j}"
                if isinstance(layer, nn.Conv2d):
                    if layer.groups != 1:
                        raise NotImplementedError(f"structured_prune: conv '{path}' has groups={layer.groups}; "
                                                  f"only groups=1 is supported")
                    links.append(_Link(path, layer))
                elif isinstance(layer, nn.BatchNorm2d) and links and links[-1].bn is None:
                    links[-1].bn, links[-1].bn_path = layer, path
                elif not isinstance(layer, (nn.ReLU, nn.MaxPool2d)):
                    raise NotImplementedError(f"structured_prune: module '{path}' of this cnn is a "
                                              f"{type(layer).__name__}; expected Conv2d, BatchNorm2d, ReLU, MaxPool2d")
    else:
        raise NotImplementedError(
            f"structured_prune supports the kdlab 'mlp' and 'cnn' families only; got model '{_family(model)}' "
            f"({type(model).__name__}). Residual nets tie the channel counts of several layers together "
            f"(skip connections add them), which this chain-only pruner does not handle.")
    if not isinstance(model.head, nn.Linear):
        raise NotImplementedError(f"structured_prune: the head of this {_family(model)} is a "
                                  f"{type(model.head).__name__}, not nn.Linear")
    return links


def _units(link: _Link) -> int:
    return link.producer.out_features if isinstance(link.producer, nn.Linear) else link.producer.out_channels


def _check_keep_ratio(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value <= 1.0:
        raise ValueError(f"keep_ratio={value!r} is not allowed; allowed: a fraction of units to keep in (0, 1]")
    return float(value)


def _kept_count(keep_ratio: float, units: int) -> int:
    """``max(1, round_half_up(keep_ratio * units))``: a layer always keeps at least one unit."""
    return max(1, min(units, _round_half_up(keep_ratio * units)))


def _scores(link: _Link, importance: str) -> torch.Tensor:
    """Importance of each unit: the L1 (or L2) norm of the weights of the filter / neuron that produces it,
    ``s_j = sum |W[j, ...]|`` (Li et al., ICLR 2017, section 3.1). Biases and BN scales are not part of the score."""
    weight = link.producer.weight.detach().to(torch.float64).flatten(1)
    return weight.abs().sum(1) if importance == "l1" else weight.pow(2).sum(1).sqrt()


def _slice_linear(layer: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None) -> nn.Linear:
    weight = layer.weight.detach()
    if rows is not None:
        weight = weight[rows]
    if cols is not None:
        weight = weight[:, cols]
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=layer.bias is not None, device=weight.device,
                    dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if layer.bias is not None:
            new.bias.copy_(layer.bias.detach() if rows is None else layer.bias.detach()[rows])
    return new


def _slice_conv(layer: nn.Conv2d, rows: torch.Tensor | None, cols: torch.Tensor | None) -> nn.Conv2d:
    weight = layer.weight.detach()
    if rows is not None:
        weight = weight[rows]
    if cols is not None:
        weight = weight[:, cols]
    new = nn.Conv2d(weight.shape[1], weight.shape[0], layer.kernel_size, stride=layer.stride, padding=layer.padding,
                    dilation=layer.dilation, bias=layer.bias is not None, padding_mode=layer.padding_mode,
                    device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if layer.bias is not None:
            new.bias.copy_(layer.bias.detach() if rows is None else layer.bias.detach()[rows])
    return new


def _slice_bn(bn: nn.BatchNorm2d, keep: torch.Tensor) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(len(keep), eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                         track_running_stats=bn.track_running_stats, device=keep.device,
                         dtype=bn.weight.dtype if bn.affine else None)
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight.detach()[keep])
            new.bias.copy_(bn.bias.detach()[keep])
        if bn.track_running_stats:
            new.running_mean.copy_(bn.running_mean[keep])
            new.running_var.copy_(bn.running_var[keep])
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    new.train(bn.training)
    return new


def _apply_keep(model: nn.Module, links: list[_Link], keeps: list[torch.Tensor]) -> None:
    """Cut ``model`` IN PLACE so that link i keeps the units ``keeps[i]`` (sorted indices)."""
    previous: torch.Tensor | None = None
    for link, keep in zip(links, keeps):
        slicer = _slice_linear if isinstance(link.producer, nn.Linear) else _slice_conv
        new = slicer(link.producer, keep, previous)
        new.train(link.producer.training)
        replace_submodule(model, link.path, new)
        if link.bn is not None:
            replace_submodule(model, link.bn_path, _slice_bn(link.bn, keep))
        previous = keep
    if previous is not None:
        model.head = _slice_linear(model.head, None, previous)
        model.num_features = len(previous)


def _pruned_spec(model: nn.Module, widths: list[int]) -> dict[str, Any]:
    spec = copy.deepcopy(getattr(model, "spec", None) or {})
    if not spec:
        return {}
    if isinstance(model, MLP):
        # an MLP with other hidden sizes is still an MLP: create_model(**spec) rebuilds it exactly
        return {**spec, "widths": list(widths), "depth": len(widths)}
    return {"name": spec["name"], "num_classes": spec["num_classes"], "in_shape": spec["in_shape"],
            "pruned_from": spec, "pruned_widths": list(widths)}


def structured_prune(model: nn.Module, keep_ratio: float, importance: str = "l1") -> nn.Module:
    """A smaller copy of a kdlab ``mlp`` or ``cnn`` keeping ``keep_ratio`` of the units of every hidden layer.

    For each hidden Linear (mlp) or Conv2d (cnn) with ``n`` units, the ``k = max(1, round_half_up(keep_ratio * n))``
    units of highest importance ``s_j = ||W[j, ...]||_1`` (``importance="l2"``: the L2 norm) are kept, in their
    original order, together with their bias and BN channel; the next layer (or the head) keeps the matching input
    columns / channels. Scores are computed on the unpruned weights of each layer ("independent" pruning in Li et
    al., "Pruning Filters for Efficient ConvNets", ICLR 2017). The head's outputs are never pruned. With
    ``keep_ratio=1`` the copy computes exactly the original function. The input model is not modified; masks of a
    magnitude-pruned input are baked into the copy.

    The result is a plain module of the same class that trains normally; ``count_params`` reports its size
    (:func:`pruned_param_count` predicts it without building). ``model.compression`` records the method, ratio,
    source spec and kept unit indices. ``spec``: a pruned mlp is an mlp with explicit ``widths``, so
    ``create_model(**spec)`` rebuilds it. A pruned cnn has per-layer channel counts that the cnn factory cannot
    express: its spec is ``{"name", "num_classes", "in_shape", "pruned_from": <source spec>, "pruned_widths":
    [units per conv]}``, which ``create_model`` does NOT accept; rebuild it with :func:`build_pruned`.
    """
    keep_ratio = _check_keep_ratio(keep_ratio)
    if importance not in IMPORTANCES:
        raise ValueError(f"importance={importance!r} is not allowed; allowed: {', '.join(IMPORTANCES)}")
    pruned = copy.deepcopy(model)
    remove_pruning(pruned)
    links = _chain(pruned)
    keeps = []
    for link in links:
        scores = _scores(link, importance)
        k = _kept_count(keep_ratio, len(scores))
        # stable sort on the negated score: highest first, the earlier unit among ties
        top = torch.sort(-scores, stable=True).indices[:k]
        keeps.append(torch.sort(top).values.to(link.producer.weight.device))
    widths_before = [_units(link) for link in links]
    _apply_keep(pruned, links, keeps)
    widths = [len(k) for k in keeps]
    source_spec = copy.deepcopy(getattr(model, "spec", None) or {})
    if hasattr(pruned, "spec"):
        pruned.spec = _pruned_spec(model, widths)
    pruned.compression = {
        "method": "structured_prune", "keep_ratio": keep_ratio, "importance": importance,
        "source_spec": source_spec, "widths_before": widths_before, "widths_after": widths,
        "kept": {link.path: keep.tolist() for link, keep in zip(links, keeps)},
        "params_before": count_params(model), "params_after": count_params(pruned),
    }
    return pruned


def _chain_params(model: nn.Module, links: list[_Link], widths: list[int]) -> int:
    """Parameters of the links and the head when link i has ``widths[i]`` units (everything else unchanged).

    Link i with ``c_i`` units reading ``c_(i-1)`` inputs holds ``c_i c_(i-1) a_i`` weights (``a_i`` = kernel area,
    1 for Linear), ``c_i`` biases if it has a bias and ``2 c_i`` BN scale/shift values if affine BN follows; the
    head holds ``C c_L`` weights plus ``C`` biases.
    """
    total = 0
    fan_in = links[0].producer.weight.shape[1] if links else model.head.in_features
    for link, c in zip(links, widths):
        weight = link.producer.weight
        area = weight[0, 0].numel()
        total += c * fan_in * area + (c if link.producer.bias is not None else 0)
        if link.bn is not None and link.bn.affine:
            total += 2 * c
        fan_in = c
    head = model.head
    return total + head.out_features * fan_in + (head.out_features if head.bias is not None else 0)


def pruned_param_count(model: nn.Module, keep_ratio: float) -> int:
    """``count_params(structured_prune(model, keep_ratio))`` computed from the layer shapes, without pruning."""
    keep_ratio = _check_keep_ratio(keep_ratio)
    links = _chain(model)
    full = [_units(link) for link in links]
    rest = count_params(model) - _chain_params(model, links, full)
    return rest + _chain_params(model, links, [_kept_count(keep_ratio, n) for n in full])


def structured_prune_to_budget(model: nn.Module, target_params: int,
                               importance: str = "l1") -> tuple[nn.Module, dict[str, Any]]:
    """Structured-prune with the largest ``keep_ratio`` whose model has at most ``target_params`` parameters.

    The pruned size is a non-decreasing step function of ``keep_ratio``, so bisection on ``keep_ratio`` in (0, 1]
    (60 steps, sizes computed by :func:`pruned_param_count`) finds the largest ratio that fits. Returns the pruned
    model and ``{"keep_ratio", "target_params", "params_before", "params_after", "widths_before",
    "widths_after"}``. ValueError when even one unit per layer exceeds the budget.
    """
    if isinstance(target_params, bool) or not isinstance(target_params, numbers.Integral) or target_params < 1:
        raise ValueError(f"target_params={target_params!r} is not allowed; allowed: an integer >= 1")
    links = _chain(model)
    before = count_params(model)
    if before <= target_params:
        ratio = 1.0
    else:
        smallest = pruned_param_count(model, 2.0 ** -_BISECTION_STEPS)
        if smallest > target_params:
            raise ValueError(f"target_params={target_params} is not reachable by structured pruning of this "
                             f"{_family(model)}: one unit per layer already needs {smallest}; allowed: >= {smallest}")
        lo, hi = 0.0, 1.0  # invariant: size(lo) <= target (in the limit lo -> 0), size(hi) > target
        for _ in range(_BISECTION_STEPS):
            mid = (lo + hi) / 2
            if pruned_param_count(model, mid) <= target_params:
                lo = mid
            else:
                hi = mid
        ratio = lo if lo > 0 else 2.0 ** -_BISECTION_STEPS
    pruned = structured_prune(model, ratio, importance)
    return pruned, {"keep_ratio": ratio, "target_params": int(target_params), "params_before": before,
                    "params_after": count_params(pruned), "widths_before": [_units(link) for link in links],
                    "widths_after": pruned.compression["widths_after"]}


@register_spec_builder("pruned_from")
def build_pruned(spec: dict[str, Any]) -> nn.Module:
    """Rebuild the architecture of a structured-pruned model from its spec (weights are placeholders: load them).

    A spec without ``"pruned_from"`` is a plain kdlab spec (a pruned mlp) and goes to ``create_model``. Otherwise
    the source model is built from ``spec["pruned_from"]`` (recursively) and cut to ``spec["pruned_widths"]``.
    """
    if "pruned_from" not in spec:
        return model_from_spec(spec)
    base = model_from_spec(spec["pruned_from"])
    links = _chain(base)
    widths = spec["pruned_widths"]
    if len(widths) != len(links) or not all(1 <= w <= _units(link) for w, link in zip(widths, links)):
        raise ConfigError(f"pruned_widths={widths!r} does not fit the {len(links)} prunable layers of "
                          f"'{_family(base)}' (widths {[_units(link) for link in links]}); "
                          f"allowed: one width per layer, each between 1 and the source width")
    device = next(base.parameters()).device
    _apply_keep(base, links, [torch.arange(w, device=device) for w in widths])
    base.spec = copy.deepcopy(spec)
    return base
