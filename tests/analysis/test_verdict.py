"""The one claim evaluator: three-valued verdicts from intervals, on hand-made numbers; rule and evidence text."""

from __future__ import annotations

import math

import pytest

from kdlab.analysis.stats import binomial_interval, bootstrap_over_groups
from kdlab.analysis.verdict import Claim, Measurement, NotApplicable, Rule, decide, paired_measurement

NAN = math.nan


@pytest.mark.parametrize("op, low, high, expected", [
    (">", 0.01, 0.03, True), (">", -0.01, 0.03, None), (">", -0.03, 0.0, False), (">", 0.0, 0.02, None),
    (">=", 0.0, 0.02, True), (">=", -0.02, -0.001, False), (">=", -0.02, 0.0, None),
    ("<", -0.03, -0.01, True), ("<", -0.01, 0.01, None), ("<", 0.0, 0.02, False),
    ("<=", -0.03, 0.0, True), ("<=", 0.001, 0.02, False), ("<=", 0.0, 0.02, None),
    (">", NAN, NAN, None),
])
def test_decide_against_zero(op, low, high, expected):
    assert decide(Rule(op, 0.0), low, high) is expected


def test_decide_threshold_and_within():
    assert decide(Rule("<=", -0.8), -1.0, -0.8) is True
    assert decide(Rule("<=", -0.8), -0.6, -0.2) is False
    assert decide(Rule("<=", -0.8), -1.0, -0.4) is None
    within = Rule("within", 0.01)
    assert decide(within, -0.008, 0.009) is True
    assert decide(within, -0.04, -0.02) is False
    assert decide(within, 0.02, 0.03) is False
    assert decide(within, -0.004, 0.02) is None
    with pytest.raises(ValueError, match="low > high"):
        decide(Rule(">", 0.0), 0.2, 0.1)
    with pytest.raises(ValueError, match="op='>>'"):
        Rule(">>", 0.0)


def test_rule_text_is_generated_from_the_rule():
    assert Rule(">", 0.0, "points", 100).text() == (
        "holds if the 95% interval lies above 0 points; does not hold if it lies at or below 0 points; undecided "
        "otherwise")
    assert Rule(">", -0.005, "points", 100).text() == (
        "holds if the 95% interval lies above -0.5 points; does not hold if it lies at or below -0.5 points; "
        "undecided otherwise")
    assert Rule("within", 0.01, "points", 100).text(0.9) == (
        "holds if the 90% interval lies within ±1 points; does not hold if it lies entirely outside ±1 points; "
        "undecided otherwise")
    assert Rule(">", 0.01, "points", 100).text(interval="BH-adjusted interval") == (
        "holds if the BH-adjusted interval lies above 1 points; does not hold if it lies at or below 1 points; "
        "undecided otherwise")
    assert Rule("<=", -0.8).text() == ("holds if the 95% interval lies at or below -0.8; does not hold if it lies "
                                        "above -0.8; undecided otherwise")


def _claim(measure):
    return Claim("beats", "A beats B", "A - B, test accuracy (points)", Rule(">", 0.0, "points", 100), measure,
                 precondition="B was trained", selection="the best A on validation")


def test_claim_entry_true_false_null_and_not_applicable():
    diff = {"mean": 0.02, "low": 0.01, "high": 0.03, "n": 3}
    entry = _claim(lambda r: paired_measurement(diff, "A 85.0%, B 83.0%", {"A": "kd_T4"}, "validation")).evaluate({})
    assert entry["holds"] is True and entry["not_applicable"] is None
    assert entry["interval"] == [0.01, 0.03] and entry["n"] == 3 and entry["estimate"] == 0.02
    assert entry["selected_on"] == "validation" and entry["selections"] == {"A": "kd_T4"}
    assert entry["rule"].startswith("holds if the 95% interval lies above 0 points")
    assert entry["evidence"] == ("+2.00 [+1.00, +3.00] points (95% paired t interval over seeds, n = 3); "
                                 "A 85.0%, B 83.0%")
    assert _claim(lambda r: paired_measurement({"mean": -0.02, "low": -0.03, "high": -0.01, "n": 3})).evaluate(
        {})["holds"] is False
    undecided = _claim(lambda r: paired_measurement({"mean": 0.01, "low": -0.01, "high": 0.03, "n": 3})).evaluate({})
    assert undecided["holds"] is None and undecided["not_applicable"] is None
    one_seed = _claim(lambda r: paired_measurement({"mean": 0.05, "low": NAN, "high": NAN, "n": 1})).evaluate({})
    assert one_seed["holds"] is None and one_seed["interval"] is None
    assert one_seed["evidence"] == "+5.00 points (no interval: n = 1)"
    na = _claim(lambda r: NotApplicable("B was not trained", "only A ran")).evaluate({})
    assert na["holds"] is None and na["not_applicable"] == "B was not trained" and na["n"] == 0
    assert na["evidence"] == "not applicable: B was not trained; only A ran"


def test_measurement_without_interval_is_undecided():
    m = Measurement(0.3, NAN, NAN, 1, "bootstrap over teacher seeds")
    assert not m.has_interval
    assert Claim("c", "c", "s", Rule(">", 0.0), lambda r: m).evaluate({})["holds"] is None


def test_bootstrap_over_groups():
    def slope(groups):  # mean of the last group minus mean of the first
        return sum(groups[-1]) / len(groups[-1]) - sum(groups[0]) / len(groups[0])

    out = bootstrap_over_groups([[1.0, 1.2], [2.0, 2.4]], slope, num_bootstrap=500, seed=0)
    assert out["estimate"] == pytest.approx(1.1) and out["n"] == 2
    # every replicate mean lies between the group's extremes: 2.0 - 1.2 = 0.8 <= slope <= 2.4 - 1.0 = 1.4
    assert 0.8 <= out["low"] < out["estimate"] < out["high"] <= 1.4
    single = bootstrap_over_groups([[1.0], [2.0, 2.4]], slope)
    assert math.isnan(single["low"]) and single["n"] == 1 and single["estimate"] == pytest.approx(1.2)


def test_binomial_interval_clopper_pearson():
    # scipy-free check: with k = n the lower end is (alpha/2)^(1/n)
    out = binomial_interval(10, 10)
    assert out["high"] == 1.0 and out["low"] == pytest.approx(0.025 ** (1 / 10))
    out = binomial_interval(0, 6)
    assert out["low"] == 0.0 and out["high"] == pytest.approx(1 - 0.025 ** (1 / 6))
    mid = binomial_interval(5, 10)
    assert mid["low"] == pytest.approx(0.187086, abs=1e-6) and mid["high"] == pytest.approx(0.812914, abs=1e-6)
    with pytest.raises(ValueError):
        binomial_interval(3, 2)
