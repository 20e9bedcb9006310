"""The capacity-mismatch gap statistic and its verdicts on hand-made accuracy tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import t as student_t

from kdlab.analysis.mismatch_gap import (adjusted_bounds, difference_interval, family_verdicts, map_verdicts,
                                         mismatch_gap, one_sided_p_values, select_best_kd)


def table(rows: list[list[float]]) -> dict[int, dict[int, float]]:
    """{teacher_seed: {student_seed: accuracy}} from rows = teacher seeds, columns = student seeds."""
    return {s: {r: v for r, v in enumerate(row)} for s, row in enumerate(rows)}


# Teacher seeds as rows, student seeds as columns.
BEST = table([[0.70, 0.71, 0.72], [0.71, 0.72, 0.73]])
LARGEST = table([[0.60, 0.61, 0.62], [0.61, 0.62, 0.63]])


def test_clear_gap_by_hand() -> None:
    # teacher-seed means: best 0.71, 0.72; largest 0.61, 0.62 -> G = 0.10
    # var_s = (0.005^2 * 2) / 1 = 5e-5 on each side, / n = 2 -> 2.5e-5 each; D_r = 0.10 for every r -> 0
    # V = 5e-5, Satterthwaite nu = V^2 / (2 * (2.5e-5)^2 / 1) = 2, t_{0.975, 2} = 4.302652729911275 (tables)
    result = difference_interval(BEST, LARGEST)
    half = 4.302652729911275 * math.sqrt(5e-5)
    assert result["gap"] == pytest.approx(0.10, abs=1e-12)
    assert result["se"] == pytest.approx(math.sqrt(5e-5), rel=1e-9)
    assert result["dof"] == pytest.approx(2.0, rel=1e-9)
    assert result["low"] == pytest.approx(0.10 - half, rel=1e-9)
    assert result["high"] == pytest.approx(0.10 + half, rel=1e-9)
    assert result["variance_components"] == pytest.approx({"teacher_a": 2.5e-5, "teacher_b": 2.5e-5, "student": 0.0},
                                                          abs=1e-15)
    assert result["reason"] is None
    assert (result["teacher_seeds_a"], result["teacher_seeds_b"], result["student_seeds"]) == (2, 2, 3)


def test_student_variation_enters_through_the_paired_differences() -> None:
    # same teacher-seed means as above, but the per-student-seed differences now vary: D_r = 0.08, 0.10, 0.12
    best = table([[0.69, 0.71, 0.73], [0.70, 0.72, 0.74]])
    largest = table([[0.61, 0.61, 0.61], [0.62, 0.62, 0.62]])
    result = difference_interval(best, largest)
    v_teacher, v_student = 2.5e-5, 0.0004 / 3  # var(0.08, 0.10, 0.12) = 4e-4, / m = 3
    variance = 2 * v_teacher + v_student
    dof = variance**2 / (2 * v_teacher**2 / 1 + v_student**2 / 2)
    assert result["gap"] == pytest.approx(0.10, abs=1e-12)
    assert result["se"] == pytest.approx(math.sqrt(variance), rel=1e-9)
    assert result["dof"] == pytest.approx(dof, rel=1e-9)
    assert result["high"] - result["gap"] == pytest.approx(student_t.ppf(0.975, dof) * math.sqrt(variance), rel=1e-9)


def test_same_teachers_pair_both_seeds() -> None:
    # remedy - KD from the same teacher models: d = [[0.01, 0.02, 0.03], [0.03, 0.04, 0.05]]
    # G = 0.03; teacher-seed means of d 0.02, 0.04 -> var 2e-4 / 2 = 1e-4;
    # student-seed means of d 0.02, 0.03, 0.04 -> var 1e-4 / 3
    kd = table([[0.70, 0.70, 0.70], [0.70, 0.70, 0.70]])
    remedy = table([[0.71, 0.72, 0.73], [0.73, 0.74, 0.75]])
    result = difference_interval(remedy, kd, same_teachers=True)
    v1, v2 = 1e-4, 1e-4 / 3
    assert result["gap"] == pytest.approx(0.03, abs=1e-12)
    assert result["se"] == pytest.approx(math.sqrt(v1 + v2), rel=1e-9)
    assert result["dof"] == pytest.approx((v1 + v2) ** 2 / (v1**2 / 1 + v2**2 / 2), rel=1e-9)
    assert set(result["variance_components"]) == {"teacher", "student"}


def test_one_teacher_seed_is_null_with_a_reason() -> None:
    result = difference_interval(table([[0.70, 0.71, 0.72]]), LARGEST)
    assert result["gap"] == pytest.approx(0.71 - 0.615)
    assert result["low"] is None and result["high"] is None
    assert "teacher-seed variation cannot be estimated" in result["reason"]
    assert one_sided_p_values(result, 0.01) == {"present": None, "absent": None}
    one_student = difference_interval(table([[0.7], [0.71]]), table([[0.6], [0.62]]))
    assert "1 paired student seed" in one_student["reason"]


def test_only_student_seeds_every_teacher_seed_has_are_paired() -> None:
    best = {0: {0: 0.70, 1: 0.71, 2: 0.72, 9: 0.10}, 1: {0: 0.71, 1: 0.72, 2: 0.73}}
    result = difference_interval(best, LARGEST)
    assert result["student_seeds"] == 3 and result["gap"] == pytest.approx(0.10, abs=1e-12)


def test_p_values_against_the_threshold() -> None:
    result = difference_interval(BEST, LARGEST)
    p = one_sided_p_values(result, 0.01)
    t_stat = (0.10 - 0.01) / math.sqrt(5e-5)
    assert p["present"] == pytest.approx(student_t.sf(t_stat, 2), rel=1e-9)
    assert p["present"] + p["absent"] == pytest.approx(1.0)
    assert one_sided_p_values({"gap": 0.0, "se": 0.0, "dof": math.inf}, 0.01) == {"present": 1.0, "absent": 0.0}


def test_interval_keeps_its_coverage_when_teachers_of_one_size_differ() -> None:
    # Random-effects model with a large teacher-seed effect: 2 teacher seeds, 3 student seeds, true gap 0.
    # The variance-components interval must cover 0 about 95% of the time (it is conservative by design);
    # a paired t over student seeds alone ignores the teacher seeds and covers far less often.
    rng = np.random.default_rng(0)
    reps, n, m = 1000, 2, 3
    covered = naive_covered = 0
    for _ in range(reps):
        student = rng.normal(0, 1.0, m)
        sides = []
        for _side in range(2):
            teacher = rng.normal(0, 1.0, n)[:, None]
            sides.append(teacher + student[None, :] + rng.normal(0, 0.3, (1, m)) + rng.normal(0, 0.5, (n, m)))
        result = difference_interval(table(sides[0].tolist()), table(sides[1].tolist()))
        covered += result["low"] <= 0 <= result["high"]
        d = sides[0].mean(0) - sides[1].mean(0)
        half = student_t.ppf(0.975, m - 1) * d.std(ddof=1) / math.sqrt(m)
        naive_covered += abs(d.mean()) <= half
    # Monte Carlo standard error of a 95% coverage over 1000 runs: 0.007
    assert covered / reps >= 0.95 - 2 * 0.007
    assert naive_covered / reps < 0.95 - 5 * 0.007


def gap_cell(best_test: dict, largest_test: dict, *, best_val: float = 0.72, largest_val: float = 0.70,
             threshold: float = 0.01) -> dict:
    """A 3-teacher cell: small (worse on validation), best, largest; one temperature each."""
    flat = table([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])
    const = lambda v: table([[v] * 3, [v] * 3])  # noqa: E731
    val = {"small": {4.0: const(0.60)}, "mid": {4.0: const(best_val)}, "large": {4.0: const(largest_val)}}
    test = {"small": {4.0: flat}, "mid": {4.0: best_test}, "large": {4.0: largest_test}}
    return mismatch_gap(val, test, {"small": 10_000, "mid": 100_000, "large": 1_000_000}, threshold=threshold)


def test_mismatch_gap_picks_the_best_teacher_on_validation_and_reads_test() -> None:
    cell = gap_cell(BEST, LARGEST)
    assert cell["best_teacher"] == "mid" and cell["largest_teacher"] == "large"
    assert cell["gap"] == pytest.approx(0.10, abs=1e-12)
    assert cell["per_teacher"]["mid"]["test_accuracy"] == pytest.approx(0.715)
    assert cell["per_teacher"]["large"]["val_accuracy"] == pytest.approx(0.70)
    assert cell["p_values"]["present"] < 0.01


def test_temperature_is_chosen_on_validation_not_on_test() -> None:
    val = {2.0: table([[0.70, 0.70], [0.70, 0.70]]), 4.0: table([[0.65, 0.65], [0.65, 0.65]])}
    assert select_best_kd(val) == 2.0
    assert select_best_kd({2.0: table([[0.7]]), 4.0: table([[0.7]])}) == 2.0  # ties go to the lower temperature
    test_prefers_4 = {2.0: table([[0.60, 0.60], [0.60, 0.60]]), 4.0: table([[0.90, 0.90], [0.90, 0.90]])}
    other = {2.0: table([[0.1, 0.1], [0.1, 0.1]])}
    cell = mismatch_gap({"a": val, "b": other}, {"a": test_prefers_4, "b": other}, {"a": 1, "b": 2},
                        threshold=0.01)
    assert cell["per_teacher"]["a"]["temperature"] == 2.0
    assert cell["per_teacher"]["a"]["test_accuracy"] == pytest.approx(0.60)


def test_largest_teacher_best_on_validation_means_no_gap() -> None:
    cell = gap_cell(BEST, LARGEST, best_val=0.70, largest_val=0.72)
    assert cell["best_teacher"] == "large"
    assert (cell["gap"], cell["low"], cell["high"]) == (0.0, 0.0, 0.0)
    assert "largest teacher gives the best KD student" in cell["note"]
    assert cell["p_values"] == {"present": 1.0, "absent": 0.0}
    tie = gap_cell(BEST, LARGEST, best_val=0.70, largest_val=0.70)
    assert tie["best_teacher"] == "large"  # a tie on validation is no evidence of a gap


def test_verdicts_clear_gap_no_gap_undecided_and_null() -> None:
    # three teacher seeds a side, seeds within 0.2 points: gap 0.03 points, interval about +-0.2 points
    no_gap_best = table([[0.700, 0.701, 0.702], [0.701, 0.702, 0.703], [0.700, 0.701, 0.702]])
    no_gap_largest = table([[0.699, 0.700, 0.701], [0.700, 0.701, 0.702], [0.701, 0.702, 0.703]])
    noisy_best = table([[0.74, 0.70, 0.72], [0.69, 0.73, 0.70]])
    noisy_largest = table([[0.70, 0.71, 0.69], [0.71, 0.69, 0.70]])
    cells = {
        "clear": gap_cell(BEST, LARGEST),
        "none": gap_cell(no_gap_best, no_gap_largest),
        "noisy": gap_cell(noisy_best, noisy_largest),
        "one-seed": gap_cell(table([[0.71, 0.72, 0.73]]), LARGEST),
    }
    assert cells["none"]["high"] < 0.01 and cells["noisy"]["low"] < 0.01 < cells["noisy"]["high"]
    verdicts = map_verdicts(cells)
    by_cell = verdicts["cells"]
    assert by_cell["clear"]["holds"] is True and by_cell["clear"]["verdict"] == "present"
    assert by_cell["none"]["holds"] is False and by_cell["none"]["verdict"] == "absent"
    assert by_cell["noisy"]["holds"] is None and "does not clear delta = 0.01" in by_cell["noisy"]["reason"]
    assert by_cell["one-seed"]["holds"] is None and "teacher-seed variation" in by_cell["one-seed"]["reason"]
    assert verdicts["num_tested"] == 3 and verdicts["num_null"] == 1
    assert verdicts["selected"] == {"present": 1, "absent": 1}
    assert verdicts["adjusted_confidence"]["present"] == pytest.approx(1 - 1 * 0.025 / 3)


def test_a_cell_significant_alone_can_be_undecided_in_a_family() -> None:
    def cell(p_present: float) -> dict:
        return {"p_values": {"present": p_present, "absent": 1 - p_present}, "reason": None, "threshold": 0.01}

    assert map_verdicts({"a": cell(0.02)})["cells"]["a"]["holds"] is True  # alone: 0.02 <= 0.025
    # in a family of 4 (p_present = 0.001, 0.02, 0.5, 0.999) BH lifts 0.02 to 4 * 0.02 / 2 = 0.04 > 0.025
    family = map_verdicts({"a": cell(0.02), "b": cell(0.001), "c": cell(0.5), "d": cell(0.999)})
    assert family["cells"]["a"]["holds"] is None
    assert family["cells"]["a"]["adjusted_p"]["present"] == pytest.approx(0.04)
    assert family["cells"]["b"]["holds"] is True
    # p_absent of d = 0.001 -> 4 * 0.001 / 1 = 0.004: absent; c (p_absent 0.5) stays undecided
    assert family["cells"]["d"]["holds"] is False and family["cells"]["c"]["holds"] is None
    holm_family = map_verdicts({"a": cell(0.02), "b": cell(0.001)}, method="holm")
    assert holm_family["cells"]["a"]["holds"] is True  # Holm: 0.02 * 1 after 0.001 * 2; max(0.002, 0.02) = 0.02
    assert holm_family["adjusted_confidence"] is None


def interval(gap: float, se: float | None, dof: float | None = 20.0, reason: str | None = None) -> dict:
    """A hand-made difference_interval result (the fields the verdicts read)."""
    return {"gap": gap, "se": se, "dof": dof, "reason": reason}


def test_family_verdicts_decide_by_bh_and_their_adjusted_interval_gives_the_same_verdict() -> None:
    # t = (G - delta) / se: a 8, b -5, c 0.2 (undecided), d without interval (null, not tested)
    intervals = {"a": interval(0.05, 0.005), "b": interval(0.0, 0.002), "c": interval(0.012, 0.01),
                 "d": interval(0.02, None, None, reason="1 teacher seed(s) on one side")}
    out = family_verdicts(intervals, 0.01)
    v = out["verdicts"]
    assert [v[k]["holds"] for k in "abcd"] == [True, False, None, None]
    assert v["d"]["reason"] == "1 teacher seed(s) on one side" and v["d"]["adjusted_interval"]["low"] is None
    family = out["family"]
    assert family["num_tested"] == 3 and family["num_null"] == 1
    assert family["selected"] == {"present": 1, "absent": 1} and family["holm_selected"] == {"present": 1, "absent": 1}
    # one cell selected per direction out of 3 at q = 0.025: both bounds at 1 - 0.025 / 3 (Benjamini & Yekutieli)
    level = 1 - 0.025 / 3
    assert family["adjusted_confidence"] == {"present": pytest.approx(level), "absent": pytest.approx(level)}
    q = student_t.ppf(level, 20.0)
    assert v["a"]["adjusted_interval"]["low"] == pytest.approx(0.05 - q * 0.005, rel=1e-9)
    assert v["b"]["adjusted_interval"]["high"] == pytest.approx(0.0 + q * 0.002, rel=1e-9)
    # the interval rule on the adjusted interval is BH's verdict: low > delta present, high <= delta absent
    for key in "abc":
        bounds = v[key]["adjusted_interval"]
        rule = True if bounds["low"] > 0.01 else False if bounds["high"] <= 0.01 else None
        assert rule is v[key]["holds"]
    # Holm's p-values ride along: the smallest of 3 p-values times 3
    p_a = 1 - student_t.cdf(8.0, 20.0)
    assert v["a"]["holm_p"]["present"] == pytest.approx(3 * p_a, rel=1e-6)
    assert v["a"]["bh_p"]["present"] == pytest.approx(3 * p_a, rel=1e-6)


def test_adjusted_bounds_without_variance_and_without_interval() -> None:
    assert adjusted_bounds(interval(0.0, 0.0, math.inf), 0.99, 0.99)["low"] == 0.0
    none = adjusted_bounds(interval(0.02, None, None), 0.99, 0.98)
    assert none == {"low": None, "high": None, "lower_confidence": 0.99, "upper_confidence": 0.98}
    bounds = adjusted_bounds(interval(0.03, 0.01, 5.0), 0.975, 0.9)
    assert bounds["low"] == pytest.approx(0.03 - student_t.ppf(0.975, 5.0) * 0.01, rel=1e-9)
    assert bounds["high"] == pytest.approx(0.03 + student_t.ppf(0.9, 5.0) * 0.01, rel=1e-9)
