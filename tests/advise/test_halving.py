"""Successive halving: declared survivors per rung, choices on validation only."""

from __future__ import annotations

import pytest

from kdlab.advise.halving import Candidate, first_rung, successive_halving, survivors
from kdlab.advise.pilot import rung_scores


def _always(rung, candidates):
    return True, None, None


def _scored(table):
    """A trainer returning ``table[key]`` as the validation accuracy of seed 0 for each candidate of the rung."""
    calls = []

    def train(rung, candidates):
        calls.append((rung, [c.key for c in candidates]))
        return {c.key: {0: table[c.key] + 0.001 * rung} for c in candidates}
    return train, calls


def test_first_rung_takes_declared_points_of_each_space_for_every_teacher():
    cands = first_rung(["a", "b"], ["kd", "dkd"], points=3, search_seed=0)
    assert len(cands) == 2 * 2 * 3
    kd_a = [c.hyperparameters for c in cands if c.pair == ("a", "kd")]
    kd_b = [c.hyperparameters for c in cands if c.pair == ("b", "kd")]
    assert kd_a == kd_b  # the same points for every teacher
    assert all(set(p) == {"temperature", "alpha"} for p in kd_a)
    # a budget above the grid takes the whole grid (kd declares 4 temperatures x 3 alphas)
    assert len(first_rung(["a"], ["kd"], points=50, search_seed=0)) == 12


def test_each_rung_keeps_the_declared_number_of_survivors():
    cands = [Candidate("t", "kd", (("temperature", float(i)),)) for i in range(9)]
    table = {c.key: 0.5 + 0.01 * i for i, c in enumerate(cands)}
    train, calls = _scored(table)
    result = successive_halving(cands, [4, 2, None], train, _always, clock=lambda: 0.0)
    assert [len(r.candidates) for r in result.rungs] == [9, 4, 2]
    assert [len(r.survivors) for r in result.rungs] == [4, 2, 0]
    # the best by validation survive, best first
    assert [c.key for c in result.rungs[0].survivors] == [cands[i].key for i in (8, 7, 6, 5)]
    assert calls[1][1] == [cands[i].key for i in (8, 7, 6, 5)]
    assert result.chosen() == cands[8]
    assert result.stopped_before is None


def test_keep_larger_than_the_rung_keeps_everyone():
    cands = [Candidate("t", "kd", (("temperature", float(i)),)) for i in range(3)]
    train, _ = _scored({c.key: 0.5 for c in cands})
    result = successive_halving(cands, [5, None], train, _always, clock=lambda: 0.0)
    assert [len(r.candidates) for r in result.rungs] == [3, 3]


def test_survivors_rank_by_mean_over_seeds_and_ties_go_to_the_earlier():
    a, b, c = (Candidate("t", "kd", (("temperature", float(i)),)) for i in range(3))
    scores = {a.key: {0: 0.8, 1: 0.6}, b.key: {0: 0.7, 1: 0.7}, c.key: {0: 0.9, 1: 0.1}}
    assert survivors([a, b, c], scores, 2) == [a, b]  # a and b tie at 0.7: a is earlier; c's mean is 0.5
    scores[b.key] = {0: 0.71, 1: 0.71}
    assert survivors([a, b, c], scores, 1) == [b]


def test_a_rung_that_may_not_start_stops_the_schedule():
    cands = [Candidate("t", "kd", (("temperature", float(i)),)) for i in range(4)]
    train, calls = _scored({c.key: 0.1 * i for i, c in enumerate(cands)})

    def may_start(rung, candidates):
        return (rung < 1), 12.0, None if rung < 1 else "too long"

    result = successive_halving(cands, [2, None], train, may_start, clock=lambda: 0.0)
    assert len(calls) == 1 and result.stopped_before == 1 and result.stop_reason == "too long"
    assert result.chosen() == cands[3]  # the best of the last rung that ran


def test_selection_reads_validation_only_when_test_ranks_otherwise():
    """A fixture where the test-best candidate is the validation-worst: rung scores, survivors and the pick follow
    validation."""
    cands = [Candidate("t", "kd", (("temperature", float(i)),)) for i in range(3)]
    val = [0.90, 0.80, 0.70]
    test = [0.60, 0.70, 0.99]
    summaries = [{"best_val_accuracy": v, "test_accuracy": t, "run_dir": f"r{i}"}
                 for i, (v, t) in enumerate(zip(val, test))]
    scores = rung_scores(cands, [0], summaries)
    assert scores == {cands[i].key: {0: val[i]} for i in range(3)}
    result = successive_halving(cands, [None], lambda rung, cs: scores, _always, clock=lambda: 0.0)
    assert result.chosen() == cands[0]
    assert [e["candidate"] for e in result.pair_ranking()] == [cands[0].key]


def test_pair_ranking_puts_later_rungs_first():
    cands = [Candidate(t, m) for t in ("a", "b") for m in ("kd", "dkd")]
    table = {"a/kd": 0.9, "a/dkd": 0.5, "b/kd": 0.8, "b/dkd": 0.95}
    train, _ = _scored(table)
    result = successive_halving(cands, [2, None], train, _always, clock=lambda: 0.0)
    ranking = [(e["teacher"], e["method"], e["rung"]) for e in result.pair_ranking()]
    assert ranking == [("b", "dkd", 1), ("a", "kd", 1), ("b", "kd", 0), ("a", "dkd", 0)]


def test_missing_scores_are_an_error():
    cands = [Candidate("t", "kd")]
    with pytest.raises(ValueError, match="no score"):
        successive_halving(cands, [None], lambda r, cs: {}, _always, clock=lambda: 0.0)


def test_a_rung_too_long_for_the_budget_trains_only_the_best_survivor_when_that_fits():
    cands = [Candidate("t", "kd", (("temperature", float(i)),)) for i in range(4)]
    train, calls = _scored({c.key: 0.1 * i for i, c in enumerate(cands)})

    def may_start(rung, candidates):  # rung 1 fits one candidate, not two
        return (rung == 0 or len(candidates) == 1), 1.0, "too long"

    result = successive_halving(cands, [2, None], train, may_start, clock=lambda: 0.0, shrink_to_best=True)
    assert calls[1] == (1, [cands[3].key])
    assert result.rungs[1].shrunk_from == 2 and result.stopped_before is None
    assert "only the best survivor" in result.stop_reason
    # without shrinking, the same budget stops the schedule before rung 1
    train, calls = _scored({c.key: 0.1 * i for i, c in enumerate(cands)})
    result = successive_halving(cands, [2, None], train, may_start, clock=lambda: 0.0)
    assert len(calls) == 1 and result.stopped_before == 1
