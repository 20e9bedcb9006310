"""Undistillable classes: per-class distillation gain over paired seeds, with an interval, and what goes wrong there.

Zhu, Liu, Xu, Liu, Meng, Wang, Ou, Tang, "Teach Less, Learn More: On the Undistillable Classes in Knowledge
Distillation", NeurIPS 2022: KD raises overall accuracy while the student gets *worse* on some classes than a
student trained on labels alone; the teacher's knowledge of those classes does not transfer.

Everything here is a pure function of tensors of predicted classes and labels, so it is testable on hand-built
data. Conventions:

- ``kd_predictions`` / ``ce_predictions``: integer [S, N], row s = the predicted class of every evaluation sample
  by the student trained with seed s (same seed = same initial weights and batch order for both methods, so
  row s of one and row s of the other are a *pair*).
- ``labels``: integer [N], the true classes of the N evaluation samples (the same samples for every seed).
- per-class accuracy a_s(c) = (1 / n_c) * sum_{i : y_i = c} [pred_s,i = c], n_c = #{i : y_i = c}.
- per-class distillation gain of seed s: g_s(c) = a_s^KD(c) - a_s^CE(c); the gain is mean_s g_s(c).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from .dark_knowledge import DarkKnowledgeAccumulator

__all__ = [
    "INTERVAL_METHODS",
    "ClassGain",
    "class_gain",
    "confusion_matrix",
    "confusion_shift",
    "per_class_accuracy",
    "shift_destinations",
    "teacher_class_profile",
    "undistillable_classes",
]

INTERVAL_METHODS = ("t", "bootstrap")


# ---------------------------------------------------------------------------------------------- inputs


def resample_weights(n: int, num_bootstrap: int, generator: torch.Generator) -> torch.Tensor:
    """Bootstrap weights [num_bootstrap, n]: row b counts how often each of n items is drawn (n draws with
    replacement) divided by n, so ``weights @ values`` is the resampled mean of every replicate at once."""
    draws = torch.randint(0, n, (num_bootstrap, n), generator=generator)
    return torch.zeros(num_bootstrap, n, dtype=torch.float64).scatter_add_(
        1, draws, torch.ones(num_bootstrap, n, dtype=torch.float64)) / n

def _check_labels(labels: Tensor, num_classes: int) -> Tensor:
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor of shape [N], got {_describe(labels)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], got values in "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    return labels.long()


def _check_predictions(name: str, predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """[S, N] (or [N], taken as one seed) integer predictions in [0, num_classes) for the N labelled samples."""
    if not isinstance(predictions, Tensor) or predictions.is_floating_point() or predictions.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor of predicted classes, got {_describe(predictions)}")
    if predictions.dim() == 1:
        predictions = predictions.unsqueeze(0)
    if predictions.dim() != 2 or predictions.shape[1] != labels.shape[0] or predictions.shape[0] < 1:
        raise ValueError(f"{name} must have shape [seeds, N] = [S, {labels.shape[0]}], got "
                         f"{tuple(predictions.shape)}")
    if predictions.numel() and (int(predictions.min()) < 0 or int(predictions.max()) >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes - 1}]")
    return predictions.long()


def _describe(x: Any) -> str:
    return f"shape {tuple(x.shape)} dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__


# ---------------------------------------------------------------------------------------------- accuracy


def per_class_accuracy(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Per-class accuracy a(c) = (1 / n_c) * sum_{i : y_i = c} [pred_i = c], float64 [C] (or [S, C] for [S, N]).

    NaN for a class with no samples. This is the per-class recall of the confusion matrix's diagonal.
    """
    labels = _check_labels(labels, num_classes)
    one_seed = isinstance(predictions, Tensor) and predictions.dim() == 1
    preds = _check_predictions("predictions", predictions, labels, num_classes)
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    correct = (preds == labels).to(torch.float64)
    sums = torch.zeros(preds.shape[0], num_classes, dtype=torch.float64).index_add_(1, labels, correct)
    acc = sums / counts  # 0/0 -> NaN for an empty class
    return acc[0] if one_seed else acc


