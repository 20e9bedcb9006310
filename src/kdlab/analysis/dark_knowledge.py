"""Dark-knowledge statistics of a classifier's outputs, streamed over batches.

For a sample with logits z (C classes), ground-truth (GT) class y and temperature tau,
p = softmax(z / tau). The statistics describe the C-1 non-GT entries of p: how large they are
on average, how distinct they are from each other, and how much GT confidence leaves for them.

Papers:
- "Exploring Dark Knowledge under Various Teacher Capacities and Addressing Capacity Mismatch",
  Fan, Li, Zhan, Frontiers of Computer Science 2026 (arXiv 2405.13078).
- "Asymmetric Temperature Scaling Makes Larger Networks Teach Well Again", Li et al., NeurIPS 2022.
- "On Calibration of Modern Neural Networks", Guo et al., ICML 2017 (expected calibration error).

All statistics are accumulated as float64 running sums, so memory does not grow with the dataset.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "DarkKnowledgeAccumulator",
    "dark_knowledge_metrics",
    "derived_average_per_sample",
    "derived_std_per_sample",
    "inherent_variance_per_sample",
    "iter_logit_batches",
    "nongt_entropy_per_sample",
    "nongt_logits",
    "nongt_probabilities",
    "target_probability_per_sample",
]

# Names of the per-temperature statistics, in the order the accumulator stores them.
TEMPERATURE_METRICS: tuple[str, ...] = ("derived_average", "derived_std", "nongt_entropy", "target_prob")


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------


def check_logits_targets(logits: Tensor, targets: Tensor, num_classes: int | None = None) -> None:
    """Raise ValueError unless ``logits`` is [N, C] floating, ``targets`` is [N] integer in [0, C).

    Used by every function here (and by ``kdlab.analysis.affinity``) so bad input fails with a
    message naming the argument instead of an index error deep inside ``gather``.
    """
    if not isinstance(logits, Tensor):
        raise ValueError(f"logits must be a torch.Tensor of shape [N, C], got {type(logits).__name__}")
    if not isinstance(targets, Tensor):
        raise ValueError(f"targets must be a torch.Tensor of shape [N], got {type(targets).__name__}")
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape [N, C], got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    if targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"targets must have shape [N] = [{logits.shape[0]}] to match logits {tuple(logits.shape)}, "
            f"got shape {tuple(targets.shape)}"
        )
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise ValueError(f"targets must be an integer tensor of class indices, got dtype {targets.dtype}")
    c = logits.shape[1]
    if num_classes is not None and c != num_classes:
        raise ValueError(f"logits must have num_classes={num_classes} columns, got {c}")
    if c < 2:
        raise ValueError(f"logits must have at least 2 classes (columns), got {c}")
    if targets.numel() > 0:
        lo, hi = int(targets.min()), int(targets.max())
        if lo < 0 or hi >= c:
            bad = lo if lo < 0 else hi
            raise ValueError(f"targets must lie in [0, {c - 1}] for {c} classes, got {bad}")


def check_temperature(temperature: float, name: str = "temperature") -> float:
    """Return ``temperature`` as a float, or raise ValueError unless it is finite and > 0."""
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive finite number, got {temperature!r}") from None
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {temperature!r}")
    return t


def _nongt_mask(targets: Tensor, num_classes: int) -> Tensor:
    """Boolean [N, C] mask, True everywhere except at each row's GT column."""
    mask = torch.ones(targets.shape[0], num_classes, dtype=torch.bool, device=targets.device)
    mask[torch.arange(targets.shape[0], device=targets.device), targets.long()] = False
    return mask


# ---------------------------------------------------------------------------------------------
# Per-sample statistics (pure, differentiable; reusable by losses)
# ---------------------------------------------------------------------------------------------


def nongt_logits(logits: Tensor, targets: Tensor) -> Tensor:
    """The C-1 non-GT logits of each sample, in class order: [N, C] -> [N, C-1].

    z_{-y} = (z_j for j != y). Used for the inherent variance (Fan, Li, Zhan, FCS 2026).
    """
    check_logits_targets(logits, targets)
    n, c = logits.shape
    return logits[_nongt_mask(targets, c)].view(n, c - 1)


def nongt_probabilities(logits: Tensor, targets: Tensor, temperature: float = 1.0) -> Tensor:
    """The C-1 non-GT entries of p = softmax(z / tau), in class order: [N, C] -> [N, C-1].

    p_j = exp(z_j / tau) / sum_k exp(z_k / tau) for j != y; computed through log_softmax so logits of
    magnitude 1e4 stay finite ("Exploring Dark Knowledge under Various Teacher Capacities and
    Addressing Capacity Mismatch", Fan, Li, Zhan, FCS 2026).
    """
    check_logits_targets(logits, targets)
    t = check_temperature(temperature)
    n, c = logits.shape
    probs = torch.log_softmax(logits / t, dim=1).exp()
    return probs[_nongt_mask(targets, c)].view(n, c - 1)


