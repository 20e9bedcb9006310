"""The evidence's rank agreement on hand-made rankings."""

from __future__ import annotations

import pytest

from kdlab.advise.evidence import rank_agreement


def test_rank_agreement_identical_reversed_and_partial():
    full = {"a/kd": 0.9, "b/kd": 0.8, "a/dkd": 0.7}
    same = rank_agreement(["a/kd", "b/kd", "a/dkd"], full)
    assert same["spearman"] == pytest.approx(1.0) and same["top1"] is True
    reverse = rank_agreement(["a/dkd", "b/kd", "a/kd"], full)
    assert reverse["spearman"] == pytest.approx(-1.0) and reverse["top1"] is False
    assert reverse["pilot_top"] == "a/dkd" and reverse["full_top"] == "a/kd"
    # one swap of three: ranks (1, 2, 3) vs (2, 1, 3) -> rho = 1 - 6 * 2 / (3 * 8) = 0.5
    assert rank_agreement(["b/kd", "a/kd", "a/dkd"], full)["spearman"] == pytest.approx(0.5)
    assert rank_agreement(["a/kd"], full) == {"spearman": None, "top1": None, "pairs": 1}