def confusion_matrix(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Row-normalised confusion matrix M[c, j] = #{i : y_i = c, pred_i = j} / n_c, float64 [C, C].

    Each row is where the samples of true class c go; rows sum to 1 (NaN rows for classes with no samples).
    """
    labels = _check_labels(labels, num_classes)
    preds = _check_predictions("predictions", predictions, labels, num_classes)
    if preds.shape[0] != 1:
        raise ValueError(f"predictions must be one seed ([N]), got shape {tuple(preds.shape)}")
    flat = labels * num_classes + preds[0]
    counts = torch.bincount(flat, minlength=num_classes * num_classes).to(torch.float64).view(num_classes, num_classes)
    return counts / counts.sum(dim=1, keepdim=True)


def confusion_shift(kd_predictions: Tensor, ce_predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Where KD moves each class's samples: mean over paired seeds of M_KD,s - M_CE,s (row-normalised), [C, C].

    Row c sums to 0; its diagonal is class c's gain (negative when KD loses the class) and its positive
    off-diagonal entries are the classes that the lost samples are now predicted as.
    """
    labels = _check_labels(labels, num_classes)
    kd = _check_predictions("kd_predictions", kd_predictions, labels, num_classes)
    ce = _check_predictions("ce_predictions", ce_predictions, labels, num_classes)
    _check_paired(kd, ce)
    shifts = [confusion_matrix(kd[s], labels, num_classes) - confusion_matrix(ce[s], labels, num_classes)
              for s in range(kd.shape[0])]
    return torch.stack(shifts).mean(dim=0)


def shift_destinations(shift: Tensor, cls: int, top: int = 3) -> list[dict[str, float]]:
    """The ``top`` classes that gained most of class ``cls``'s samples under KD: [{"class", "shift"}], shift > 0."""
    row = shift[cls].clone()
    row[cls] = -math.inf
    order = torch.argsort(row, descending=True)[:top]
    return [{"class": int(j), "shift": float(row[j])} for j in order if float(row[j]) > 0]


def _check_paired(kd: Tensor, ce: Tensor) -> None:
    if kd.shape != ce.shape:
        raise ValueError(f"kd_predictions {tuple(kd.shape)} and ce_predictions {tuple(ce.shape)} must have the same "
                         "shape: one row per paired seed, one column per evaluation sample")


# ---------------------------------------------------------------------------------------------- gain + interval


@dataclass(frozen=True)
class ClassGain:
    """Per-class distillation gain over paired seeds with a two-sided interval (all lists of length C).

    ``per_seed[s][c]`` = g_s(c); ``mean``/``std`` over seeds (std with ddof = 1, 0 for one seed); ``low``/``high``
    the interval ends (NaN when the method cannot give one, e.g. the t interval with one seed).
    """

    mean: list[float]
    std: list[float]
    low: list[float]
    high: list[float]
    per_seed: list[list[float]]
    num_samples: list[int]
    n_seeds: int
    interval: str
    confidence: float

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict (results.json)."""
        return {"mean": self.mean, "std": self.std, "low": self.low, "high": self.high, "per_seed": self.per_seed,
                "num_samples": self.num_samples, "n_seeds": self.n_seeds, "interval": self.interval,
                "confidence": self.confidence}


def class_gain(kd_predictions: Tensor, ce_predictions: Tensor, labels: Tensor, num_classes: int, *,
               interval: str = "t", confidence: float = 0.95, num_bootstrap: int = 2000,
               seed: int = 0) -> ClassGain:
    """Per-class gain g(c) = mean_s [a_s^KD(c) - a_s^CE(c)] over S paired seeds, with a ``confidence`` interval.

    ``interval="t"``: paired Student-t interval over seeds,
        mean_s g_s(c) +- t_{(1+conf)/2, S-1} * sd_s(g_s(c)) / sqrt(S)     (NaN for S = 1).
    It treats the N evaluation samples as fixed: it captures training randomness (init, batch order), not which
    test images were drawn. With S = 3 the t quantile is 4.30: wide, and honest about three seeds.

    ``interval="bootstrap"``: paired two-stage percentile bootstrap (Efron & Tibshirani, "An Introduction to the
    Bootstrap", Chapman & Hall 1993; two-stage resampling of clustered data: Davison & Hinkley, "Bootstrap Methods
    and their Application", Cambridge UP 1997, Sec. 3.8). Each replicate draws S seeds with replacement and,
    independently, n_c samples of class c with replacement; the same drawn seeds and samples are used for KD and
    CE (paired), and g*(c) = mean over drawn seeds and samples of ([pred^KD = c] - [pred^CE = c]). The interval
    is the ((1-conf)/2, (1+conf)/2) quantiles of ``num_bootstrap`` replicates. It captures test-sample noise and
    works with one seed, but with 3 seeds the seed stage has only 10 distinct draws and understates training
    noise (percentile intervals are anti-conservative for small S). Replicates come from a generator seeded with
    ``seed`` (reproducible).
    """
    labels = _check_labels(labels, num_classes)
    kd = _check_predictions("kd_predictions", kd_predictions, labels, num_classes)
    ce = _check_predictions("ce_predictions", ce_predictions, labels, num_classes)
    _check_paired(kd, ce)
    if interval not in INTERVAL_METHODS:
        raise ValueError(f"interval={interval!r} is not allowed; allowed: {', '.join(INTERVAL_METHODS)}")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r} is not allowed; must be in (0, 1)")
    if isinstance(num_bootstrap, bool) or not isinstance(num_bootstrap, int) or num_bootstrap < 100:
        raise ValueError(f"num_bootstrap={num_bootstrap!r} is not allowed; must be an integer >= 100")
    per_seed = per_class_accuracy(kd, labels, num_classes) - per_class_accuracy(ce, labels, num_classes)  # [S, C]
    s = per_seed.shape[0]
    mean = per_seed.mean(dim=0)
    std = per_seed.std(dim=0, correction=1) if s > 1 else torch.zeros(num_classes, dtype=torch.float64)
    if interval == "t":
        low, high = _t_interval(mean, std, s, confidence)
    else:
        low, high = _bootstrap_interval(kd, ce, labels, num_classes, confidence, num_bootstrap, seed)
    counts = torch.bincount(labels, minlength=num_classes)
    return ClassGain(mean=_floats(mean), std=_floats(std), low=_floats(low), high=_floats(high),
                     per_seed=[_floats(row) for row in per_seed], num_samples=[int(n) for n in counts],
                     n_seeds=s, interval=interval, confidence=float(confidence))


def _t_interval(mean: Tensor, std: Tensor, n: int, confidence: float) -> tuple[Tensor, Tensor]:
    if n < 2:
        nan = torch.full_like(mean, math.nan)
        return nan, nan.clone()
    from scipy.stats import t  # lazily: scipy (installed with scikit-learn) is slow to import

    half = float(t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


def _bootstrap_interval(kd: Tensor, ce: Tensor, labels: Tensor, num_classes: int, confidence: float,
                        num_bootstrap: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = kd.shape[0]
    # d[s, i] in {-1, 0, 1}: sample i is right under KD and wrong under CE (1), the reverse (-1), or neither
    d = (kd == labels).to(torch.float64) - (ce == labels).to(torch.float64)
    # seed weights W[b, s] = how often seed s is drawn in replicate b, divided by S
    w = resample_weights(s, num_bootstrap, g)
    low = torch.full((num_classes,), math.nan, dtype=torch.float64)
    high = low.clone()
    q = torch.tensor([(1 - confidence) / 2, (1 + confidence) / 2], dtype=torch.float64)
    for c in range(num_classes):
        idx = torch.nonzero(labels == c).flatten()
        n_c = idx.numel()
        if n_c == 0:
            continue
        m = resample_weights(n_c, num_bootstrap, g)
        # g*_b = sum_s W[b,s] * sum_i M[b,i] * d[s, idx_i]
        replicates = ((w @ d[:, idx]) * m).sum(dim=1)
        low[c], high[c] = torch.quantile(replicates, q)
    return low, high


def _floats(t: Tensor) -> list[float]:
    return [float(v) for v in t.tolist()]


def undistillable_classes(gain: ClassGain, threshold: float = 0.0) -> list[int]:
    """Classes whose gain is reliably negative: high(c) < -threshold (the whole interval below -threshold).

    ``threshold`` >= 0 is a minimum loss that matters (accuracy fraction; 0 = any loss that the interval
    excludes zero for). A class without an interval (NaN, e.g. one seed with the t interval) is never reported.
    Each class is one test at the interval's confidence: with C classes and no real effect, about
    C * (1 - confidence) / 2 classes are expected to be reported by chance.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold >= 0:
        raise ValueError(f"threshold={threshold!r} is not allowed; must be a number >= 0")
    return [c for c, h in enumerate(gain.high) if not math.isnan(h) and h < -threshold]


# ---------------------------------------------------------------------------------------------- the teacher side


def teacher_class_profile(teacher_logits: Tensor, labels: Tensor, classes: Sequence[int],
                          temperature: float = 4.0) -> dict[str, Any]:
    """The teacher's own per-class accuracy and dark-knowledge statistics, for ``classes`` and over all classes.

    Uses ``DarkKnowledgeAccumulator`` (``kdlab.analysis.dark_knowledge``): per true class c, accuracy, target
    probability p_y = softmax(z / T)_y, derived std of the non-GT probabilities and normalised non-GT entropy at
    temperature T, and the inherent variance of the non-GT logits. Returns
    ``{"temperature", "per_class": {metric: [C]}, "classes": {str(c): {metric: value}}, "mean_over_classes":
    {metric: value}}`` so an undistillable class can be compared with the average class.
    """
    num_classes = teacher_logits.shape[1] if isinstance(teacher_logits, Tensor) and teacher_logits.dim() == 2 else 0
    labels = _check_labels(labels, max(num_classes, 2))
    acc = DarkKnowledgeAccumulator(num_classes, temperatures=(temperature,))
    acc.update(teacher_logits, labels)
    stats = acc.compute()["per_class"]
    at_t = stats["per_temperature"][str(float(temperature))]
    per_class = {"accuracy": stats["accuracy"], "target_prob": at_t["target_prob"],
                 "derived_std": at_t["derived_std"], "nongt_entropy": at_t["nongt_entropy"],
                 "inherent_variance": stats["inherent_variance"]}
    for c in classes:
        if not 0 <= int(c) < num_classes:
            raise ValueError(f"classes must lie in [0, {num_classes - 1}], got {c}")

    def class_mean(values: list[float | None]) -> float:
        present = [v for v in values if v is not None]
        return sum(present) / len(present) if present else math.nan

    return {
        "temperature": float(temperature),
        "per_class": per_class,
        "classes": {str(int(c)): {k: v[int(c)] for k, v in per_class.items()} for c in classes},
        "mean_over_classes": {k: class_mean(v) for k, v in per_class.items()},
    }


def bootstrap_detection_counts(kd_predictions: Sequence[Tensor], ce_predictions: Tensor, labels: Tensor,
                               num_classes: int, *, confidence: float = 0.95, threshold: float = 0.0,
                               num_bootstrap: int = 1000, seed: int = 0) -> Tensor | None:
    """How many undistillable classes each teacher has in bootstrap replicates of the evaluation samples: [B, T].

    ``kd_predictions[t]``: predictions [S, N] of the KD students of teacher t (one row per paired seed);
    ``ce_predictions``: the CE students' [S, N]. Each replicate draws, within each class, its samples with replacement
    (the same draw for every model: paired), recomputes every seed's per-class gain on the drawn samples, and applies
    the detection rule of :func:`undistillable_classes` with the t interval of :func:`class_gain` (upper end below
    -threshold). The spread of a statistic of the counts over replicates (e.g. their rank correlation with teacher
    size) is then its sampling spread over evaluation sets (Efron & Tibshirani, "An Introduction to the Bootstrap",
    1993). None with one seed (no t interval, nothing is ever detected).
    """
    from scipy.stats import t as student_t  # lazily: scipy (installed with scikit-learn) is slow to import

    labels = _check_labels(labels, num_classes)
    ce = _check_predictions("ce_predictions", ce_predictions, labels, num_classes)
    kds = [_check_predictions("kd_predictions", k, labels, num_classes) for k in kd_predictions]
    for kd in kds:
        _check_paired(kd, ce)
    s = ce.shape[0]
    if s < 2:
        return None
    half_width = float(student_t.ppf((1 + confidence) / 2, s - 1)) / math.sqrt(s)
    right_ce = (ce == labels).to(torch.float64)
    right_kd = [(kd == labels).to(torch.float64) for kd in kds]
    g = torch.Generator().manual_seed(seed)
    counts = torch.zeros(num_bootstrap, len(kds), dtype=torch.float64)
    for c in range(num_classes):
        idx = torch.nonzero(labels == c).flatten()
        n_c = idx.numel()
        if n_c == 0:
            continue
        weights = resample_weights(n_c, num_bootstrap, g)
        accuracy_ce = weights @ right_ce[:, idx].T                      # [B, S]
        for ti, right in enumerate(right_kd):
            gain = weights @ right[:, idx].T - accuracy_ce              # [B, S]
            high = gain.mean(dim=1) + half_width * gain.std(dim=1, correction=1)
            counts[:, ti] += (high < -threshold).to(torch.float64)
    return counts
