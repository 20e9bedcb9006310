"""ctkd: Curriculum Temperature KD (Li et al., AAAI 2023), a learnable temperature behind a gradient-reversal layer."""

import math

import pytest
import torch

from kdlab.distill.distiller import Distiller
from kdlab.errors import ConfigError
from kdlab.losses import build, curriculum_strength


def log_softmax(row, t=1.0):
    scaled = [v / t for v in row]
    top = max(scaled)
    log_norm = top + math.log(sum(math.exp(v - top) for v in scaled))
    return [v - log_norm for v in scaled]


def objective_by_hand(z_s, z_t, y, t, alpha):
    """(1 - alpha) * CE + alpha * T^2 * KL(p_t || p_s), batch means, with python math."""
    kl = 0.0
    for zs, zt in zip(z_s, z_t):
        lp, lq = log_softmax(zt, t), log_softmax(zs, t)
        kl += sum(math.exp(a) * (a - b) for a, b in zip(lp, lq))
    kl /= len(z_s)
    ce = -sum(log_softmax(zs)[c] for zs, c in zip(z_s, y)) / len(z_s)
    return (1 - alpha) * ce + alpha * t * t * kl, ce, t * t * kl


def bounded(raw, t_min=1.0, t_max=21.0):
    return t_min + (t_max - t_min) / (1 + math.exp(-raw))


Z_S = [[1.0, 0.0, -1.0, 0.5], [0.2, 2.0, 0.0, -0.5]]
Z_T = [[6.0, 1.0, -2.0, 0.0], [-1.0, 5.0, 2.5, 0.0]]
Y = [0, 1]


def tensors(grad=False):
    s = torch.tensor(Z_S, dtype=torch.float64, requires_grad=grad)
    return s, torch.tensor(Z_T, dtype=torch.float64), torch.tensor(Y)


def test_initial_temperature_and_value_by_hand():
    loss_fn = build("ctkd")
    t0 = 1 + 20 / (1 + math.exp(-1))  # the authors' start: raw parameter 1, T = 1 + 20 * sigmoid(1) = 15.62
    assert t0 == pytest.approx(15.6211716, rel=1e-8)
    assert loss_fn.temperature == pytest.approx(t0, rel=1e-6)  # the parameter is float32
    assert loss_fn.hyperparams["init_temperature"] == pytest.approx(t0, rel=1e-12)
    loss, parts = loss_fn.compute(*tensors())
    hand, ce, kd = objective_by_hand(Z_S, Z_T, Y, loss_fn.temperature, 0.9)
    assert loss.item() == pytest.approx(hand, rel=1e-12)
    assert {k: v.item() for k, v in parts.items()} == {
        "ce": pytest.approx(ce, rel=1e-12),
        "kd": pytest.approx(kd, rel=1e-12),
        "temperature": loss_fn.temperature,
    }


def test_init_temperature_option():
    loss_fn = build("ctkd", init_temperature=4.0, t_min=2.0, t_max=12.0)
    assert loss_fn.temperature == pytest.approx(4.0, rel=1e-6)
    # raw = logit((4 - 2) / (12 - 2)) = log(0.2 / 0.8)
    assert loss_fn.raw_temperature.item() == pytest.approx(math.log(0.25), rel=1e-6)


def test_gradient_is_the_reversed_true_gradient():
    loss_fn = build("ctkd", init_temperature=3.0)
    raw0 = loss_fn.raw_temperature.item()
    loss_fn(*tensors()).backward()
    # true d objective / d raw by central differences of the hand formula
    h = 1e-5
    plus = objective_by_hand(Z_S, Z_T, Y, bounded(raw0 + h), 0.9)[0]
    minus = objective_by_hand(Z_S, Z_T, Y, bounded(raw0 - h), 0.9)[0]
    true_grad = (plus - minus) / (2 * h)
    assert abs(true_grad) > 1e-3  # a real slope, so the sign test below means something
    assert loss_fn.raw_temperature.grad.item() == pytest.approx(-1.0 * true_grad, rel=1e-4)


