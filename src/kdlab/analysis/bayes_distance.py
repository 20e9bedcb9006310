"""How far a model's probabilities are from the true class posterior p*(y|x), where p* is known in closed form.

"A Statistical Perspective on Distillation" (Menon, Rawat, Reddi, Kim, Kumar, ICML 2021) shows that a teacher helps
by approximating the Bayes class-probabilities p*(y|x): the closer its probabilities, the lower the variance of the
student's objective. On synthetic tasks (``gaussian_mixture``, ``hierarchical_mixture``) p* is exact, so a teacher's
distance to it can be measured instead of guessed, and its dark knowledge (derived std, class affinity) can be set
against the true dark knowledge: the same statistics of p* itself.

Both inputs are logits: the model's, and ``bayes_logits`` whose softmax is p* (e.g. ``mixture.log_joint(x)``, which is
finite where p* itself would underflow to 0). Everything is computed in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .affinity import affinity_consistency, class_affinity
from .dark_knowledge import check_logits_targets, dark_knowledge_metrics, nongt_logits

__all__ = ["BayesDistanceAccumulator", "DISTANCE_METRICS", "bayes_distance", "compare_with_bayes"]

# Names of the per-sample distances, in the order the accumulator stores their sums.
DISTANCE_METRICS: tuple[str, ...] = ("kl", "tv", "nongt_kl", "nongt_tv", "bayes_agreement")


def _kl_tv(log_p: Tensor, log_q: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row KL(p || q) = sum_k p_k (log p_k - log q_k) and TV(p, q) = 1/2 sum_k |p_k - q_k| from log-probabilities.

    A p_k that underflows to 0 contributes 0 to the KL (its log is finite, so no 0 * inf appears).
    """
    p, q = log_p.exp(), log_q.exp()
    return (p * (log_p - log_q)).sum(dim=1), 0.5 * (p - q).abs().sum(dim=1)


def _check_pair(model_logits: Tensor, bayes_logits: Tensor, targets: Tensor) -> None:
    check_logits_targets(model_logits, targets)
    check_logits_targets(bayes_logits, targets, model_logits.shape[1])
    for name, z in (("model_logits", model_logits), ("bayes_logits", bayes_logits)):
        if not bool(torch.isfinite(z).all()):
            raise ValueError(f"{name} must be finite, got NaN or infinite values")


class BayesDistanceAccumulator:
    """Streams the mean distances between a model's probabilities and p* over batches; memory is O(1).

    For a sample with ground truth y, model probabilities q = softmax(z) and true posterior p* (C classes):

    - ``kl``  = KL(p* || q) = sum_k p*_k log(p*_k / q_k), the excess log-loss of q over the Bayes predictor;
    - ``tv``  = 1/2 sum_k |p*_k - q_k|, in [0, 1];
    - ``nongt_kl``, ``nongt_tv``: the same between the renormalised non-ground-truth parts
      p~*_j = p*_j / sum_{k != y} p*_k and q~_j = q_j / sum_{k != y} q_k (j != y), i.e. how well the model ranks and
      weighs the wrong classes whatever its confidence in the right one (0 when C = 2: one wrong class);
    - ``bayes_agreement`` = [argmax_k q_k == argmax_k p*_k], the share of inputs the model classifies as Bayes does.

    All are averaged over samples. Paper: "A Statistical Perspective on Distillation", Menon et al., ICML 2021.
    """

    def __init__(self) -> None:
        self._sums = torch.zeros(len(DISTANCE_METRICS), dtype=torch.float64)
        self._count = 0

    @torch.no_grad()
    def update(self, model_logits: Tensor, bayes_logits: Tensor, targets: Tensor) -> None:
        """Add one batch: model logits [N, C], logits of p* [N, C] (softmax(bayes_logits) = p*), targets [N]."""
        _check_pair(model_logits, bayes_logits, targets)
        if targets.numel() == 0:
            return
        z = model_logits.detach().to(device="cpu", dtype=torch.float64)
        b = bayes_logits.detach().to(device="cpu", dtype=torch.float64)
        y = targets.detach().to(device="cpu", dtype=torch.long)
        kl, tv = _kl_tv(torch.log_softmax(b, dim=1), torch.log_softmax(z, dim=1))
        # the renormalised non-GT distribution is the softmax over the non-GT logits alone
        nongt_kl, nongt_tv = _kl_tv(torch.log_softmax(nongt_logits(b, y), dim=1),
                                    torch.log_softmax(nongt_logits(z, y), dim=1))
        agreement = (z.argmax(dim=1) == b.argmax(dim=1)).to(torch.float64)
        per_sample = (kl, tv, nongt_kl, nongt_tv, agreement)
        self._sums += torch.stack([v.sum() for v in per_sample])
        self._count += int(y.shape[0])

    @property
    def num_samples(self) -> int:
        return self._count

    def compute(self) -> dict[str, float]:
        """The mean of each distance (keys ``DISTANCE_METRICS``) plus ``num_samples``."""
        if self._count == 0:
            raise ValueError("num_samples is 0: call update(model_logits, bayes_logits, targets) before compute()")
        out: dict[str, Any] = {name: float(s) / self._count for name, s in zip(DISTANCE_METRICS, self._sums.tolist())}
        out["num_samples"] = self._count
        return out


