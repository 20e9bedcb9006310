"""isats: per-sample wrong-class temperature by a grid search on the variance of the non-GT ATS target."""

import math

import pytest
import torch

from kdlab.errors import ConfigError
from kdlab.losses import build, select_tau_other
from kdlab.losses.isats import nongt_variance, temperature_grid


def ats_target(z, y, tau_gt, tau_other):
    scaled = [v / (tau_gt if c == y else tau_other) for c, v in enumerate(z)]
    top = max(scaled)
    exps = [math.exp(v - top) for v in scaled]
    return [v / sum(exps) for v in exps]


def brute_force(z, y, tau_gt, grid, keep_gt_top):
    """The first grid value with the largest non-GT variance (among GT-on-top targets if asked and any exist)."""
    rows = []
    for tau in grid:
        p = ats_target(z, y, tau_gt, tau)
        wrong = [pc for c, pc in enumerate(p) if c != y]
        mean = sum(wrong) / len(wrong)
        rows.append((tau, sum((w - mean) ** 2 for w in wrong) / len(wrong), p[y] >= max(wrong)))
    if keep_gt_top and any(top for _, _, top in rows):
        rows = [r for r in rows if r[2]]
    best = rows[0]
    for row in rows[1:]:
        if row[1] > best[1]:
            best = row
    return best[0]


TEACHER = [
    [0.0, -2.0, -6.0, -6.0, -6.0],  # GT far above: variance rises then falls with tau -> interior maximum
    [4.0, 2.0, 0.0, -1.0, -3.0],
    [8.0, 5.0, 4.0, 0.0, 0.0],
    [1.0, 3.0, -2.0, 0.5, 0.0],  # the teacher is wrong (class 1 above the GT)
]
TARGETS = [0, 0, 0, 0]


@pytest.mark.parametrize("keep_gt_top", [False, True])
def test_select_matches_brute_force_over_the_same_grid(keep_gt_top):
    grid = temperature_grid(1.0, 10.0, 12)
    chosen = select_tau_other(torch.tensor(TEACHER, dtype=torch.float64), torch.tensor(TARGETS), 4.0, grid,
                              keep_gt_top=keep_gt_top)
    expected = [brute_force(z, y, 4.0, grid, keep_gt_top) for z, y in zip(TEACHER, TARGETS)]
    assert chosen.tolist() == pytest.approx(expected, rel=1e-12)
    assert grid[0] < expected[0] < grid[-1]  # the first sample has an interior maximum: the search is real


def test_the_guard_matters_on_this_example():
    grid = temperature_grid(1.0, 10.0, 12)
    free = [brute_force(z, y, 4.0, grid, False) for z, y in zip(TEACHER, TARGETS)]
    guarded = [brute_force(z, y, 4.0, grid, True) for z, y in zip(TEACHER, TARGETS)]
    assert free[1:3] == [1.0, 1.0]  # unconstrained: lowest tau, a wrong class outranks the GT
    assert guarded[1] > 1.0 and guarded[2] > 1.0
    assert guarded[3] == free[3]  # teacher wrong at every tau: the guard falls back to the whole grid


def test_batch_equals_one_sample_at_a_time():
    g = torch.Generator().manual_seed(3)
    # float64: the choice is an argmax over variances that batched and single-row kernels may round differently in
    # float32 (another processor, another vector width); in float64 a tie within those last bits does not occur here
    z = torch.randn(16, 7, generator=g, dtype=torch.float64) * 4
    y = torch.randint(0, 7, (16,), generator=g)
    grid = temperature_grid(1.0, 10.0, 16)
    batch = select_tau_other(z, y, 4.0, grid)
    single = torch.cat([select_tau_other(z[i : i + 1], y[i : i + 1], 4.0, grid) for i in range(16)])
    assert torch.equal(batch, single)


def test_equal_wrong_logits_give_zero_variance_and_the_tie_goes_to_the_smallest_tau():
    # z = (3, 1, 1), GT = 0: both wrong classes get exp(1/tau) / (exp(3/tau_gt) + 2 exp(1/tau)), equal for
    # every tau, so their variance is 0 everywhere and the documented tie rule picks the first (smallest) grid value
    p = ats_target([3.0, 1.0, 1.0], 0, 4.0, 2.7)
    assert p[1] == p[2]
    for keep in (False, True):
        chosen = select_tau_other(torch.tensor([[3.0, 1.0, 1.0]]), torch.tensor([0]), 4.0, [1.5, 2.0, 5.0],
                                  keep_gt_top=keep)
        assert chosen.tolist() == [1.5]


@pytest.mark.parametrize("num_classes", [2, 4, 7, 12, 101])
@pytest.mark.parametrize("gt", [0, 1])
def test_the_tie_survives_rounding_for_any_number_of_classes(num_classes, gt):
    z = torch.full((1, num_classes), 0.7)  # float32 on purpose: sum / count would round to a nonzero variance
    z[0, gt] = 3.0
    grid = temperature_grid(1.0, 10.0, 16)
    variance, _ = nongt_variance(z, torch.tensor([gt]), 4.0, torch.tensor(grid))
    assert torch.equal(variance, torch.zeros_like(variance))
    assert select_tau_other(z, torch.tensor([gt]), 4.0, grid).tolist() == [1.0]


