"""The capacity map's statistics from accuracy tables: each cell's gap and verdict, each remedy's three statistics.

Pure functions of nested tables ``{teacher_seed: {student_seed: accuracy}}`` (docs/studies/capacity-map.md, "The
statistic", "Decision rule per cell", "Multiplicity across cells", "Remedies"), so they are checked on hand-made
numbers; the study feeds them the runs' accuracies. Everything a verdict needs is chosen on validation accuracy
first (KD's temperature per teacher, the best teacher, each remedy's configuration); test accuracy is read only for
the chosen comparisons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..analysis.mismatch_gap import difference_interval, family_verdicts, mismatch_gap
from ..tuning import TrialResult, select_trial

__all__ = ["GAIN", "CLOSES", "ASYMMETRY", "REMEDY_STATISTICS", "cell_statistics", "choose_configuration",
           "decide_cells", "decide_remedies", "remedy_statistics", "table_mean"]

# {teacher_seed: {student_seed: accuracy}}
SeedTable = Mapping[int, Mapping[int, float]]

GAIN, CLOSES, ASYMMETRY = "gain", "closes", "asymmetry"
# statistic -> (threshold as a multiple of the map's delta, what it compares)
REMEDY_STATISTICS: dict[str, tuple[float, str]] = {
    GAIN: (0.0, "remedy from L - best KD from L (same teacher models)"),
    CLOSES: (-1.0, "remedy from L - best KD from the best teacher B"),
    ASYMMETRY: (0.0, "ATS from L - its symmetric control from L (same teacher models)"),
}


def table_mean(table: SeedTable) -> float:
    """Mean over teacher and student seeds."""
    return float(np.mean([v for row in table.values() for v in row.values()]))


def _zero_interval(table: SeedTable) -> dict[str, Any]:
    students = len(next(iter(table.values())))
    return {"gap": 0.0, "se": 0.0, "dof": float("inf"), "low": 0.0, "high": 0.0, "reason": None,
            "teacher_seeds_a": len(table), "teacher_seeds_b": len(table), "student_seeds": students}


def cell_statistics(val: Mapping[str, Mapping[float, SeedTable]], test: Mapping[str, Mapping[float, SeedTable]],
                    params: Mapping[str, int], threshold: float) -> dict[str, Any]:
    """One cell: the gap G = best teacher B minus largest teacher L (:func:`kdlab.analysis.mismatch_gap.mismatch_gap`)
    and, per teacher t, its best-KD student minus L's on test with the variance-components 95% interval (the heat
    map's entries: description, not verdicts; L against itself is 0 with interval [0, 0]).

    ``val`` / ``test``: {teacher: {temperature: {teacher_seed: {student_seed: accuracy}}}}; ``params``: {teacher:
    parameter count}.
    """
    gap = mismatch_gap(val, test, params, threshold=threshold)
    largest = gap["largest_teacher"]
    reference = test[largest][gap["per_teacher"][largest]["temperature"]]
    for teacher, row in gap["per_teacher"].items():
        table = test[teacher][row["temperature"]]
        row["minus_largest"] = (_zero_interval(table) if teacher == largest
                                else difference_interval(table, reference))
    return gap


def decide_cells(gaps: Mapping[str, Mapping[str, Any]], threshold: float, alpha: float) -> dict[str, Any]:
    """The map's verdicts: every cell's gap against delta = ``threshold``, Benjamini-Hochberg over the family of
    tested cells at alpha / 2 per direction, Holm alongside, and each cell's BH-adjusted interval
    (:func:`kdlab.analysis.mismatch_gap.family_verdicts`)."""
    return family_verdicts(gaps, threshold, alpha=alpha)


def choose_configuration(val: Sequence[SeedTable], values: Sequence[Mapping[str, Any]]) -> int:
    """The configuration with the best mean validation accuracy over its teacher-seed x student-seed runs; the
    earlier one on a tie (``kdlab.tuning.select_trial``: each configuration is one trial of the equal budget)."""
    trials = [TrialResult(i, dict(v), {k: acc for k, acc in enumerate(a for row in table.values()
                                                                       for a in row.values())})
              for i, (table, v) in enumerate(zip(val, values))]
    return select_trial(trials)


def remedy_statistics(val: Sequence[SeedTable], test: Sequence[SeedTable], values: Sequence[Mapping[str, Any]],
                      kd_largest: SeedTable, kd_best: SeedTable, best_is_largest: bool,
                      control_test: SeedTable | None = None) -> dict[str, Any]:
    """A remedy in one cell: the configuration chosen on validation and its statistics on test, each a
    variance-components 95% interval (:func:`kdlab.analysis.mismatch_gap.difference_interval`):

    - ``gain``: remedy from L minus L's best KD (paired form: the same teacher models);
    - ``closes``: remedy from L minus the best teacher B's best KD (different teachers; the paired form when B = L);
    - ``asymmetry`` (with ``control_test``, ATS only): ATS minus its symmetric control from L (paired form).

    ``val`` / ``test``: per configuration {teacher_seed: {student_seed: accuracy}}.
    """
    chosen = choose_configuration(val, values)
    out = {"chosen": chosen, "values": dict(values[chosen]),
           "val_accuracy": [table_mean(t) for t in val], "test_accuracy": table_mean(test[chosen]),
           GAIN: difference_interval(test[chosen], kd_largest, same_teachers=True),
           CLOSES: difference_interval(test[chosen], kd_best, same_teachers=best_is_largest)}
    if control_test is not None:
        out[ASYMMETRY] = difference_interval(test[chosen], control_test, same_teachers=True)
    return out


def decide_remedies(stats: Mapping[str, Mapping[str, Mapping[str, Any]]], delta: float,
                    alpha: float) -> dict[str, Any]:
    """Verdicts of every remedy statistic: per statistic, BH over all (cell, remedy) pairs that have it, at alpha / 2
    per direction, against its threshold (gain 0, closes -delta, asymmetry 0).

    ``stats``: {cell key: {remedy: :func:`remedy_statistics` result}}. Returns {statistic: family_verdicts result
    keyed by "cell key|remedy"}.
    """
    out = {}
    for statistic, (multiple, _) in REMEDY_STATISTICS.items():
        intervals = {f"{cell}|{remedy}": s[statistic] for cell, remedies in stats.items()
                     for remedy, s in remedies.items() if statistic in s}
        out[statistic] = family_verdicts(intervals, multiple * delta, alpha=alpha) if intervals else None
    return out
