"""Compression baselines to compare with distillation at equal parameter budgets.

- ``pruning``: unstructured magnitude pruning with masks (Han et al., NeurIPS 2015) and structured neuron / filter
  pruning of the mlp and cnn families (Li et al., ICLR 2017), each with a helper that lands at or below a budget.
- ``lowrank``: truncated-SVD factorization of Linear and Conv2d layers (Eckart-Young; Denton et al., NeurIPS 2014),
  per layer by energy or parameter fraction, or for a whole model by a shared energy threshold under a budget.

Compressed models are ordinary modules that train with the usual loop. :func:`build_model` rebuilds the architecture
of any compressed kdlab model from its ``spec`` (a plain spec goes to ``create_model``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .lowrank import build_lowrank, choose_rank, factorize_conv, factorize_linear, lowrank_model, lowrank_to_budget
from .pruning import (
    build_pruned,
    layer_sparsity,
    magnitude_prune,
    magnitude_prune_to_budget,
    nonzero_params,
    pruned_param_count,
    remove_pruning,
    sparsity,
    structured_prune,
    structured_prune_to_budget,
)


def build_model(spec: dict[str, Any]) -> nn.Module:
    """Architecture of a (possibly compressed) kdlab model from its spec: low-rank, structured-pruned or plain."""
    return build_lowrank(spec) if "lowrank_from" in spec else build_pruned(spec)


__all__ = [
    "build_lowrank",
    "build_model",
    "build_pruned",
    "choose_rank",
    "factorize_conv",
    "factorize_linear",
    "layer_sparsity",
    "lowrank_model",
    "lowrank_to_budget",
    "magnitude_prune",
    "magnitude_prune_to_budget",
    "nonzero_params",
    "pruned_param_count",
    "remove_pruning",
    "sparsity",
    "structured_prune",
    "structured_prune_to_budget",
]
