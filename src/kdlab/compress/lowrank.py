"""Low-rank factorization baseline: replace a weight matrix by the product of two thin ones (truncated SVD).

With the SVD ``W = U S V^T`` (singular values ``s_1 >= s_2 >= ...``), the rank-k truncation
``W_k = U_k S_k V_k^T`` is the best rank-k approximation in the Frobenius norm, with error
``||W - W_k||_F = sqrt(sum_{i>k} s_i^2)`` (Eckart & Young, "The approximation of one matrix by another of lower
rank", Psychometrika, 1936). Applied to the layers of a trained network this is the low-rank compression of
Denton, Zaremba, Bruna, LeCun & Fergus, "Exploiting Linear Structure Within Convolutional Networks for Efficient
Evaluation", NeurIPS 2014 (followed by fine-tuning, which is the training loop's job).

Split of the factors: ``first = sqrt(S_k) V_k^T`` and ``second = U_k sqrt(S_k)``, so ``second @ first = W_k``. Any
split gives the same product; the square-root split gives both factors the same singular values ``sqrt(s_i)``, so
neither factor is much larger than the other and one learning rate suits both during fine-tuning.

Parameters of a layer with an ``m x n`` weight matrix (n = inputs, for a conv ``in * kh * kw``) and b biases:
``m n + b`` dense, ``k (m + n) + b`` at rank k -- a saving only while ``k < m n / (m + n)``.
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

from ..errors import ConfigError
from ..models.complexity import count_params
from ..models.factory import model_from_spec, register_spec_builder
from .modules import classifier_head, replace_submodule

__all__ = [
    "build_lowrank",
    "choose_rank",
    "factorize_conv",
    "factorize_linear",
    "lowrank_model",
    "lowrank_to_budget",
]

DEFAULT_INCLUDE: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)

# Cumulative energies are compared with a relative slack: sum(s_1..s_k)^2 may differ from the requested
# fraction of the total in the last bits only because of floating-point summation order.
_ENERGY_RTOL = 1e-12


def _check_rank(rank: Any, full: int, owner: str) -> int:
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or not 1 <= rank <= full:
        raise ValueError(f"{owner}: rank={rank!r} is not allowed; allowed: an integer in [1, {full}] "
                         f"(min of the weight matrix's dimensions)")
    return int(rank)


def _svd_factors(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first, second)`` with ``first = sqrt(S_k) V_k^T`` [k, n] and ``second = U_k sqrt(S_k)`` [m, k], computed in
    float64 and returned in the matrix's dtype."""
    u, s, vh = torch.linalg.svd(matrix.detach().to(torch.float64), full_matrices=False)
    root = s[:rank].sqrt()
    first = root[:, None] * vh[:rank]
    second = u[:, :rank] * root[None, :]
    return first.to(matrix.dtype), second.to(matrix.dtype)


def factorize_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    """``Linear(in, out)`` -> ``Sequential(Linear(in, rank, bias=False), Linear(rank, out))`` computing ``W_k x + b``.

    ``W = U S V^T`` truncated to ``rank``: first weight ``sqrt(S_k) V_k^T``, second weight ``U_k sqrt(S_k)``, the
    original bias on the second. ``||W - W_k||_F = sqrt(sum of the discarded s_i^2)`` (Eckart-Young); at full rank
    the layer is reproduced up to rounding.
    """
    if not isinstance(layer, nn.Linear):
        raise ValueError(f"factorize_linear: layer={type(layer).__name__} is not allowed; allowed: an nn.Linear")
    weight = layer.weight
    rank = _check_rank(rank, min(weight.shape), "factorize_linear")
    first_w, second_w = _svd_factors(weight, rank)
    first = nn.Linear(layer.in_features, rank, bias=False, device=weight.device, dtype=weight.dtype)
    second = nn.Linear(rank, layer.out_features, bias=layer.bias is not None, device=weight.device,
                       dtype=weight.dtype)
    with torch.no_grad():
        first.weight.copy_(first_w)
        second.weight.copy_(second_w)
        if layer.bias is not None:
            second.bias.copy_(layer.bias.detach())
    return nn.Sequential(first, second).train(layer.training)