def test_variances_match_brute_force():
    grid = temperature_grid(1.0, 10.0, 5)
    variance, gt_top = nongt_variance(torch.tensor(TEACHER, dtype=torch.float64), torch.tensor(TARGETS), 4.0,
                                      torch.tensor(grid, dtype=torch.float64))
    for i, (z, y) in enumerate(zip(TEACHER, TARGETS)):
        for g, tau in enumerate(grid):
            p = ats_target(z, y, 4.0, tau)
            wrong = [pc for c, pc in enumerate(p) if c != y]
            mean = sum(wrong) / len(wrong)
            assert variance[g, i].item() == pytest.approx(sum((w - mean) ** 2 for w in wrong) / len(wrong), rel=1e-9)
            assert bool(gt_top[g, i]) == (p[y] >= max(wrong))


def test_monotone_case_and_the_gt_on_top_guard_by_hand():
    # z = (4, 2, 0), GT = 0, tau_gt = 4: with a = 2 / tau the wrong probabilities are e^a / S and 1 / S,
    # S = e + e^a + 1, so Var = ((e^a - 1) / S)^2 / 4. d/da (e^a - 1) / (e^a + e + 1) = e^a (e + 2) / (.)^2 > 0,
    # hence the variance falls as tau grows: the unconstrained argmax is the smallest tau.
    # The GT stays on top iff e^1 >= e^(2 / tau), i.e. tau >= 2: the guarded argmax is the smallest tau >= 2.
    grid = [1.0, 1.5, 2.5, 3.0, 4.0]
    z, y = torch.tensor([[4.0, 2.0, 0.0]]), torch.tensor([0])
    assert select_tau_other(z, y, 4.0, grid, keep_gt_top=False).tolist() == [1.0]
    assert select_tau_other(z, y, 4.0, grid, keep_gt_top=True).tolist() == [2.5]


def test_loss_records_its_temperatures_and_uses_the_search():
    loss_fn = build("isats", tau_gt=4.0, tau_min=1.0, grid_size=12)  # grid 1 .. tau_gt
    assert loss_fn.last_tau_other is None
    s = torch.zeros(4, 5, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(TEACHER, dtype=torch.float64, requires_grad=True)
    loss, parts = loss_fn.compute(s, t, torch.tensor(TARGETS))
    loss.backward()
    expected = [brute_force(z, y, 4.0, temperature_grid(1.0, 4.0, 12), True) for z, y in zip(TEACHER, TARGETS)]
    assert loss_fn.last_tau_other.tolist() == pytest.approx(expected, rel=1e-12)
    assert not loss_fn.last_tau_other.requires_grad
    assert t.grad is None
    assert set(parts) == {"ce", "kd"}


@pytest.mark.parametrize("standardize", [False, True])
def test_one_point_grid_equals_ats_at_that_temperature(standardize):
    g = torch.Generator().manual_seed(2)
    s = torch.randn(8, 6, generator=g, dtype=torch.float64)
    t = torch.randn(8, 6, generator=g, dtype=torch.float64) * 5
    y = torch.randint(0, 6, (8,), generator=g)
    common = dict(tau_gt=3.0, tau_student=2.0, alpha=0.6, standardize=standardize)
    isats = build("isats", tau_min=1.7, tau_max=1.7, grid_size=1, **common)
    ats = build("ats", tau_other=1.7, **common)
    torch.testing.assert_close(isats(s, t, y), ats(s, t, y), rtol=1e-12, atol=1e-12)
    assert isats.last_tau_other.tolist() == [1.7] * 8


def test_grid_is_log_spaced_with_exact_ends():
    grid = temperature_grid(1.0, 10.0, 4)
    assert grid[0] == 1.0 and grid[-1] == 10.0
    assert grid[1] == pytest.approx(10 ** (1 / 3)) and grid[2] == pytest.approx(10 ** (2 / 3))


def test_the_search_keeps_ats_rule_tau_other_at_most_tau_gt():
    # a less confident teacher with one similar class: a grid reaching past tau_gt picks the reverse asymmetry
    g = torch.Generator().manual_seed(0)
    n, k = 256, 100
    z = torch.randn(n, k, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, k, (n,), generator=g)
    z[torch.arange(n), y] = 8.0
    z[torch.arange(n), (y + 1) % k] += 6.0
    unbounded = select_tau_other(z, y, 4.0, temperature_grid(1.0, 10.0, 16))
    assert (unbounded > 4.0).any()  # the old default grid (1-10) broke the rule on these logits
    loss_fn = build("isats", tau_gt=4.0)
    assert loss_fn.hyperparams["tau_max"] == 4.0 and max(loss_fn.grid) == 4.0
    loss_fn(torch.zeros(n, k, dtype=torch.float64), z, y)
    assert loss_fn.last_tau_other.max().item() <= 4.0
    assert (loss_fn.last_tau_other == 4.0).any()  # the bound is reached: the rule, not the data, stops the search
    with pytest.raises(ConfigError) as err:
        build("isats", tau_gt=4.0, tau_max=10.0)
    assert str(err.value) == ("loss 'isats': tau_max=10.0 is not allowed; must be <= tau_gt=4.0 (ATS's rule: the "
                              "correct class gets the higher temperature)")


def test_bad_grids_are_config_errors():
    with pytest.raises(ConfigError, match=r"tau_max=0\.5 is not allowed; must be >= tau_min=1\.0"):
        build("isats", tau_min=1.0, tau_max=0.5)
    with pytest.raises(ConfigError, match="grid_size=1"):
        build("isats", tau_min=1.0, tau_max=2.0, grid_size=1)  # tau_gt = 4 by default
    with pytest.raises(ConfigError, match="grid_size=0"):
        build("isats", grid_size=0)
    with pytest.raises(ConfigError, match="grid_size=2.5"):
        build("isats", grid_size=2.5)
