"""What advise measures about each candidate teacher before the pilot ranks them.

On the student's training inputs (the images the student will be distilled on): accuracy, ECE, and the dark-knowledge
statistics over temperatures (derived average and derived std of the non-target probabilities; Fan, Li, Zhan,
"Exploring Dark Knowledge under Various Teacher Capacities and Addressing Capacity Mismatch", FCS 2026, via
:func:`kdlab.analysis.profile.profile_model`); the teacher's own validation accuracy; and its class affinity.

Two affinity checks follow. Between teachers: Spearman's rho of their affinity matrices' off-diagonal entries (normal
teachers of one task rank wrong classes alike). Against a *reference*, a normally trained model of the task (the
pilot's CE-only student): the same rho with a percentile bootstrap interval over the training images. A teacher whose
interval lies wholly below ``affinity_floor`` is flagged as looking deliberately undistillable: a nasty teacher (Ma et
al., "Undistillable: Making A Nasty Teacher That CANNOT Teach Students", ICLR 2021) is trained to spread its
wrong-class mass against the normal ranking, which is the audit's affinity signal (reports/nasty). The flag is
three-valued: true when the whole interval is below the floor, false when it is wholly at or above, null otherwise.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..analysis import affinity_consistency
from ..analysis.affinity import spearman_correlation
from ..analysis.profile import profile_model
from ..analysis.undistillable import resample_weights
from ..analysis.verdict import Rule, decide
from ..models import predict_logits

def nasty_rule(floor: float) -> Rule:
    """The declared rule of the nasty-teacher flag: Spearman rho (teacher vs reference affinity) < ``floor``."""
    return Rule("<", float(floor))


def affinity_from_probabilities(probs: torch.Tensor, labels: torch.Tensor, num_classes: int,
                                weights: torch.Tensor | None = None) -> torch.Tensor:
    """The class-affinity matrix from per-sample probabilities [N, C] (float64), optionally weighted per sample.

    S[i, j] = sum_{n: y_n = i} w_n p_nj / sum_{n: y_n = i} w_n;  A[i, j] = S[i, j] / sum_{k != i} S[i, k] (j != i),
    A[i, i] = 0; a class without (weighted) samples gets a row of NaN. With w = 1 this is
    :class:`kdlab.analysis.affinity.AffinityAccumulator` (Fan, Li, Zhan, FCS 2026)."""
    w = torch.ones(len(labels), dtype=torch.float64) if weights is None else weights.to(torch.float64)
    onehot = torch.nn.functional.one_hot(labels.long(), num_classes).to(torch.float64)  # [N, C]
    sums = (onehot * w[:, None]).T @ probs  # [C, C]: row i sums the weighted probabilities of class-i samples
    off = sums.clone()
    off.fill_diagonal_(0.0)
    totals = off.sum(dim=1, keepdim=True)
    return torch.where(totals > 0, off / totals, torch.full_like(off, math.nan))


def _off_diagonal(a: torch.Tensor) -> np.ndarray:
    c = a.shape[0]
    mask = ~torch.eye(c, dtype=torch.bool)
    return a[mask].numpy()


def affinity_agreement(teacher_probs: torch.Tensor, reference_probs: torch.Tensor, labels: torch.Tensor,
                       num_classes: int, num_bootstrap: int = 200, confidence: float = 0.95,
                       seed: int = 0) -> dict[str, Any]:
    """Spearman's rho between the off-diagonal affinity entries of a teacher and a reference, with a percentile
    bootstrap interval: each replicate redraws the N images with replacement (the same draw for both models) and
    recomputes both affinity matrices (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13)."""
    rho = spearman_correlation(_off_diagonal(affinity_from_probabilities(teacher_probs, labels, num_classes)),
                               _off_diagonal(affinity_from_probabilities(reference_probs, labels, num_classes)))
    weights = resample_weights(len(labels), num_bootstrap, torch.Generator().manual_seed(seed))
    replicates = []
    for w in weights:
        a = affinity_from_probabilities(teacher_probs, labels, num_classes, w)
        b = affinity_from_probabilities(reference_probs, labels, num_classes, w)
        xa, xb = _off_diagonal(a), _off_diagonal(b)
        keep = ~(np.isnan(xa) | np.isnan(xb))
        value = spearman_correlation(xa[keep], xb[keep]) if keep.sum() > 2 else math.nan
        if not math.isnan(value):
            replicates.append(value)
    if not replicates:
        return {"spearman": rho, "low": math.nan, "high": math.nan, "replicates": 0, "confidence": confidence}
    low, high = np.quantile(replicates, [(1 - confidence) / 2, (1 + confidence) / 2])
    return {"spearman": rho, "low": float(low), "high": float(high), "replicates": len(replicates),
            "confidence": confidence}


def _probabilities(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(predict_logits(model, x).to(torch.float64), dim=-1)


def profile_teachers(teachers: Mapping[str, nn.Module], reference: nn.Module | None, train_x: torch.Tensor,
                     train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor, num_classes: int,
                     temperatures: Sequence[float], affinity_floor: float, num_bootstrap: int,
                     reference_min_accuracy: float = 0.5) -> dict[str, Any]:
    """Each teacher's profile on the student's training inputs (module docstring), the pairwise affinity
    consistency between teachers, and, with a reference, each teacher's affinity agreement and nasty-teacher flag.

    Precondition of the flag: a reference whose validation accuracy reaches ``reference_min_accuracy`` (a model that
    has not learned the task has no normal affinity to compare with); without it the flag is null and
    ``flag_not_applicable`` says why. Returns ``{"teachers": {label: {...}}, "consistency": {"a|b": rho},
    "reference_val_accuracy", "flag_not_applicable", "affinity_floor"}``."""
    profiles: dict[str, Any] = {}
    affinities: dict[str, torch.Tensor] = {}
    reference_probs, reference_acc, not_applicable = None, None, None
    if reference is None:
        not_applicable = "no CE-only student was trained (no reference model)"
    else:
        reference_acc = float((predict_logits(reference, val_x).argmax(-1) == val_y).double().mean())
        if reference_acc < reference_min_accuracy:
            not_applicable = (f"the CE-only student (the reference) reached {100 * reference_acc:.1f}% validation "
                              f"accuracy, below {100 * reference_min_accuracy:.0f}%: it has no normal affinity yet")
        else:
            reference_probs = _probabilities(reference, train_x)
    rule = nasty_rule(affinity_floor)
    for label, model in teachers.items():
        metrics, affinity = profile_model(model, train_x, train_y, num_classes, temperatures)
        val_pred = predict_logits(model, val_x).argmax(dim=-1)
        per_t = metrics["per_temperature"]
        entry: dict[str, Any] = {
            "params": sum(p.numel() for p in model.parameters()),
            "train_accuracy": metrics["accuracy"],
            "val_accuracy": float((val_pred == val_y).double().mean()),
            "ece": metrics["ece"],
            "derived_average": {t: v["derived_average"] for t, v in per_t.items()},
            "derived_std": {t: v["derived_std"] for t, v in per_t.items()},
        }
        if reference_probs is not None:
            agreement = affinity_agreement(_probabilities(model, train_x), reference_probs, train_y, num_classes,
                                           num_bootstrap)
            entry["reference_agreement"] = agreement
            entry["nasty"] = decide(rule, agreement["low"], agreement["high"])
        else:
            entry["nasty"] = None
        profiles[label] = entry
        affinities[label] = affinity
    labels = list(teachers)
    consistency = {f"{a}|{b}": affinity_consistency(affinities[a], affinities[b])["spearman"]
                   for i, a in enumerate(labels) for b in labels[i + 1:]}
    return {"teachers": profiles, "consistency": consistency, "reference_val_accuracy": reference_acc,
            "flag_not_applicable": not_applicable, "affinity_floor": affinity_floor}
