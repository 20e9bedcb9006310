"""logit_std: KD on z-scored logits (Sun et al., CVPR 2024), and the ``standardize`` option of kd, ats and dkd."""

import math

import pytest
import torch

from kdlab.errors import ConfigError
from kdlab.losses import build
from kdlab.losses.standardize import STANDARDIZE_EPS


def zscore(row, population=False):
    mean = sum(row) / len(row)
    # the sample variance (K - 1) by default, the population one (K) on request; eps under the root (documented)
    var = sum((v - mean) ** 2 for v in row) / (len(row) if population else len(row) - 1)
    return [(v - mean) / math.sqrt(var + STANDARDIZE_EPS) for v in row]


def log_softmax(row, t=1.0):
    scaled = [v / t for v in row]
    top = max(scaled)
    log_norm = top + math.log(sum(math.exp(v - top) for v in scaled))
    return [v - log_norm for v in scaled]


def kl(teacher_row, student_row, t):
    lp, lq = log_softmax(teacher_row, t), log_softmax(student_row, t)
    return sum(math.exp(a) * (a - b) for a, b in zip(lp, lq))


Z_S = [[1.0, 2.0, 6.0, 0.0], [0.5, -0.5, 0.0, 3.0]]
Z_T = [[10.0, 4.0, 0.0, -2.0], [1.0, 8.0, 2.0, 2.5]]
Y = [2, 1]


def tensors():
    return torch.tensor(Z_S, dtype=torch.float64), torch.tensor(Z_T, dtype=torch.float64), torch.tensor(Y)


def test_logit_std_by_hand_with_the_paper_defaults():
    t = 2.0
    kd_term = t * t * sum(kl(zscore(zt), zscore(zs), t) for zs, zt in zip(Z_S, Z_T)) / 2
    ce_term = -(log_softmax(Z_S[0])[2] + log_softmax(Z_S[1])[1]) / 2  # CE on the raw student logits
    loss_fn = build("logit_std")
    assert loss_fn.hyperparams == {"temperature": 2.0, "kd_weight": 9.0, "ce_weight": 0.1, "std": "sample"}
    loss, parts = loss_fn.compute(*tensors())
    assert loss.item() == pytest.approx(0.1 * ce_term + 9.0 * kd_term, rel=1e-12)
    assert {k: v.item() for k, v in parts.items()} == {"ce": pytest.approx(ce_term, rel=1e-12),
                                                      "kd": pytest.approx(kd_term, rel=1e-12)}


def torchdistill_soft_term(zs, zt, t):
    """torchdistill's LogitStdKDLoss soft term by hand: z-score with torch.std (K - 1) + 1e-7 added to the std,
    KL(batchmean) of the tempered distributions, times T^2 (its forward returns beta * T^2 * KL + alpha * CE)."""
    def z(row):
        mean = sum(row) / len(row)
        std = math.sqrt(sum((v - mean) ** 2 for v in row) / (len(row) - 1))
        return [(v - mean) / (1e-7 + std) for v in row]

    return t * t * sum(kl(z(b), z(a), t) for a, b in zip(zs, zt)) / len(zs)


def test_default_reproduces_the_released_code_and_the_population_form_is_an_option():
    # K = 4: the two standard deviations differ by sqrt(4/3), 15%, so the two forms are far apart
    s, t, y = tensors()
    released = torchdistill_soft_term(Z_S, Z_T, 2.0)
    population = 4.0 * sum(kl(zscore(zt, True), zscore(zs, True), 2.0) for zs, zt in zip(Z_S, Z_T)) / 2
    assert population > 1.3 * released  # 1.566 vs 1.160 on these logits: the form matters
    sample_fn = build("logit_std", kd_weight=1.0, ce_weight=0.0)
    assert sample_fn(s, t, y).item() == pytest.approx(released, rel=1e-6)  # eps placement: < 1e-7 relative
    population_fn = build("logit_std", kd_weight=1.0, ce_weight=0.0, std="population")
    assert population_fn.hyperparams["std"] == "population"
    assert population_fn(s, t, y).item() == pytest.approx(population, rel=1e-12)
    with pytest.raises(ConfigError, match="std='K' is not allowed; must be one of sample, population"):
        build("logit_std", std="K")


