"""Compression baselines to compare with distillation at equal parameter budgets.

- ``pruning``: unstructured magnitude pruning with masks (Han et al., NeurIPS 2015) and structured neuron / filter
  pruning of the mlp and cnn families (Li et al., ICLR 2017), each with a helper that lands at or below a budget.
- ``lowrank``: truncated-SVD factorization of Linear and Conv2d layers (Eckart-Young; Denton et al., NeurIPS 2014),
  per layer by energy or parameter fraction, or for a whole model by a shared energy threshold under a budget.

Compressed models are ordinary modules that train with the usual loop. Their specs name the source model and what
was cut (``pruned_from`` + widths, ``lowrank_from`` + ranks); importing this package registers both with
:func:`kdlab.models.register_spec_builder`, so :func:`kdlab.models.model_from_spec` and ``load_model_weights``
rebuild a compressed model from its spec or weights file.
"""

from __future__ import annotations

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


__all__ = [
    "build_lowrank",
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