def target_probability_per_sample(logits: Tensor, targets: Tensor, temperature: float = 1.0) -> Tensor:
    """GT probability of each sample: p_y = softmax(z / tau)_y, shape [N].

    Paper: "Exploring Dark Knowledge under Various Teacher Capacities and Addressing Capacity
    Mismatch", Fan, Li, Zhan, FCS 2026.
    """
    check_logits_targets(logits, targets)
    t = check_temperature(temperature)
    log_probs = torch.log_softmax(logits / t, dim=1)
    return log_probs.gather(1, targets.long().unsqueeze(1)).squeeze(1).exp()


def derived_average_per_sample(logits: Tensor, targets: Tensor, temperature: float = 1.0) -> Tensor:
    """Mean of the C-1 non-GT probabilities of each sample, shape [N].

    DA = (1 / (C-1)) * sum_{j != y} p_j = (1 - p_y) / (C-1), with p = softmax(z / tau).
    Summing the non-GT entries (rather than 1 - p_y) keeps precision when p_y is close to 1.
    Paper: "Asymmetric Temperature Scaling Makes Larger Networks Teach Well Again", Li et al.,
    NeurIPS 2022; "Exploring Dark Knowledge under Various Teacher Capacities ...", Fan, Li, Zhan, FCS 2026.
    """
    return nongt_probabilities(logits, targets, temperature).mean(dim=1)


def derived_std_per_sample(logits: Tensor, targets: Tensor, temperature: float = 1.0) -> Tensor:
    """Population standard deviation of the C-1 non-GT probabilities of each sample, shape [N].

    DS = sqrt( (1 / (C-1)) * sum_{j != y} (p_j - DA)^2 ), ddof = 0 (divide by C-1, not C-2), with
    p = softmax(z / tau). DS = 0 means all wrong classes look alike: no dark knowledge.
    Paper: "Asymmetric Temperature Scaling Makes Larger Networks Teach Well Again", Li et al.,
    NeurIPS 2022; "Exploring Dark Knowledge under Various Teacher Capacities ...", Fan, Li, Zhan, FCS 2026.
    """
    return nongt_probabilities(logits, targets, temperature).std(dim=1, correction=0)


def inherent_variance_per_sample(logits: Tensor, targets: Tensor) -> Tensor:
    """Population variance of the C-1 non-GT logits of each sample, shape [N] (temperature-free).

    IV = (1 / (C-1)) * sum_{j != y} (z_j - mean_{k != y} z_k)^2, ddof = 0.
    Paper: "Asymmetric Temperature Scaling Makes Larger Networks Teach Well Again", Li et al.,
    NeurIPS 2022; "Exploring Dark Knowledge under Various Teacher Capacities ...", Fan, Li, Zhan, FCS 2026.
    """
    return nongt_logits(logits, targets).var(dim=1, correction=0)


def nongt_entropy_per_sample(logits: Tensor, targets: Tensor, temperature: float = 1.0) -> Tensor:
    """Normalised entropy of the renormalised non-GT probabilities of each sample, shape [N], in [0, 1].

    q_j = p_j / sum_{k != y} p_k for j != y;  H = -sum_j q_j log q_j / log(C-1).
    1 means the wrong classes are indistinguishable (uniform), 0 means one wrong class takes all.
    For C = 2 there is a single wrong class and H is defined as 0.
    Paper: "Exploring Dark Knowledge under Various Teacher Capacities and Addressing Capacity
    Mismatch", Fan, Li, Zhan, FCS 2026.
    """
    z = nongt_logits(logits, targets)
    t = check_temperature(temperature)
    if z.shape[1] == 1:
        return torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
    # Renormalising the non-GT part of softmax(z/tau) equals a softmax over the non-GT logits alone;
    # taking it in log space avoids 0 * log(0) when p_y is ~1 and the non-GT p_j underflow.
    log_q = torch.log_softmax(z / t, dim=1)
    entropy = -(log_q.exp() * log_q).sum(dim=1)
    return entropy / math.log(z.shape[1])


# ---------------------------------------------------------------------------------------------
# Streaming accumulator
# ---------------------------------------------------------------------------------------------


def _per_class_mean(sums: Tensor, counts: Tensor) -> list[float | None]:
    """sums / counts per class as plain floats; None for a class with no samples (strict JSON)."""
    return [None if int(n) == 0 else float(s) / int(n) for s, n in zip(sums.tolist(), counts.tolist())]


