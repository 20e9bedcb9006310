"""One streamed pass of a model over a dataset: its dark-knowledge statistics and its class-affinity matrix."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..models.inference import model_device
from .affinity import AffinityAccumulator
from .dark_knowledge import DarkKnowledgeAccumulator


@torch.inference_mode()
def profile_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                  temperatures: Sequence[float] = (1.0, 2.0, 4.0, 8.0), batch_size: int = 1024,
                  affinity_temperature: float = 1.0) -> tuple[dict[str, Any], torch.Tensor]:
    """Dark-knowledge metrics (see ``dark_knowledge``) and affinity matrix A (see ``affinity``) of ``model`` on (x, y).

    The model runs batch by batch in eval mode (restored afterwards); only running sums are kept, so memory does not
    grow with the dataset.
    """
    dark = DarkKnowledgeAccumulator(num_classes, temperatures)
    affinity = AffinityAccumulator(num_classes, temperature=affinity_temperature)
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(x), batch_size):
            logits = model(x[i:i + batch_size].to(device)).float()
            targets = y[i:i + batch_size]
            dark.update(logits, targets)
            affinity.update(logits, targets)
    finally:
        model.train(was_training)
    return dark.compute(), affinity.compute()


def teacher_report_fields(distill_set: dict[str, Any], test: dict[str, Any]) -> dict[str, Any]:
    """The dark-knowledge numbers a study reports for a teacher, from the metrics of :func:`profile_model` on the
    distillation set and on the test set: accuracy on the distillation set, derived std / derived average /
    non-GT entropy / target probability per temperature, inherent variance, and test ECE."""
    per_t = distill_set["per_temperature"]
    return {
        "train_accuracy_distill_set": distill_set["accuracy"],
        "derived_std": {k: v["derived_std"] for k, v in per_t.items()},
        "derived_average": {k: v["derived_average"] for k, v in per_t.items()},
        "nongt_entropy": {k: v["nongt_entropy"] for k, v in per_t.items()},
        "target_prob": {k: v["target_prob"] for k, v in per_t.items()},
        "inherent_variance": distill_set["inherent_variance"],
        "ece": test["ece"],
    }
