"""Multiple-testing corrections against adjusted p-values worked out by hand."""

from __future__ import annotations

import pytest

from kdlab.analysis.multiplicity import (adjusted_p_values, benjamini_hochberg, fcr_adjusted_confidence, holm,
                                         rejected)


def test_benjamini_hochberg_by_hand() -> None:
    # sorted p: 0.001, 0.01, 0.03, 0.04, 0.2 (m = 5); m p_(i) / i: 0.005, 0.025, 0.05, 0.05, 0.2;
    # running minimum from the top leaves them as they are. Input order is kept.
    p = [0.04, 0.001, 0.2, 0.03, 0.01]
    assert benjamini_hochberg(p) == pytest.approx([0.05, 0.005, 0.2, 0.05, 0.025])
    assert rejected(p, 0.05, "bh") == [True, True, False, True, True]
    assert rejected(p, 0.03, "bh") == [False, True, False, False, True]


def test_benjamini_hochberg_step_up_lifts_an_earlier_p_value() -> None:
    # m p_(i) / i: 3 * 0.02 / 1 = 0.06, 3 * 0.03 / 2 = 0.045, 3 * 0.04 / 3 = 0.04 -> running minimum from the top:
    # 0.04, 0.04, 0.04 (the step-up: the largest p decides for the smaller ones)
    assert benjamini_hochberg([0.02, 0.03, 0.04]) == pytest.approx([0.04, 0.04, 0.04])


def test_holm_by_hand() -> None:
    # sorted p: 0.001, 0.01, 0.03, 0.04, 0.2; (m - i + 1) p: 0.005, 0.04, 0.09, 0.08, 0.2; running maximum:
    # 0.005, 0.04, 0.09, 0.09, 0.2
    p = [0.04, 0.001, 0.2, 0.03, 0.01]
    assert holm(p) == pytest.approx([0.09, 0.005, 0.2, 0.09, 0.04])
    assert rejected(p, 0.05, "holm") == [False, True, False, False, True]
    assert holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_one_test_is_left_alone_and_an_empty_family_is_empty() -> None:
    assert benjamini_hochberg([0.03]) == [0.03] and holm([0.03]) == [0.03]
    assert benjamini_hochberg([]) == [] and holm([]) == []


def test_fcr_adjusted_confidence() -> None:
    assert fcr_adjusted_confidence(3, 40, 0.05) == pytest.approx(1 - 3 * 0.05 / 40)
    assert fcr_adjusted_confidence(0, 40, 0.05) == pytest.approx(1 - 0.05 / 40)
    assert fcr_adjusted_confidence(1, 1, 0.05) == pytest.approx(0.95)


@pytest.mark.parametrize("call, match", [
    (lambda: benjamini_hochberg([0.1, 1.2]), "p_values must lie in"),
    (lambda: holm([float("nan")]), "p_values must lie in"),
    (lambda: adjusted_p_values([0.1], "bonferonni"), "allowed: bh, holm"),
    (lambda: rejected([0.1], 0.0), "level=0.0"),
    (lambda: fcr_adjusted_confidence(5, 4, 0.05), "num_selected=5"),
])
def test_bad_input(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()
