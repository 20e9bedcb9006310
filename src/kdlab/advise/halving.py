"""Successive halving over (teacher x method x hyperparameters), decided on validation accuracy alone.

Jamieson & Talwalkar, "Non-stochastic Best Arm Identification and Hyperparameter Optimization" (AISTATS 2016): train
every candidate briefly, keep the best fraction, train the survivors longer, and so on. Here the rungs are declared
(how long, on how much data, on how many seeds, how many survive) and the budget may stop the schedule before a rung
that cannot finish (see :mod:`kdlab.advise.budget`).

The trainer a rung calls returns each candidate's *validation* accuracy per seed and nothing else, so no selection
here can read test accuracy: survivors, the pilot's ranking and its choice are all functions of validation accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..config import Component
from ..losses import search_space

#: ``{candidate key: {seed: best validation accuracy}}``: what a rung's trainer returns.
Scores = dict[str, dict[int, float]]


@dataclass(frozen=True)
class Candidate:
    """One point of the pilot: a teacher (by label), a method (a loss name) and its hyperparameters."""

    teacher: str
    method: str
    values: tuple[tuple[str, Any], ...] = ()

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return dict(self.values)

    @property
    def pair(self) -> tuple[str, str]:
        """(teacher, method): what the pilot ranks."""
        return self.teacher, self.method

    @property
    def key(self) -> str:
        """A readable identity: ``teacher/method/k=v,k=v``."""
        values = ",".join(f"{k}={format(v, 'g') if isinstance(v, float) else v}" for k, v in self.values)
        return f"{self.teacher}/{self.method}" + (f"/{values}" if values else "")

    def loss(self) -> Component:
        """The loss section of this candidate's runs."""
        return Component(name=self.method, **self.hyperparameters)


def first_rung(teachers: Sequence[str], methods: Sequence[str], points: int, search_seed: int) -> list[Candidate]:
    """Every (teacher, method) with ``points`` hyperparameter points of the method's declared search space (its whole
    grid when that is smaller; else a sample seeded by ``search_seed``, the same points for every teacher), in
    teacher, method, grid order."""
    out = []
    for teacher in teachers:
        for method in methods:
            for point in search_space(method).points(points, search_seed):
                out.append(Candidate(teacher, method, tuple(point.items())))
    return out


def mean_score(by_seed: Mapping[int, float]) -> float:
    """Mean validation accuracy over seeds (NaN when there is none)."""
    values = [v for v in by_seed.values() if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def survivors(candidates: Sequence[Candidate], scores: Scores, keep: int) -> list[Candidate]:
    """The ``min(keep, len(candidates))`` candidates with the highest mean validation accuracy over the rung's seeds,
    best first; ties go to the earlier candidate, and a candidate without a score never survives ahead of one with."""
    ranked = sorted(range(len(candidates)),
                    key=lambda i: (-_finite(mean_score(scores[candidates[i].key])), i))
    return [candidates[i] for i in ranked[:min(keep, len(candidates))]]


def _finite(value: float) -> float:
    return -math.inf if math.isnan(value) else value


@dataclass
class Rung:
    """A rung as it ran: its candidates, their validation accuracy per seed, who survived, and its clock."""

    index: int
    candidates: list[Candidate]
    scores: Scores
    survivors: list[Candidate]
    estimate_seconds: float | None = None
    seconds: float | None = None
    # candidates the rung was to train before the budget shrank it to the best one (None: it trained them all)
    shrunk_from: int | None = None


@dataclass
class Halving:
    """What successive halving did: the rungs that ran, and why it stopped early (None: it ran every rung)."""

    rungs: list[Rung] = field(default_factory=list)
    stopped_before: int | None = None
    stop_reason: str | None = None

    @property
    def last(self) -> Rung | None:
        return self.rungs[-1] if self.rungs else None

    def chosen(self) -> Candidate | None:
        """The candidate with the best mean validation accuracy at the last rung that ran."""
        last = self.last
        if last is None:
            return None
        return survivors(last.candidates, last.scores, 1)[0]

    def pair_ranking(self) -> list[dict[str, Any]]:
        """(teacher, method) pairs ranked as the pilot saw them: a pair that reached a later rung ranks above one
        eliminated earlier; within a rung, by the best mean validation accuracy of its candidates there. Each entry:
        teacher, method, rung (the last it reached), val (that score), candidate (its best candidate's key)."""
        best: dict[tuple[str, str], dict[str, Any]] = {}
        for rung in self.rungs:
            for candidate in rung.candidates:
                score = _finite(mean_score(rung.scores[candidate.key]))
                entry = best.get(candidate.pair)
                if entry is None or rung.index > entry["rung"] or (rung.index == entry["rung"]
                                                                  and score > entry["val"]):
                    best[candidate.pair] = {"teacher": candidate.teacher, "method": candidate.method,
                                            "rung": rung.index, "val": score, "candidate": candidate.key}
        order = list(best)  # first-appearance order breaks ties
        return sorted(best.values(), key=lambda e: (-e["rung"], -e["val"], order.index((e["teacher"], e["method"]))))


def successive_halving(candidates: Sequence[Candidate], keeps: Sequence[int | None],
                       train: Callable[[int, list[Candidate]], Scores],
                       may_start: Callable[[int, list[Candidate]], tuple[bool, float | None, str | None]],
                       clock: Callable[[], float], shrink_to_best: bool = False) -> Halving:
    """Run the rungs in order: rung k trains its candidates (``train(k, candidates)`` -> validation accuracy per
    seed), and the ``keeps[k]`` best by mean validation accuracy go on to rung k + 1 (``keeps`` has one entry per
    rung, None for the last). Before each rung ``may_start(k, candidates)`` says whether it can finish in time (and
    its estimate in seconds, and the reason when not); a rung that cannot is never started, and the result is the
    rungs run so far.

    With ``shrink_to_best``, a rung after the first that cannot finish with all its candidates trains only the best
    survivor of the rung before, if that fits: the pick is then measured on the longer rung's seeds (what its gain
    interval needs) instead of not at all. The rung records how many candidates it was to train (``shrunk_from``)."""
    result = Halving()
    current = list(candidates)
    for index, keep in enumerate(keeps):
        ok, estimate, reason = may_start(index, current)
        shrunk_from = None
        if not ok and shrink_to_best and index > 0 and len(current) > 1:
            best_ok, best_estimate, _ = may_start(index, current[:1])
            if best_ok:
                ok, estimate, shrunk_from, current = True, best_estimate, len(current), current[:1]
                result.stop_reason = f"{reason}; it trained only the best survivor of rung {index - 1}"
        if not ok:
            result.stopped_before, result.stop_reason = index, reason
            break
        started = clock()
        scores = train(index, current)
        missing = [c.key for c in current if c.key not in scores]
        if missing:
            raise ValueError(f"rung {index}: the trainer returned no score for {missing[:3]}")
        kept = survivors(current, scores, keep) if keep is not None else []
        result.rungs.append(Rung(index, current, scores, kept, estimate, clock() - started, shrunk_from))
        current = kept
    return result