@pytest.mark.parametrize(("scale", "shift"), [(7.5, -40.0), (0.2, 3.0), (1.0, 1e3)])
def test_kd_term_ignores_shift_and_positive_scale_of_either_model(scale, shift):
    s, t, y = tensors()
    loss_fn = build("logit_std")
    base, parts = loss_fn.compute(s, t, y)
    kd = parts["kd"].item()
    # the teacher only enters the KD term: the whole objective is unchanged
    torch.testing.assert_close(loss_fn(s, scale * t + shift, y), base, rtol=1e-6, atol=1e-9)
    # the student also feeds CE (raw logits), so only the KD part is invariant
    parts = loss_fn.compute(scale * s + shift, t, y).parts
    assert parts["kd"].item() == pytest.approx(kd, rel=1e-6)


def test_equals_kd_with_standardize_and_matching_weights():
    g = torch.Generator().manual_seed(7)
    s = torch.randn(8, 6, generator=g, dtype=torch.float64) * 3
    t = torch.randn(8, 6, generator=g, dtype=torch.float64) * 5 + 2
    y = torch.randint(0, 6, (8,), generator=g)
    alpha, temperature = 0.75, 3.0
    ls = build("logit_std", temperature=temperature, kd_weight=alpha, ce_weight=1 - alpha)
    kd = build("kd", temperature=temperature, alpha=alpha, standardize=True)
    torch.testing.assert_close(ls(s, t, y), kd(s, t, y), rtol=1e-12, atol=1e-12)
    ls_parts, kd_parts = ls.compute(s, t, y).parts, kd.compute(s, t, y).parts
    assert {k: v.item() for k, v in ls_parts.items()} == pytest.approx({k: v.item() for k, v in kd_parts.items()},
                                                                       rel=1e-12)


def test_huge_logits_stay_finite():
    s = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 0.0, 1e4]], requires_grad=True)
    t = torch.tensor([[-1e4, 1e4, 0.0], [0.0, 1e4, -1e4]])
    loss = build("logit_std")(s, t, torch.tensor([0, 2]))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(s.grad).all()


def test_bad_hyperparameters():
    with pytest.raises(ConfigError) as err:
        build("logit_std", kd_weight=-9)
    assert str(err.value) == "loss 'logit_std': kd_weight=-9 is not allowed; must be >= 0"
    with pytest.raises(ConfigError, match="temperature=0.0 is not allowed; must be > 0"):
        build("logit_std", temperature=0.0)


# -- the ``standardize`` option of the other losses ----------------------------------------------------------

STANDARDIZABLE = {
    "kd": {"temperature": 2.0, "alpha": 0.6},
    "ats": {"tau_gt": 3.0, "tau_other": 1.5, "tau_student": 2.0, "alpha": 0.6},
    "dkd": {"temperature": 2.0, "alpha": 1.0, "beta": 4.0},
}


@pytest.mark.parametrize("name", sorted(STANDARDIZABLE))
def test_standardize_z_scores_the_soft_terms_only(name):
    s, t, y = tensors()
    on = build(name, standardize=True, **STANDARDIZABLE[name])
    off = build(name, standardize=False, **STANDARDIZABLE[name])
    on_parts = {k: v.item() for k, v in on.compute(s, t, y).parts.items()}
    # feeding pre-standardised logits (computed with python math) to the plain loss gives the same soft terms
    z_s = torch.tensor([zscore(r) for r in Z_S], dtype=torch.float64)
    z_t = torch.tensor([zscore(r) for r in Z_T], dtype=torch.float64)
    off_parts = {k: v.item() for k, v in off.compute(z_s, z_t, y).parts.items()}
    soft = sorted(set(on_parts) - {"ce"})
    assert soft and all(on_parts[k] == pytest.approx(off_parts[k], rel=1e-9) for k in soft)
    # ... while CE still reads the raw student logits
    assert on_parts["ce"] == pytest.approx(-(log_softmax(Z_S[0])[2] + log_softmax(Z_S[1])[1]) / 2, rel=1e-12)


@pytest.mark.parametrize("name", sorted(STANDARDIZABLE))
def test_standardize_makes_the_loss_ignore_the_teachers_scale(name):
    s, t, y = tensors()
    on = build(name, standardize=True, **STANDARDIZABLE[name])
    off = build(name, **STANDARDIZABLE[name])
    torch.testing.assert_close(on(s, 4.0 * t - 9.0, y), on(s, t, y), rtol=1e-6, atol=1e-9)
    assert abs(off(s, 4.0 * t - 9.0, y).item() - off(s, t, y).item()) > 1e-2  # without it the loss moves


@pytest.mark.parametrize("name", sorted(STANDARDIZABLE))
def test_standardize_accepts_a_config_value_and_records_it(name):
    loss_fn = build(name, **{"standardize": True})
    assert loss_fn.hyperparams["standardize"] is True
