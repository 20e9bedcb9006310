"""The capacity-mismatch gap of one cell of a map, with teacher-seed and student-seed variation both in its interval.

A cell trains several teacher sizes, each with n >= 2 teacher seeds, and distils one student size from every teacher
with m student seeds; a student seed fixes the student's initial weights and batch order, identically for every
teacher (paired). Accuracy tables are ``{teacher_seed: {student_seed: accuracy}}``.

The statistic (docs/studies/capacity-map.md): for every teacher size, KD's temperature is chosen on validation; the
best teacher is the size whose best-KD student is most accurate on validation; the gap is the test accuracy of the
best teacher's students minus the largest teacher's, averaged over teacher and student seeds. A positive gap is
capacity mismatch ("On the Efficacy of Knowledge Distillation", Cho & Hariharan, ICCV 2019; "Improved Knowledge
Distillation via Teacher Assistant", Mirzadeh et al., AAAI 2020).

Why not a paired t over student seeds: the students of one teacher size share its few teacher models, so their
errors are correlated through the teacher seed; a paired t over student seeds alone treats the teachers as fixed and
its interval is too narrow whenever teachers of one size differ. Why not a two-level bootstrap: with 2 teacher seeds a
bootstrap resamples 2 values (3 distinct means), underestimates their variance by the factor (n - 1) / n = 1/2 and
gives a percentile interval of a handful of distinct values. The interval here is a variance-components t interval
(method of moments, Satterthwaite degrees of freedom), exact in expectation or conservative for the random-effects
model of a crossed teacher-seed x student-seed layout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .multiplicity import adjusted_p_values, fcr_adjusted_confidence
from .stats import t_quantile

__all__ = ["VERDICTS", "adjusted_bounds", "difference_interval", "family_verdicts", "map_verdicts", "mismatch_gap",
           "one_sided_p_values", "select_best_kd"]

# {teacher_seed: {student_seed: accuracy}}
SeedTable = Mapping[int, Mapping[int, float]]


def _student_seeds(*tables: SeedTable) -> list[int]:
    """The student seeds present for every teacher seed of every table (the paired set)."""
    common: set[int] | None = None
    for table in tables:
        for row in table.values():
            common = set(row) if common is None else common & set(row)
    return sorted(common or ())


def _t_cdf(x: float, dof: float) -> float:
    # scipy.stats costs seconds at import; only the p-values need it
    from scipy.stats import t

    return float(t.cdf(x, dof))


def _null(gap: float | None, reason: str, **extra: Any) -> dict[str, Any]:
    return {"gap": gap, "se": None, "dof": None, "low": None, "high": None, "reason": reason, **extra}


def difference_interval(a: SeedTable, b: SeedTable, *, same_teachers: bool = False,
                        confidence: float = 0.95) -> dict[str, Any]:
    """Mean of a - b over teacher and student seeds, with a variance-components t interval.

    Random-effects model y[t][s][r] = mu_t + A_ts + B_r + C_tr + E_tsr (teacher seed s, student seed r).

    Different teachers (``same_teachers=False``; a and b come from different teacher sizes, their seeds unrelated):
      G = mean_s M_a,s - mean_s M_b,s with M_t,s = mean_r y[t][s][r] (n_a, n_b teacher seeds, m paired student seeds);
      V = var_s(M_a,s) / n_a + var_s(M_b,s) / n_b + var_r(D_r) / m, D_r = mean_s y[a][s][r] - mean_s y[b][s][r];
      the student effect B_r cancels in every D_r (pairing), and E[V] = Var(G) + sigma_E^2 (1/n_a + 1/n_b) / m:
      the residual is counted twice, so the interval is conservative by that term, never too narrow.
    Same teachers (``same_teachers=True``; two methods distilled from the same teacher models, paired on both seeds):
      d[s][r] = a[s][r] - b[s][r]; G = mean d; V = var_s(mean_r d[s][r]) / n + var_r(mean_s d[s][r]) / m, with
      E[V] = Var(G) + sigma_E^2 / (n m) (again conservative by the residual).
    Degrees of freedom (Satterthwaite, Biometrics Bulletin 1946): nu = V^2 / sum_i (v_i^2 / nu_i) over the components
    v_i with nu_i = (number of values - 1). Interval: G +- t_{(1+c)/2, nu} sqrt(V). Variances are sample variances
    (ddof = 1).

    Null (gap given, no interval, ``reason`` says why) with fewer than 2 teacher seeds on a side (teacher variation
    cannot be estimated) or fewer than 2 paired student seeds.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r} is invalid; allowed: a number in (0, 1)")
    for name, table in (("a", a), ("b", b)):
        if not table or any(not row for row in table.values()):
            raise ValueError(f"table {name} must hold at least one teacher seed with at least one student seed, "
                             f"got {dict(table)!r}")
    if same_teachers:
        seeds = sorted(set(a) & set(b))
        if not seeds:
            raise ValueError(f"same_teachers=True needs common teacher seeds, got {sorted(a)} and {sorted(b)}")
        a = {s: a[s] for s in seeds}
        b = {s: b[s] for s in seeds}
    students = _student_seeds(a, b)
    if not students:
        raise ValueError("no student seed is present for every teacher seed of both tables (the pairing is empty)")
    ya = np.array([[a[s][r] for r in students] for s in sorted(a)], dtype=float)  # [n_a, m]
    yb = np.array([[b[s][r] for r in students] for s in sorted(b)], dtype=float)  # [n_b, m]
    n_a, n_b, m = ya.shape[0], yb.shape[0], len(students)
    gap = float(ya.mean() - yb.mean())
    counts = {"teacher_seeds_a": n_a, "teacher_seeds_b": n_b, "student_seeds": m}
    if min(n_a, n_b) < 2:
        return _null(gap, f"{min(n_a, n_b)} teacher seed(s) on one side: teacher-seed variation cannot be "
                          "estimated (at least 2 needed)", **counts)
    if m < 2:
        return _null(gap, "1 paired student seed: student-seed variation cannot be estimated (at least 2 needed)",
                     **counts)
    if same_teachers:
        d = ya - yb
        components = [(float(d.mean(axis=1).var(ddof=1)) / n_a, n_a - 1),
                      (float(d.mean(axis=0).var(ddof=1)) / m, m - 1)]
        names = ("teacher", "student")
    else:
        components = [(float(ya.mean(axis=1).var(ddof=1)) / n_a, n_a - 1),
                      (float(yb.mean(axis=1).var(ddof=1)) / n_b, n_b - 1),
                      (float((ya.mean(axis=0) - yb.mean(axis=0)).var(ddof=1)) / m, m - 1)]
        names = ("teacher_a", "teacher_b", "student")
    variance = sum(v for v, _ in components)
    if variance == 0.0:
        dof, half = math.inf, 0.0
    else:
        dof = variance**2 / sum(v**2 / nu for v, nu in components if v > 0)
        half = t_quantile((1 + confidence) / 2, dof) * math.sqrt(variance)
    return {"gap": gap, "se": math.sqrt(variance), "dof": dof, "low": gap - half, "high": gap + half,
            "reason": None, "variance_components": dict(zip(names, (v for v, _ in components))),
            "confidence": confidence, **counts}