@pytest.mark.parametrize("init", [None, 2.0, 8.0])
def test_one_sgd_step_makes_the_kd_term_larger(init):
    loss_fn = build("ctkd", init_temperature=init)
    opt = torch.optim.SGD(loss_fn.parameters(), lr=0.05)
    s, t, y = tensors()
    loss, parts = loss_fn.compute(s, t, y)
    loss.backward()
    kd_before, t_before = parts["kd"].item(), loss_fn.temperature
    opt.step()
    parts = loss_fn.compute(s, t, y).parts
    assert loss_fn.temperature != t_before
    assert parts["kd"].item() > kd_before  # ascent on the KD term: the adversarial curriculum


def test_student_gradient_is_that_of_kd_at_the_current_temperature():
    ctkd = build("ctkd", init_temperature=5.0)
    kd = build("kd", temperature=ctkd.temperature, alpha=0.9)
    s1, t, y = tensors(grad=True)
    s2, _, _ = tensors(grad=True)
    a, b = ctkd(s1, t, y), kd(s2, t, y)
    a.backward()
    b.backward()
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s1.grad, s2.grad, rtol=1e-12, atol=1e-12)


def test_lambda_zero_gives_the_temperature_no_gradient():
    fixed = build("ctkd", lambda_max=0.0)
    fixed(*tensors()).backward()
    assert fixed.raw_temperature.grad.item() == 0.0
    # the curriculum starts at lambda_min = 0: epoch 0 also leaves the temperature alone
    loss_fn = build("ctkd")
    loss_fn.set_schedule(30)
    loss_fn.set_epoch(0)
    assert loss_fn.grl_strength == 0.0
    loss_fn(*tensors()).backward()
    assert loss_fn.raw_temperature.grad.item() == 0.0


def test_curriculum_scales_the_reversed_gradient():
    full = build("ctkd", init_temperature=3.0)
    full(*tensors()).backward()
    half = build("ctkd", init_temperature=3.0, curriculum_epochs=10)
    half.set_epoch(5)  # cosine schedule over 10 epochs: lambda = 0.5 half-way
    half(*tensors()).backward()
    assert half.grl_strength == pytest.approx(0.5, abs=1e-15)
    assert half.raw_temperature.grad.item() == pytest.approx(0.5 * full.raw_temperature.grad.item(), rel=1e-6)


def test_schedule_matches_the_papers_formula():
    def paper(n, e_loops, lo, hi):
        return lo + 0.5 * (hi - lo) * (1 + math.cos((1 + min(n, e_loops) / e_loops) * math.pi))

    for epoch in range(0, 15):
        assert curriculum_strength(epoch, 10, 0.0, 1.0) == pytest.approx(paper(epoch, 10, 0.0, 1.0), abs=1e-15)
        assert curriculum_strength(epoch, 10, 0.2, 0.7) == pytest.approx(paper(epoch, 10, 0.2, 0.7), abs=1e-15)
    assert curriculum_strength(0, 0, 0.0, 1.0) == 1.0  # no curriculum
    loss_fn = build("ctkd")
    assert loss_fn.grl_strength == 1.0  # freshly built: full strength
    loss_fn.set_schedule(240)
    loss_fn.set_epoch(10)
    assert loss_fn.grl_strength == 1.0


@pytest.mark.parametrize(("epochs", "length"), [(240, 10.0), (30, 1.25)])
def test_default_curriculum_is_the_authors_fraction_of_the_run(epochs, length):
    # the authors' 10 of 240 CIFAR-100 epochs (5 of 120 on ImageNet): 1/24 of the student's training
    loss_fn = build("ctkd")
    assert loss_fn.hyperparams["curriculum_fraction"] == 10 / 240
    loss_fn.set_schedule(epochs)
    assert loss_fn.curriculum_length == length
    for epoch in (0, 1, 2, 5, 10, epochs - 1):
        loss_fn.set_epoch(epoch)
        assert loss_fn.grl_strength == curriculum_strength(epoch, length, 0.0, 1.0)
    loss_fn.set_epoch(1)
    half_way = 0.5 * (1 - math.cos(math.pi * 1 / length))
    assert loss_fn.grl_strength == pytest.approx(half_way, rel=1e-15)  # 0.0245 at 240 epochs, 0.9045 at 30