def bayes_distance(model_logits: Tensor, bayes_logits: Tensor, targets: Tensor,
                   batch_size: int = 8192) -> dict[str, float]:
    """Mean KL(p* || q), total variation, the same on the renormalised non-GT part, and agreement with Bayes.

    KL = mean_n sum_k p*_nk log(p*_nk / q_nk); TV = mean_n 1/2 sum_k |p*_nk - q_nk|; see
    :class:`BayesDistanceAccumulator` for the non-GT versions. Paper: "A Statistical Perspective on Distillation",
    Menon et al., ICML 2021.
    """
    _check_pair(model_logits, bayes_logits, targets)
    accumulator = BayesDistanceAccumulator()
    for start in range(0, targets.shape[0], batch_size):
        part = slice(start, start + batch_size)
        accumulator.update(model_logits[part], bayes_logits[part], targets[part])
    return accumulator.compute()


def _in_group_share(logits: Tensor, targets: Tensor, group_of: Tensor) -> float:
    """Mean over samples of the share of non-GT probability on wrong classes of the GT class's group."""
    log_p = torch.log_softmax(logits.to(torch.float64), dim=1)
    nongt = torch.ones_like(log_p, dtype=torch.bool)
    nongt[torch.arange(targets.shape[0]), targets] = False
    same = (group_of.unsqueeze(0) == group_of[targets].unsqueeze(1)) & nongt
    # shares in log space: a confident model's non-GT probabilities underflow, their ratios do not
    in_group = torch.logsumexp(log_p.masked_fill(~same, -torch.inf), dim=1)
    all_wrong = torch.logsumexp(log_p.masked_fill(~nongt, -torch.inf), dim=1)
    return float((in_group - all_wrong).exp().nan_to_num(0.0).mean())


def compare_with_bayes(model_logits: Tensor, bayes_logits: Tensor, targets: Tensor,
                       temperatures: Sequence[float] = (1.0, 2.0, 4.0, 8.0), *, top_k: int = 3,
                       superclass_of: Tensor | None = None) -> dict[str, Any]:
    """A model's distance to p* next to its dark knowledge and p*'s own (the reference line), on the same inputs.

    - ``distance``: :func:`bayes_distance` (KL, TV, non-GT KL/TV, agreement with Bayes).
    - ``derived_std`` / ``derived_average``: ``{str(tau): {"model", "bayes", "ratio"}}`` with ratio = model / bayes,
      where "bayes" is the statistic of softmax(log p* / tau) (derived std = population std of the C-1 non-GT
      probabilities; Li et al., "Asymmetric Temperature Scaling Makes Larger Networks Teach Well Again", NeurIPS
      2022). A ratio below 1 means the model's wrong classes look more alike than they truly are.
    - ``target_prob``: the same for the ground-truth probability p_y; ``accuracy`` {"model", "bayes"}.
    - ``affinity``: Spearman, Kendall tau-b and top-k overlap between the model's class-affinity matrix and p*'s
      (:func:`kdlab.analysis.affinity.affinity_consistency`; Fan, Li, Zhan, "Exploring Dark Knowledge under Various
      Teacher Capacities and Addressing Capacity Mismatch", FCS 2026).
    - with ``superclass_of`` ([C] group index per class): ``in_superclass_share`` {"model", "bayes"}, the mean share
      of non-GT probability that falls on wrong classes of the true class's super-class.
    """
    _check_pair(model_logits, bayes_logits, targets)
    model = dark_knowledge_metrics(model_logits, targets, temperatures)
    bayes = dark_knowledge_metrics(bayes_logits.to(torch.float64), targets, temperatures)

    def side_by_side(stat: str) -> dict[str, dict[str, float | None]]:
        out = {}
        for tau in bayes["per_temperature"]:
            m, b = model["per_temperature"][tau][stat], bayes["per_temperature"][tau][stat]
            out[tau] = {"model": m, "bayes": b, "ratio": m / b if b > 0 else None}
        return out

    consistency = affinity_consistency(class_affinity(model_logits, targets), class_affinity(bayes_logits, targets),
                                       top_k=min(top_k, model_logits.shape[1] - 1))
    result: dict[str, Any] = {
        "distance": bayes_distance(model_logits, bayes_logits, targets),
        "accuracy": {"model": model["accuracy"], "bayes": bayes["accuracy"]},
        "target_prob": side_by_side("target_prob"),
        "derived_std": side_by_side("derived_std"),
        "derived_average": side_by_side("derived_average"),
        "affinity": {k: consistency[k] for k in ("spearman", "kendall", "topk_overlap", "top_k", "rows_used")},
    }
    if superclass_of is not None:
        groups = torch.as_tensor(superclass_of, dtype=torch.long).cpu()
        if groups.shape != (model_logits.shape[1],):
            raise ValueError(f"superclass_of must have shape [{model_logits.shape[1]}] (one group per class), "
                             f"got {tuple(groups.shape)}")
        y = targets.cpu().long()
        result["in_superclass_share"] = {"model": _in_group_share(model_logits.cpu(), y, groups),
                                         "bayes": _in_group_share(bayes_logits.cpu(), y, groups)}
    return result