def one_sided_p_values(interval: Mapping[str, Any], threshold: float) -> dict[str, float | None]:
    """p-values of the two one-sided tests of a gap against the threshold delta, from :func:`difference_interval`.

    present: H0 gap <= delta, p = 1 - F_nu((G - delta) / se); absent: H0 gap >= delta, p = F_nu((G - delta) / se),
    F_nu the t distribution's CDF with the interval's degrees of freedom. With se = 0 the p-values are 0 or 1; with no
    interval both are None.
    """
    gap, se, dof = interval.get("gap"), interval.get("se"), interval.get("dof")
    if gap is None or se is None:
        return {"present": None, "absent": None}
    if se == 0.0:
        return {"present": 0.0 if gap > threshold else 1.0, "absent": 0.0 if gap < threshold else 1.0}
    cdf = _t_cdf((gap - threshold) / se, dof)
    return {"present": 1.0 - cdf, "absent": cdf}


def _mean(table: SeedTable) -> float:
    return float(np.mean([v for row in table.values() for v in row.values()]))


def select_best_kd(val: Mapping[float, SeedTable]) -> float:
    """The KD temperature with the highest mean validation accuracy over teacher and student seeds.

    ``val``: {temperature: {teacher_seed: {student_seed: accuracy}}}. Ties go to the lower temperature.
    """
    if not val:
        raise ValueError("val must hold at least one temperature")
    return max(sorted(val), key=lambda tau: (_mean(val[tau]), -tau))


