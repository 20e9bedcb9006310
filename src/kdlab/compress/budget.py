"""Compression to a parameter budget: the options, the three methods behind one call, and sizing a model family.

- ``magnitude``: unstructured magnitude pruning to the budget counted in non-zero parameters, masks kept while
  fine-tuning (Han, Pool, Tran & Dally, "Learning both Weights and Connections for Efficient Neural Networks",
  NeurIPS 2015);
- ``structured``: neuron pruning by the L1 norm of each unit's weights to a smaller dense model (Li, Kadav, Durdanovic,
  Samet & Graf, "Pruning Filters for Efficient ConvNets", ICLR 2017);
- ``lowrank``: truncated-SVD factorisation of the layers with one shared energy threshold (Denton, Zaremba, Bruna,
  LeCun & Fergus, "Exploiting Linear Structure Within Convolutional Networks for Efficient Evaluation", NeurIPS 2014).
"""

from __future__ import annotations

import copy
from typing import Literal

from pydantic import Field

from ..config import Component, Section
from ..errors import ConfigError
from ..models import count_params, create_model
from .lowrank import lowrank_to_budget
from .pruning import magnitude_prune_to_budget, nonzero_params, structured_prune_to_budget

COMPRESSION_METHODS = ("magnitude", "structured", "lowrank")


class CompressionOptions(Section):
    # global magnitude pruning ranks the classifier's weights with all others (the threshold decides)
    """How each compression method compresses, and the loss compressed models are fine-tuned with."""
    magnitude_prune_head: bool = True
    structured_importance: Literal["l1", "l2"] = "l1"
    # a shared energy threshold would cut the classifier (<1% of the parameters, ~flat spectrum) to rank 1-4
    lowrank_factorize_head: bool = False
    # the loss compressed models are fine-tuned with (ce; or kd from the same teacher)
    finetune_loss: Component = Field(default_factory=lambda: Component(name="ce"))


def size_to_budget(family: Component, size_option: str, target_params: int, num_classes: int,
                   in_shape: tuple[int, ...]) -> tuple[int, int]:
    """The largest integer ``size_option`` of ``family`` whose model has at most ``target_params`` parameters.

    Parameters grow with the size option (width), so doubling finds an upper end and bisection the largest size
    that fits. Returns ``(size, params)``; ConfigError when size 1 already exceeds the budget.
    """
    def params(size: int) -> int:
        return count_params(create_model(family.name, num_classes, in_shape, **{**family.options, size_option: size}))

    if params(1) > target_params:
        raise ConfigError(f"budget of {target_params:,} parameters is below the smallest {family.name} with "
                          f"{size_option}=1 ({params(1):,} parameters)")
    lo, hi = 1, 2
    while params(hi) <= target_params:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # invariant: params(lo) <= target < params(hi)
        mid = (lo + hi) // 2
        if params(mid) <= target_params:
            lo = mid
        else:
            hi = mid
    return lo, params(lo)


def compress_to_budget(method: str, teacher, target_params: int, options: CompressionOptions):
    """A compressed copy of ``teacher`` with at most ``target_params`` parameters (``magnitude``: non-zero ones).

    Returns ``(model, info)`` where ``info`` is a small JSON-able description: the method, the ``options`` it used
    (part of the fine-tuning run's identity) and the result (sparsity, widths or ranks). The teacher is not modified.
    ValueError / NotImplementedError when the method cannot reach the budget.
    """
    if method == "magnitude":
        model = copy.deepcopy(teacher)
        report = magnitude_prune_to_budget(model, target_params, prune_head=options.magnitude_prune_head)
        info = {"method": method, "options": {"prune_head": options.magnitude_prune_head},
                "sparsity": report["overall"], "nonzero_params": nonzero_params(model),
                "layer_sparsity": {k: v["sparsity"] for k, v in report["layers"].items()}}
    elif method == "structured":
        model, report = structured_prune_to_budget(teacher, target_params, importance=options.structured_importance)
        info = {"method": method, "options": {"importance": options.structured_importance},
                "keep_ratio": report["keep_ratio"], "widths": report["widths_after"], "params": report["params_after"]}
    elif method == "lowrank":
        model, report = lowrank_to_budget(teacher, target_params, factorize_head=options.lowrank_factorize_head)
        info = {"method": method, "options": {"factorize_head": options.lowrank_factorize_head},
                "energy": report["energy"], "params": report["params_after"],
                "ranks": {row["name"]: row["rank"] for row in report["layers"] if row["replaced"]}}
    else:
        raise ValueError(f"method={method!r} is not a compression method; allowed: {', '.join(COMPRESSION_METHODS)}")
    return model, info