def factorize_conv(layer: nn.Conv2d, rank: int) -> nn.Sequential:
    """``Conv2d(in, out, kh x kw)`` -> ``Sequential(Conv2d(in, rank, kh x kw, bias=False), Conv2d(rank, out, 1x1))``.

    The weight ``[out, in, kh, kw]`` is read as the matrix ``W`` [out, in*kh*kw] (row o = filter o). Truncated SVD
    gives ``rank`` basis filters ``sqrt(S_k) V_k^T`` reshaped to [rank, in, kh, kw] -- a conv with the original
    stride, padding, dilation and padding mode -- and a 1x1 conv with weight ``U_k sqrt(S_k)`` [out, rank, 1, 1] and
    the original bias that mixes them. Since a convolution is linear in its weight, the pair computes the conv with
    weight ``W_k``; at full rank ``min(out, in*kh*kw)`` it equals the original up to rounding. Only ``groups=1``.
    """
    if not isinstance(layer, nn.Conv2d):
        raise ValueError(f"factorize_conv: layer={type(layer).__name__} is not allowed; allowed: an nn.Conv2d")
    if layer.groups != 1:
        raise ValueError(f"factorize_conv: a conv with groups={layer.groups} is not allowed; allowed: groups=1 "
                         f"(a grouped conv's weight is not one matrix over all input channels)")
    weight = layer.weight
    out_ch, in_ch, kh, kw = weight.shape
    rank = _check_rank(rank, min(out_ch, in_ch * kh * kw), "factorize_conv")
    first_w, second_w = _svd_factors(weight.reshape(out_ch, -1), rank)
    first = nn.Conv2d(in_ch, rank, (kh, kw), stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                      bias=False, padding_mode=layer.padding_mode, device=weight.device, dtype=weight.dtype)
    second = nn.Conv2d(rank, out_ch, 1, bias=layer.bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        first.weight.copy_(first_w.reshape(rank, in_ch, kh, kw))
        second.weight.copy_(second_w.reshape(out_ch, rank, 1, 1))
        if layer.bias is not None:
            second.bias.copy_(layer.bias.detach())
    return nn.Sequential(first, second).train(layer.training)


def _check_energy(energy: Any) -> float:
    if isinstance(energy, bool) or not isinstance(energy, numbers.Real) or not 0.0 < energy <= 1.0:
        raise ValueError(f"energy={energy!r} is not allowed; allowed: a fraction of sum s_i^2 to keep in (0, 1]")
    return float(energy)


def _check_count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r} is not allowed; allowed: an integer >= {minimum}")
    return int(value)