def test_curriculum_in_epochs_and_its_errors():
    fixed = build("ctkd", curriculum_epochs=10)
    fixed.set_schedule(30)
    assert fixed.curriculum_length == 10.0  # the literal count: a third of this run
    with pytest.raises(RuntimeError, match="curriculum_fraction=0.25 is a fraction of the student's epochs"):
        build("ctkd", curriculum_fraction=0.25).set_epoch(3)
    with pytest.raises(ConfigError, match="give curriculum_fraction .* or curriculum_epochs, not both"):
        build("ctkd", curriculum_fraction=0.25, curriculum_epochs=3)


def test_temperature_stays_in_its_bounds_under_many_large_steps():
    g = torch.Generator().manual_seed(0)
    loss_fn = build("ctkd", init_temperature=2.0)
    opt = torch.optim.SGD(loss_fn.parameters(), lr=50.0)
    seen = [loss_fn.temperature]
    for _ in range(200):
        s = torch.randn(4, 5, generator=g) * 4
        t = torch.randn(4, 5, generator=g) * 8
        opt.zero_grad()
        loss = loss_fn(s, t, torch.randint(0, 5, (4,), generator=g))
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
        seen.append(loss_fn.temperature)
    assert all(1.0 <= v <= 21.0 for v in seen)
    assert max(seen) - min(seen) > 1.0  # it did move
    # even a parameter far past either end maps onto the bounds, with a finite loss
    for raw, bound in [(-200.0, 1.0), (200.0, 21.0)]:
        with torch.no_grad():
            loss_fn.raw_temperature.fill_(raw)
        assert loss_fn.temperature == bound
        assert torch.isfinite(loss_fn(*tensors()))


def test_single_point_range_is_plain_kd():
    loss_fn = build("ctkd", t_min=4.0, t_max=4.0, init_temperature=4.0)
    s, t, y = tensors()
    loss = loss_fn(s, t, y)
    torch.testing.assert_close(loss, build("kd", temperature=4.0, alpha=0.9)(s, t, y), rtol=1e-12, atol=1e-12)
    loss.backward()
    assert loss_fn.raw_temperature.grad.item() == 0.0


def test_huge_logits_stay_finite():
    loss_fn = build("ctkd")
    s = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 0.0, 1e4]], requires_grad=True)
    t = torch.tensor([[-1e4, 1e4, 0.0], [0.0, 1e4, -1e4]])
    loss = loss_fn(s, t, torch.tensor([0, 2]))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(s.grad).all()
    assert torch.isfinite(loss_fn.raw_temperature.grad).all()


def test_the_temperature_reaches_the_optimiser_through_the_distiller():
    loss_fn = build("ctkd")
    student = torch.nn.Linear(3, 4)
    distiller = Distiller(student, loss_fn, teacher_logits=torch.zeros(10, 4))
    params = list(distiller.parameters())
    assert any(p is loss_fn.raw_temperature for p in params)
    assert "loss.raw_temperature" in distiller.state_dict()  # saved and restored with checkpoints
    assert loss_fn.raw_temperature.ndim == 1  # kdlab's optimiser exempts 1-D tensors from weight decay


def test_bad_hyperparameters():
    with pytest.raises(ConfigError) as err:
        build("ctkd", init_temperature=25.0)
    assert str(err.value) == (
        "loss 'ctkd': init_temperature=25.0 is not allowed; must be strictly between t_min=1.0 and t_max=21.0"
    )
    with pytest.raises(ConfigError, match="t_max=0.5 is not allowed; must be >= t_min=1.0"):
        build("ctkd", t_max=0.5)
    with pytest.raises(ConfigError, match="lambda_max=0.2 is not allowed; must be >= lambda_min=0.5"):
        build("ctkd", lambda_min=0.5, lambda_max=0.2)
    with pytest.raises(ConfigError, match="lambda_max=2 is not allowed; must be in"):
        build("ctkd", lambda_max=2)
    with pytest.raises(ConfigError, match="curriculum_epochs=-1"):
        build("ctkd", curriculum_epochs=-1)
    with pytest.raises(ConfigError, match="init_temperature=5.0 is not allowed"):
        build("ctkd", t_min=4.0, t_max=4.0, init_temperature=5.0)
