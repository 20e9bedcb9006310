"""What each teacher of the capacity map offers its students: accuracy, dark knowledge, affinity, distance to Bayes.

For every teacher (family, size, seed) at every length of its family (docs/studies/capacity-map.md, "What each
teacher reports"): test, validation and training accuracy; on each of the students' labelled sets (what is
distilled) the dark-knowledge statistics of :mod:`kdlab.analysis.dark_knowledge` and the class-affinity matrix
(summarised by its rank consistency with the largest teacher of the same seed and length); test ECE. On the
synthetic task (``hierarchical_mixture``) also the distance to the exact Bayes posterior and the posterior's own
statistics as the reference (:func:`kdlab.analysis.bayes_distance.compare_with_bayes`), on the labelled sets and on
test. Description only: no verdict reads these numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..analysis import affinity_consistency, compare_with_bayes, profile_model
from ..config import TeacherConfig
from ..data import load_dataset
from ..distill import load_teacher
from ..models import predict_logits
from .capacity_map_grid import FamilyGrid, MapGrid
from .capacity_map_plan import teacher_epoch

__all__ = ["PROFILE_TEMPERATURES", "profile_teachers"]

PROFILE_TEMPERATURES: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
# affinity matrices are kept whole up to this many classes (Fashion-MNIST's 10x10); larger ones are summarised
MAX_STORED_AFFINITY = 10


def _splits(grid: MapGrid, family: FamilyGrid, train_subset: int | None):
    d = grid.datasets[family.dataset]
    return load_dataset(d["name"], data_dir=d.get("data_dir"), val_size=d.get("val_size", 5000),
                        seed=d.get("seed", 0), train_subset=train_subset, **d.get("options", {}))


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).double().mean())


def _dark_knowledge(metrics: dict[str, Any]) -> dict[str, Any]:
    per_t = metrics["per_temperature"]
    return {"accuracy": metrics["accuracy"], "inherent_variance": metrics["inherent_variance"],
            **{stat: {tau: v[stat] for tau, v in per_t.items()}
               for stat in ("derived_std", "derived_average", "nongt_entropy", "target_prob")}}


def _bayes(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor, mixture: Any) -> dict[str, Any]:
    c = compare_with_bayes(logits, mixture.log_joint(x), y, PROFILE_TEMPERATURES, superclass_of=mixture.superclass_of)
    return {key: c[key] for key in ("distance", "accuracy", "derived_std", "derived_average", "target_prob",
                                    "affinity", "in_superclass_share")}


def profile_teachers(grid: MapGrid, teacher_runs: Mapping[tuple[str, str, str, int], str]) -> list[dict[str, Any]]:
    """One record per (dataset, family, teacher, seed, length): the numbers of the module docstring.

    ``teacher_runs[(dataset, family, teacher label, seed)]``: the teacher's run directory.
    """
    records: list[dict[str, Any]] = []
    for family in grid.families:
        teacher_data = _splits(grid, family, family.teacher_train_subset)
        labelled = {n: _splits(grid, family, n).train for n in family.label_sizes}
        mixture = teacher_data.source_info.get("mixture")
        classes, shape = teacher_data.num_classes, teacher_data.in_shape
        for length in family.teacher_lengths:
            epoch = teacher_epoch(family, length)
            affinities: dict[tuple[str, int, int], torch.Tensor] = {}
            family_records = []
            for size in family.teachers:
                for seed in grid.teacher_seeds:
                    run = teacher_runs[(family.dataset, family.family, size.label, seed)]
                    model = load_teacher(TeacherConfig(run=run, epoch=epoch), classes, shape)
                    record: dict[str, Any] = {
                        "dataset": family.dataset, "family": family.family, "teacher": size.label, "seed": seed,
                        "length": length, "epoch": epoch, "params": sum(p.numel() for p in model.parameters()),
                        "run_dir": run}
                    test, _ = profile_model(model, teacher_data.test.x, teacher_data.test.y, classes,
                                            PROFILE_TEMPERATURES)
                    record["test_accuracy"], record["ece"] = test["accuracy"], test["ece"]
                    record["val_accuracy"] = _accuracy(predict_logits(model, teacher_data.val.x), teacher_data.val.y)
                    record["train_accuracy"] = _accuracy(predict_logits(model, teacher_data.train.x),
                                                         teacher_data.train.y)
                    record["labelled"] = {}
                    for n, split in labelled.items():
                        metrics, affinity = profile_model(model, split.x, split.y, classes, PROFILE_TEMPERATURES)
                        entry = _dark_knowledge(metrics)
                        affinities[(size.label, seed, n)] = affinity
                        if classes <= MAX_STORED_AFFINITY:
                            entry["affinity"] = affinity.tolist()
                        if mixture is not None:
                            entry["bayes"] = _bayes(predict_logits(model, split.x), split.x, split.y, mixture)
                        record["labelled"][str(n)] = entry
                    if mixture is not None:
                        record["bayes_test"] = _bayes(predict_logits(model, teacher_data.test.x),
                                                      teacher_data.test.x, teacher_data.test.y, mixture)
                    family_records.append(record)
            largest = family.teachers[-1].label
            for record in family_records:
                for n, entry in record["labelled"].items():
                    # how the teacher ranks the wrong classes against the largest teacher of its seed (Fan et al.)
                    other = affinities[(largest, record["seed"], int(n))]
                    mine = affinities[(record["teacher"], record["seed"], int(n))]
                    entry["affinity_vs_largest"] = {k: v for k, v in affinity_consistency(
                        mine, other, top_k=min(3, classes - 1)).items() if k in ("spearman", "kendall",
                                                                                  "topk_overlap")}
            records += family_records
    return records