class DarkKnowledgeAccumulator:
    """Streams dark-knowledge statistics over batches of (logits, targets); memory is O(C * T).

    ``update`` adds float64 running sums per class; ``compute`` divides them. Statistics
    (all averaged over samples; see the per-sample functions for the formulas):

    - ``accuracy``: mean of [argmax_j z_j == y].
    - ``ece`` (at tau = 1): expected calibration error, Guo et al., "On Calibration of Modern Neural
      Networks", ICML 2017. Confidence c = max_j p_j falls into bin b = ceil(c * M) - 1 of M
      equal-width bins ((b/M, (b+1)/M]); ECE = sum_b (|B_b| / N) * |acc(B_b) - conf(B_b)|.
    - ``inherent_variance``: population variance of the non-GT logits (temperature-free).
    - ``per_temperature[str(float(tau))]``: ``derived_average``, ``derived_std`` (ddof = 0),
      ``nongt_entropy`` (normalised by log(C-1)), ``target_prob``.
    - ``per_class``: the same per true class (lists of length C; None for a class with no samples),
      plus per-class ``num_samples`` and ``accuracy``.

    Papers: "Exploring Dark Knowledge under Various Teacher Capacities and Addressing Capacity
    Mismatch", Fan, Li, Zhan, FCS 2026; "Asymmetric Temperature Scaling Makes Larger Networks
    Teach Well Again", Li et al., NeurIPS 2022.
    """

    def __init__(self, num_classes: int, temperatures: Sequence[float] = (1, 2, 4, 8), num_bins: int = 15) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
            raise ValueError(f"num_bins must be an integer >= 1, got {num_bins!r}")
        if isinstance(temperatures, (str, bytes)) or not isinstance(temperatures, Iterable):
            raise ValueError(f"temperatures must be a sequence of positive numbers, got {temperatures!r}")
        temps = [check_temperature(t, "temperatures") for t in temperatures]
        if not temps:
            raise ValueError("temperatures must hold at least one positive number, got an empty sequence")
        if len(set(temps)) != len(temps):
            raise ValueError(f"temperatures must not repeat a value, got {list(temperatures)!r}")
        self.num_classes = num_classes
        self.temperatures: tuple[float, ...] = tuple(temps)
        self.num_bins = num_bins
        f64 = torch.float64
        self._count = torch.zeros(num_classes, dtype=f64)  # samples per true class
        self._correct = torch.zeros(num_classes, dtype=f64)  # correct predictions per true class
        self._inherent_variance = torch.zeros(num_classes, dtype=f64)
        # [T, metric, class] sums of the per-temperature statistics, metric order TEMPERATURE_METRICS.
        self._temperature_sums = torch.zeros(len(temps), len(TEMPERATURE_METRICS), num_classes, dtype=f64)
        self._bin_count = torch.zeros(num_bins, dtype=f64)
        self._bin_confidence = torch.zeros(num_bins, dtype=f64)
        self._bin_correct = torch.zeros(num_bins, dtype=f64)

    @property
    def num_samples(self) -> int:
        return int(self._count.sum().item())

    @torch.no_grad()
    def update(self, logits: Tensor, targets: Tensor) -> None:
        """Add one batch: logits [N, C] (any float dtype/device), targets [N] class indices."""
        check_logits_targets(logits, targets, self.num_classes)
        if logits.shape[0] == 0:
            return
        # float64 on CPU: sums over millions of samples keep ~1e-16 relative error, and the state
        # stays on CPU whatever device the model runs on.
        z = logits.detach().to(device="cpu", dtype=torch.float64)
        y = targets.detach().to(device="cpu", dtype=torch.long)
        if not bool(torch.isfinite(z).all()):
            raise ValueError("logits must be finite, got NaN or infinite values")

        def add_per_class(dest: Tensor, values: Tensor) -> None:
            dest.index_add_(0, y, values)

        add_per_class(self._count, torch.ones_like(z[:, 0]))
        correct = (z.argmax(dim=1) == y).to(torch.float64)
        add_per_class(self._correct, correct)
        add_per_class(self._inherent_variance, inherent_variance_per_sample(z, y))
        for ti, t in enumerate(self.temperatures):
            per_sample = (
                derived_average_per_sample(z, y, t),
                derived_std_per_sample(z, y, t),
                nongt_entropy_per_sample(z, y, t),
                target_probability_per_sample(z, y, t),
            )
            for mi, values in enumerate(per_sample):
                add_per_class(self._temperature_sums[ti, mi], values)

        confidence = torch.log_softmax(z, dim=1).max(dim=1).values.exp()
        # Bin b holds confidences in (b/M, (b+1)/M], as in Guo et al. (2017).
        bins = (torch.ceil(confidence * self.num_bins).long() - 1).clamp_(0, self.num_bins - 1)
        self._bin_count.index_add_(0, bins, torch.ones_like(confidence))
        self._bin_confidence.index_add_(0, bins, confidence)
        self._bin_correct.index_add_(0, bins, correct)

    def compute(self) -> dict[str, Any]:
        """Return the statistics as a strict-JSON dict (floats, lists, None for empty classes)."""
        n = self.num_samples
        if n == 0:
            raise ValueError("num_samples is 0: call update(logits, targets) with at least one sample before compute()")
        # |B_b|/N * |acc_b - conf_b| = |sum correct_b - sum conf_b| / N
        ece = float((self._bin_correct - self._bin_confidence).abs().sum().item()) / n
        per_temperature: dict[str, dict[str, float]] = {}
        per_class_temperature: dict[str, dict[str, list[float | None]]] = {}
        for ti, t in enumerate(self.temperatures):
            key = str(t)
            per_temperature[key] = {
                name: float(self._temperature_sums[ti, mi].sum().item()) / n
                for mi, name in enumerate(TEMPERATURE_METRICS)
            }
            per_class_temperature[key] = {
                name: _per_class_mean(self._temperature_sums[ti, mi], self._count)
                for mi, name in enumerate(TEMPERATURE_METRICS)
            }
        return {
            "num_samples": n,
            "num_classes": self.num_classes,
            "num_bins": self.num_bins,
            "accuracy": float(self._correct.sum().item()) / n,
            "ece": ece,
            "inherent_variance": float(self._inherent_variance.sum().item()) / n,
            "per_temperature": per_temperature,
            "per_class": {
                "num_samples": [int(c) for c in self._count.tolist()],
                "accuracy": _per_class_mean(self._correct, self._count),
                "inherent_variance": _per_class_mean(self._inherent_variance, self._count),
                "per_temperature": per_class_temperature,
            },
        }