def mismatch_gap(val: Mapping[str, Mapping[float, SeedTable]], test: Mapping[str, Mapping[float, SeedTable]],
                 teacher_params: Mapping[str, int], *, threshold: float, confidence: float = 0.95) -> dict[str, Any]:
    """The capacity-mismatch gap of one cell: best teacher (chosen on validation) minus largest teacher, on test.

    ``val`` / ``test``: {teacher: {temperature: {teacher_seed: {student_seed: accuracy}}}} for the KD students of
    every teacher size; ``teacher_params``: {teacher: parameter count}. Steps:
    1. per teacher, KD's temperature tau_t = :func:`select_best_kd` of its validation table;
    2. best teacher B = argmax_t mean validation accuracy at tau_t (ties go to the larger teacher, so a tie is no gap);
       largest teacher L = argmax_t parameters;
    3. gap = :func:`difference_interval` (different teachers) of test[B][tau_B] against test[L][tau_L], and the
       one-sided p-values against ``threshold`` (:func:`one_sided_p_values`).
    When B = L the gap is 0 by construction (interval [0, 0], p_present = 1, p_absent = 0 if threshold > 0; ``note``
    says so), provided L has the seeds an interval needs (else null, as for B != L).
    ``per_teacher`` lists each teacher's chosen temperature, validation and test mean accuracy.
    Papers: "On the Efficacy of Knowledge Distillation", Cho & Hariharan, ICCV 2019 (the gap);
    "Exploring Dark Knowledge under Various Teacher Capacities and Addressing Capacity Mismatch", Fan, Li, Zhan, FCS
    2026.
    """
    if set(val) != set(test) or set(val) != set(teacher_params) or len(val) < 2:
        raise ValueError(f"val, test and teacher_params must name the same >= 2 teachers, got {sorted(val)}, "
                         f"{sorted(test)} and {sorted(teacher_params)}")
    per_teacher: dict[str, dict[str, Any]] = {}
    for teacher in val:
        tau = select_best_kd(val[teacher])
        if tau not in test[teacher]:
            raise ValueError(f"teacher {teacher!r}: temperature {tau} chosen on validation has no test table")
        per_teacher[teacher] = {"params": int(teacher_params[teacher]), "temperature": tau,
                                "val_accuracy": _mean(val[teacher][tau]), "test_accuracy": _mean(test[teacher][tau])}
    largest = max(per_teacher, key=lambda t: per_teacher[t]["params"])
    best = max(per_teacher, key=lambda t: (per_teacher[t]["val_accuracy"], per_teacher[t]["params"]))
    base = {"best_teacher": best, "largest_teacher": largest, "threshold": threshold, "per_teacher": per_teacher}
    best_table = test[best][per_teacher[best]["temperature"]]
    largest_table = test[largest][per_teacher[largest]["temperature"]]
    interval = difference_interval(best_table, largest_table, confidence=confidence)
    if best == largest and interval["reason"] is None:
        # the same table on both sides: the gap is 0 exactly, and so is its interval
        interval.update(gap=0.0, se=0.0, dof=math.inf, low=0.0, high=0.0,
                        note="the largest teacher gives the best KD student on validation")
    return {**base, **interval, "p_values": one_sided_p_values(interval, threshold)}


VERDICTS = {True: "present", False: "absent", None: "undecided"}


def map_verdicts(cells: Mapping[str, Mapping[str, Any]], *, alpha: float = 0.05,
                 method: str = "bh") -> dict[str, Any]:
    """Per-cell verdicts on the mismatch gap over a family of cells, with the family's error rate controlled.

    ``cells``: {cell key: :func:`mismatch_gap` result}. The family is the cells with an interval (a null cell keeps
    its reason and is not tested). Two one-sided tests per cell against its threshold delta, each at alpha / 2 after
    correction across the family (``bh``: Benjamini-Hochberg, false discovery rate; ``holm``: family-wise error):
      present (holds = True) if the corrected p-value of H0 "gap <= delta" is <= alpha / 2;
      absent (holds = False) if the corrected p-value of H0 "gap >= delta" is <= alpha / 2;
      undecided (holds = None) otherwise.
    With one cell this is the interval rule: present iff the two-sided (1 - alpha) interval lies above delta, absent
    iff below. With BH, the selected cells' one-sided bounds at level 1 - R (alpha/2) / m (Benjamini & Yekutieli,
    JASA 2005) clear delta, so ``adjusted_confidence`` gives the level at which each verdict is an interval verdict.
    """
    tested = [key for key, cell in cells.items() if cell["p_values"]["present"] is not None]
    half = alpha / 2
    adjusted = {direction: dict(zip(tested, adjusted_p_values([cells[k]["p_values"][direction] for k in tested],
                                                               method)))
                for direction in ("present", "absent")}
    out: dict[str, dict[str, Any]] = {}
    for key, cell in cells.items():
        if key not in adjusted["present"]:
            out[key] = {"holds": None, "verdict": "undecided", "reason": cell["reason"], "adjusted_p": None}
            continue
        p_present, p_absent = adjusted["present"][key], adjusted["absent"][key]
        holds = True if p_present <= half else False if p_absent <= half else None
        reason = None if holds is not None else (
            f"the gap's interval does not clear delta = {cell['threshold']:g} after {method} correction over "
            f"{len(tested)} cells")
        out[key] = {"holds": holds, "verdict": VERDICTS[holds], "reason": reason,
                    "adjusted_p": {"present": p_present, "absent": p_absent}}
    selected = {d: sum(1 for k in tested if out[k]["holds"] is (d == "present")) for d in ("present", "absent")}
    confidence = ({d: fcr_adjusted_confidence(selected[d], len(tested), half) for d in selected}
                  if tested and method == "bh" else None)
    return {"cells": out, "num_tested": len(tested), "num_null": len(cells) - len(tested), "alpha": alpha,
            "method": method, "selected": selected, "adjusted_confidence": confidence}