def choose_rank(singular_values: Sequence[float] | torch.Tensor, energy: float | None = None,
                max_params: int | None = None, *, params_per_rank: int | None = None, fixed_params: int = 0) -> int:
    """Rank for a layer from its singular values.

    - ``energy``: the smallest ``k >= 1`` with ``sum_{i<=k} s_i^2 >= energy * sum_i s_i^2`` (s sorted descending).
    - ``max_params``: the largest ``k`` with ``fixed_params + k * params_per_rank <= max_params`` (for a layer with
      an ``m x n`` matrix, ``params_per_rank = m + n`` and ``fixed_params`` = its bias count), at most ``len(s)``;
      0 when not even rank 1 fits.
    - both: the smaller of the two ranks (enough energy, but never over budget). At least one must be given.
    """
    s = torch.as_tensor(singular_values, dtype=torch.float64).flatten()
    if s.numel() == 0 or not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise ValueError("singular_values must be a non-empty sequence of finite numbers >= 0")
    if energy is None and max_params is None:
        raise ValueError("choose_rank needs energy (a fraction in (0, 1]) or max_params (an integer), got neither")
    rank = s.numel()
    if energy is not None:
        energy = _check_energy(energy)
        cumulative = torch.cumsum(torch.sort(s, descending=True).values.pow(2), 0)
        total = float(cumulative[-1])  # the same summation as the partial sums, so energy=1 reaches it exactly
        if total > 0:
            enough = cumulative >= energy * total * (1 - _ENERGY_RTOL)
            rank = min(rank, int(torch.nonzero(enough)[0]) + 1)
        else:
            rank = 1  # a zero matrix: rank 1 already reproduces it exactly
    if max_params is not None:
        max_params = _check_count("max_params", max_params, 0)
        per_rank = _check_count("params_per_rank", params_per_rank, 1)
        fixed_params = _check_count("fixed_params", fixed_params, 0)
        rank = min(rank, max(0, (max_params - fixed_params) // per_rank))
    return rank


# ---------------------------------------------------------------------------------------------
# Whole models
# ---------------------------------------------------------------------------------------------


@dataclass
class _Layer:
    """A layer that may be factorized: its matrix shape ``m x n``, bias count and singular values."""

    name: str
    module: nn.Module
    rows: int
    cols: int
    bias: int
    singular_values: torch.Tensor

    @property
    def dense_params(self) -> int:
        return self.rows * self.cols + self.bias

    def params_at(self, rank: int) -> int:
        return rank * (self.rows + self.cols) + self.bias

    def energy_at(self, rank: int) -> float:
        power = self.singular_values.pow(2)
        total = float(power.sum())
        return float(power[:rank].sum()) / total if total > 0 else 1.0


def _candidates(model: nn.Module, include: Sequence[type[nn.Module]], factorize_head: bool) -> tuple[
        list[_Layer], list[dict[str, Any]]]:
    """Layers that can be factorized (with their singular values), and report rows for the ones that cannot."""
    if isinstance(include, type):
        include = (include,)
    include = tuple(include)
    if not include or not all(isinstance(t, type) and issubclass(t, (nn.Linear, nn.Conv2d)) for t in include):
        raise ValueError(f"include={include!r} is not allowed; allowed: a non-empty tuple of nn.Linear and/or "
                         f"nn.Conv2d (sub)classes")
    head = None if factorize_head else classifier_head(model, include)
    layers, skipped = [], []
    for name, module in model.named_modules():
        if not isinstance(module, include):
            continue
        params = count_params(module)
        if module is head:
            skipped.append({"name": name, "replaced": False, "reason": "classifier head (factorize_head=False)",
                            "params_before": params, "params_after": params})
            continue
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            skipped.append({"name": name, "replaced": False, "reason": f"grouped conv (groups={module.groups})",
                            "params_before": params, "params_after": params})
            continue
        matrix = module.weight.detach().flatten(1)
        layers.append(_Layer(name, module, matrix.shape[0], matrix.shape[1],
                             module.bias.numel() if module.bias is not None else 0,
                             torch.linalg.svdvals(matrix.to(torch.float64)).cpu()))
    return layers, skipped


def _rank_for(layer: _Layer, energy: float | None, param_budget: float | None) -> int:
    max_params = None if param_budget is None else math.floor(param_budget * layer.dense_params)
    return choose_rank(layer.singular_values, energy, max_params, params_per_rank=layer.rows + layer.cols,
                       fixed_params=layer.bias)


def _decide(layer: _Layer, rank: int, min_params_saving: bool) -> tuple[bool, str]:
    if rank == 0:
        return False, "budget below rank 1"
    if min_params_saving and layer.params_at(rank) >= layer.dense_params:
        limit = layer.rows * layer.cols / (layer.rows + layer.cols)
        return False, f"rank {rank} saves no parameters (needs rank < {limit:.1f})"
    return True, ""


def _build(model: nn.Module, layers: list[_Layer], ranks: list[int], min_params_saving: bool,
           skipped: list[dict[str, Any]], settings: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """Deep-copy ``model``, factorize ``layers[i]`` at ``ranks[i]`` where worthwhile, and write the report."""
    new = copy.deepcopy(model)
    rows, chosen = list(skipped), {}
    for layer, rank in zip(layers, ranks):
        replace, reason = _decide(layer, rank, min_params_saving)
        row = {"name": layer.name, "replaced": replace, "reason": reason, "rank": rank,
               "full_rank": layer.singular_values.numel(), "params_before": layer.dense_params,
               "params_after": layer.params_at(rank) if replace else layer.dense_params,
               "energy_kept": layer.energy_at(rank) if replace else 1.0}
        rows.append(row)
        if replace:
            module = new.get_submodule(layer.name)
            factorize = factorize_linear if isinstance(module, nn.Linear) else factorize_conv
            replace_submodule(new, layer.name, factorize(module, rank))
            chosen[layer.name] = rank
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    rows.sort(key=lambda r: order[r["name"]])
    spec = copy.deepcopy(getattr(model, "spec", None) or {})
    if chosen and spec:
        new.spec = {"name": spec["name"], "num_classes": spec["num_classes"], "in_shape": spec["in_shape"],
                    "lowrank_from": spec, "ranks": dict(chosen)}
    report = {**settings, "layers": rows, "params_before": count_params(model), "params_after": count_params(new)}
    new.compression = {"method": "lowrank", "source_spec": spec, "ranks": dict(chosen),
                       "params_before": report["params_before"], "params_after": report["params_after"], **settings}
    return new, report


def lowrank_model(model: nn.Module, energy: float | None = None, param_budget: float | None = None,
                  min_params_saving: bool = True, *, include: Sequence[type[nn.Module]] = DEFAULT_INCLUDE,
                  factorize_head: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """A copy of ``model`` whose Linear / Conv2d layers are replaced by truncated-SVD factor pairs.

    Per layer the rank is :func:`choose_rank` of its singular values with ``energy`` (keep that fraction of
    ``sum s_i^2``) and/or ``param_budget`` (a fraction in (0, 1] of the layer's own parameters that the factorized
    layer may use); at least one must be given. A layer is replaced only when the factorized pair has fewer
    parameters than the dense layer (``min_params_saving=True``; ``False`` replaces whenever the rank is >= 1).
    The classifier head (``model.head``, else the last included layer) is kept unless ``factorize_head=True``;
    grouped convs are kept. The input model is not modified.

    Returns ``(new_model, report)``; report = ``{"energy", "param_budget", "layers": [{"name", "replaced",
    "reason", "rank", "full_rank", "params_before", "params_after", "energy_kept"}], "params_before",
    "params_after"}`` (model totals by ``count_params``). When at least one layer was replaced, a kdlab model's spec
    becomes ``{"name", "num_classes", "in_shape", "lowrank_from": <source spec>, "ranks": {layer: rank}}``:
    ``create_model`` does NOT accept it; rebuild with :func:`build_lowrank`. State-dict keys of a replaced layer
    ``<name>.weight`` become ``<name>.0.weight`` and ``<name>.1.weight`` (``<name>.1.bias``).
    """
    if energy is None and param_budget is None:
        raise ValueError("lowrank_model needs energy (a fraction in (0, 1]) or param_budget (a fraction in (0, 1] "
                         "of each layer's parameters), got neither")
    if energy is not None:
        energy = _check_energy(energy)
    if param_budget is not None and (isinstance(param_budget, bool) or not isinstance(param_budget, numbers.Real)
                                     or not 0.0 < param_budget <= 1.0):
        raise ValueError(f"param_budget={param_budget!r} is not allowed; allowed: a fraction in (0, 1] of each "
                         f"layer's parameters")
    layers, skipped = _candidates(model, include, factorize_head)
    ranks = [_rank_for(layer, energy, param_budget) for layer in layers]
    return _build(model, layers, ranks, min_params_saving, skipped,
                  {"energy": energy, "param_budget": None if param_budget is None else float(param_budget)})


def lowrank_to_budget(model: nn.Module, target_params: int, *, include: Sequence[type[nn.Module]] = DEFAULT_INCLUDE,
                      factorize_head: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`lowrank_model` with the largest shared ``energy`` whose model has at most ``target_params`` parameters.

    Every layer gets the rank that keeps the same fraction ``energy`` of its ``sum s_i^2`` and is replaced only when
    that saves parameters, so the model size is a non-decreasing step function of ``energy`` that changes only at
    the layers' cumulative energy fractions ``sum_{i<=k} s_i^2 / sum_i s_i^2``. Binary search over those
    candidates finds the largest one that fits. Returns ``(model, report)`` as :func:`lowrank_model`, plus
    ``"target_params"``. ValueError when even rank 1 everywhere exceeds the budget.
    """
    target = _check_count("target_params", target_params, 1)
    layers, skipped = _candidates(model, include, factorize_head)
    before = count_params(model)
    fixed = before - sum(layer.dense_params for layer in layers)

    def size(energy: float) -> int:
        total = fixed
        for layer in layers:
            rank = _rank_for(layer, energy, None)
            total += min(layer.params_at(rank), layer.dense_params)
        return total

    if before <= target:
        energy = 1.0
        ranks = [layer.singular_values.numel() for layer in layers]
    else:
        smallest = fixed + sum(min(layer.params_at(1), layer.dense_params) for layer in layers)
        if smallest > target:
            raise ValueError(f"target_params={target} is not reachable by low-rank factorization: rank 1 in every "
                             f"eligible layer still needs {smallest}; allowed: >= {smallest}")
        candidates = sorted({float(c) for layer in layers
                             for c in torch.cumsum(layer.singular_values.pow(2), 0) / layer.singular_values.pow(2).sum()
                             if layer.singular_values.pow(2).sum() > 0})
        lo, hi = 0, len(candidates) - 1  # find the last candidate whose size fits; the first always does
        best = candidates[0]
        while lo <= hi:
            mid = (lo + hi) // 2
            if size(candidates[mid]) <= target:
                best, lo = candidates[mid], mid + 1
            else:
                hi = mid - 1
        energy = min(1.0, best)
        ranks = [_rank_for(layer, energy, None) for layer in layers]
    new, report = _build(model, layers, ranks, True, skipped, {"energy": energy, "param_budget": None})
    report["target_params"] = target
    return new, report


@register_spec_builder("lowrank_from")
def build_lowrank(spec: dict[str, Any]) -> nn.Module:
    """Rebuild the architecture of a low-rank model from its spec (weights are placeholders: load them).

    The source is built from ``spec["lowrank_from"]`` (itself a low-rank, structured-pruned or plain kdlab spec), then
    each layer named in ``spec["ranks"]`` is replaced by a factor pair of that rank.
    """
    base = model_from_spec(spec["lowrank_from"])
    for name, rank in spec["ranks"].items():
        try:
            module = base.get_submodule(name)
        except AttributeError:
            raise ConfigError(f"ranks names layer '{name}', which the source model does not have") from None
        factorize = factorize_linear if isinstance(module, nn.Linear) else factorize_conv
        parent, _, child = name.rpartition(".")
        setattr(base.get_submodule(parent) if parent else base, child, factorize(module, rank))
    base.spec = copy.deepcopy(spec)
    return base