def iter_logit_batches(
    logits_or_batches: Tensor | Iterable[tuple[Tensor, Tensor]], targets: Tensor | None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (logits, targets) batches from one tensor pair or from an iterable of pairs.

    Shared by the convenience functions here and in ``kdlab.analysis.affinity``.
    """
    if isinstance(logits_or_batches, Tensor):
        if targets is None:
            raise ValueError("targets must be given when logits_or_batches is a tensor, got None")
        yield logits_or_batches, targets
        return
    if targets is not None:
        raise ValueError(
            "targets must be None when logits_or_batches is an iterable of (logits, targets) batches, "
            f"got a {type(targets).__name__}"
        )
    if not isinstance(logits_or_batches, Iterable):
        raise ValueError(
            "logits_or_batches must be a [N, C] tensor or an iterable of (logits, targets) pairs, "
            f"got {type(logits_or_batches).__name__}"
        )
    for i, batch in enumerate(logits_or_batches):
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError(f"logits_or_batches item {i} must be a (logits, targets) pair, got {type(batch).__name__}")
        yield batch[0], batch[1]


def dark_knowledge_metrics(
    logits_or_batches: Tensor | Iterable[tuple[Tensor, Tensor]],
    targets: Tensor | None = None,
    temperatures: Sequence[float] = (1, 2, 4, 8),
    num_classes: int | None = None,
    num_bins: int = 15,
) -> dict[str, Any]:
    """Dark-knowledge statistics of one logits tensor or an iterable of (logits, targets) batches.

    Same dict and formulas as ``DarkKnowledgeAccumulator.compute`` (derived average (1 - p_y)/(C-1),
    derived std, inherent variance, normalised non-GT entropy, p_y, accuracy, ECE); ``num_classes``
    defaults to the width of the first batch. Papers: "Exploring Dark Knowledge under Various Teacher
    Capacities and Addressing Capacity Mismatch", Fan, Li, Zhan, FCS 2026; "On Calibration of Modern
    Neural Networks", Guo et al., ICML 2017.
    """
    accumulator: DarkKnowledgeAccumulator | None = None
    for logits, batch_targets in iter_logit_batches(logits_or_batches, targets):
        if accumulator is None:
            check_logits_targets(logits, batch_targets, num_classes)
            accumulator = DarkKnowledgeAccumulator(logits.shape[1], temperatures, num_bins)
        accumulator.update(logits, batch_targets)
    if accumulator is None:
        raise ValueError("logits_or_batches must hold at least one (logits, targets) batch, got none")
    return accumulator.compute()