def adjusted_bounds(interval: Mapping[str, Any], lower_confidence: float, upper_confidence: float) -> dict[str, Any]:
    """One-sided bounds of a statistic, each at its own confidence: low = G - t_{c_low, nu} se and
    high = G + t_{c_high, nu} se (``interval`` from :func:`difference_interval`; None bounds without one).

    With the confidences of :func:`map_verdicts` (``adjusted_confidence``: 1 - R q / m per direction, R cells
    selected of m at q = alpha / 2), [low, high] is the false-coverage-rate adjusted interval of Benjamini &
    Yekutieli (JASA 2005): its lower bound clears delta exactly when BH calls the cell "present" (p_present <= R q /
    m), its upper bound lies at or below delta exactly when BH calls it "absent", so the interval rule on it gives
    the map's verdict. A statistic with se = 0 (the best teacher is the largest) has low = high = G.
    """
    gap, se, dof = interval.get("gap"), interval.get("se"), interval.get("dof")
    out = {"lower_confidence": lower_confidence, "upper_confidence": upper_confidence}
    if gap is None or se is None:
        return {"low": None, "high": None, **out}
    if se == 0.0:
        return {"low": gap, "high": gap, **out}
    return {"low": gap - t_quantile(lower_confidence, dof) * se, "high": gap + t_quantile(upper_confidence, dof) * se,
            **out}


def family_verdicts(intervals: Mapping[str, Mapping[str, Any]], threshold: float, *,
                    alpha: float = 0.05) -> dict[str, Any]:
    """Verdicts over a family of statistics against one threshold: BH (the decision), Holm (a sensitivity
    column that never changes a verdict), and each member's BH-adjusted interval (:func:`adjusted_bounds`).

    ``intervals``: {key: :func:`difference_interval` result}. Returns ``{"verdicts": {key: {holds, verdict,
    reason, p_values, bh_p, holm_p, adjusted_interval}}, "family": {num_tested, num_null, selected,
    adjusted_confidence, alpha, method}}``. Per key: holds = True if BH-corrected p(H0: statistic <= threshold)
    <= alpha / 2, False if BH-corrected p(H0: statistic >= threshold) <= alpha / 2, None otherwise
    (:func:`map_verdicts`).
    """
    members = {key: {**dict(iv), "threshold": threshold, "p_values": one_sided_p_values(iv, threshold)}
               for key, iv in intervals.items()}
    bh = map_verdicts(members, alpha=alpha, method="bh")
    holm = map_verdicts(members, alpha=alpha, method="holm")
    confidence = bh["adjusted_confidence"] or {"present": 1 - alpha / 2, "absent": 1 - alpha / 2}
    verdicts = {}
    for key, member in members.items():
        verdict = bh["cells"][key]
        verdicts[key] = {"holds": verdict["holds"], "verdict": verdict["verdict"], "reason": verdict["reason"],
                         "p_values": member["p_values"], "bh_p": verdict["adjusted_p"],
                         "holm_p": holm["cells"][key]["adjusted_p"],
                         "adjusted_interval": adjusted_bounds(member, confidence["present"], confidence["absent"])}
    family = {k: bh[k] for k in ("num_tested", "num_null", "selected", "adjusted_confidence", "alpha", "method")}
    family["holm_selected"] = holm["selected"]
    return {"verdicts": verdicts, "family": family}
