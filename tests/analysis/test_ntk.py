"""The empirical NTK against hand-derived kernels, its drift, and the linearised-GD predictions."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kdlab.analysis.ntk import NTKParamMLP, empirical_ntk, linearized_predictions, ntk_drift
from kdlab.models import create_model


def test_ntk_of_a_linear_model_is_the_input_inner_product_plus_one():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x1, x2 = torch.randn(5, 3), torch.randn(4, 3)
    # f_c = w_c . x + b_c: d f_c / d w_c = x, d f_c / d b_c = 1, and f_c does not depend on w_c' (c' != c)
    base = x1 @ x2.T + 1
    full = empirical_ntk(model, x1, x2, mode="full", batch_size=2)
    assert full.shape == (5, 4, 2, 2)
    torch.testing.assert_close(full[:, :, 0, 0], base)
    torch.testing.assert_close(full[:, :, 1, 1], base)
    assert full[:, :, 0, 1].abs().max() == 0 and full[:, :, 1, 0].abs().max() == 0
    torch.testing.assert_close(empirical_ntk(model, x1, x2, mode="trace"), 2 * base)
    torch.testing.assert_close(empirical_ntk(model, x1, x2, mode="diagonal"), torch.stack([base, base], dim=2))


def test_ntk_of_a_one_hidden_layer_net_matches_the_hand_derivation():
    net = NTKParamMLP(4, 16, 3, seed=1)
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(2))
    u, v = net.hidden[0].detach(), net.out.detach()
    a = x @ u.T / 2  # pre-activations u_r . x / sqrt(d), d = 4
    h, on = torch.relu(a), (a > 0).float()
    m = 16
    # d f_c / d V_c'r = delta_cc' relu(a_r) / sqrt(m);  d f_c / d u_r = V_cr 1[a_r > 0] x / sqrt(m d)
    expected = (h @ h.T / m)[:, :, None, None] * torch.eye(3) \
        + torch.einsum("cr,er,ir,jr->ijce", v, v, on, on)[...] / m * (x @ x.T / 4)[:, :, None, None]
    torch.testing.assert_close(empirical_ntk(net, x, mode="full"), expected, rtol=1e-5, atol=1e-5)


def test_empirical_ntk_gram_matrix_is_symmetric_positive_semidefinite():
    model = create_model("mlp", 4, [5], width=32, depth=2)
    x = torch.randn(20, 5, generator=torch.Generator().manual_seed(0))
    k = empirical_ntk(model, x, batch_size=7).double()
    torch.testing.assert_close(k, k.T, rtol=1e-5, atol=1e-5)
    eig = torch.linalg.eigvalsh((k + k.T) / 2)
    assert eig.min() >= -1e-5 * eig.max()
    # K(x1, x2) is the transpose of K(x2, x1)
    k12 = empirical_ntk(model, x[:3], x[3:9])
    torch.testing.assert_close(k12, empirical_ntk(model, x[3:9], x[:3]).T)
    assert model.training  # the train/eval mode is restored


def test_ntk_drift_by_hand_and_bad_input():
    k0 = torch.eye(2)
    assert ntk_drift(k0, 2 * k0) == pytest.approx(1.0)
    assert ntk_drift(k0, k0) == 0.0
    with pytest.raises(ValueError, match="must match"):
        ntk_drift(k0, torch.eye(3))
    with pytest.raises(ValueError, match="mode='block'"):
        empirical_ntk(nn.Linear(2, 2), torch.zeros(1, 2), mode="block")


def test_linearized_predictions_equal_gradient_descent_on_a_linear_model():
    # a linear model is its own linearisation, so the closed form must reproduce 30 GD steps exactly. Everything runs
    # in float64: the kernels' entries are sums that BLAS orders differently on different processors, and in float32
    # those last bits (~1e-7 relative) grow over 30 steps past any tolerance that would still prove "exactly"
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    x, y, xt = (torch.randn(n, d, dtype=torch.float64) for n, d in ((12, 3), (12, 2), (5, 3)))
    with torch.no_grad():
        f0, f0t = model(x), model(xt)
    k, kt = empirical_ntk(model, x, mode="full"), empirical_ntk(model, xt, x, mode="full")
    assert k.dtype == torch.float64
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    for _ in range(30):
        loss = 0.5 * (model(x) - y).pow(2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    pred = linearized_predictions(k, kt, y, f0, f0t, lr=0.2, steps=30)
    with torch.no_grad():  # float64 default tolerances (rtol 1e-7, atol 1e-7)
        torch.testing.assert_close(pred["test"], model(xt))
        torch.testing.assert_close(pred["train"], model(x))
    # the same with the scalar kernel: outputs of a linear model do not interact (full = (x.x' + 1) I_2)
    scalar = linearized_predictions(k[:, :, 0, 0], kt[:, :, 0, 0], y, f0, f0t, lr=0.2, steps=30)
    torch.testing.assert_close(scalar["test"], pred["test"])
    torch.testing.assert_close(scalar["train"], pred["train"])


def test_converged_linearized_predictions_are_kernel_regression():
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(6, 10, generator=gen, dtype=torch.float64)
    k = z @ z.T  # full rank
    zt = torch.randn(2, 10, generator=gen, dtype=torch.float64)
    kt = zt @ z.T
    y, f0, f0t = torch.randn(6, 1, generator=gen), torch.zeros(6, 1), torch.zeros(2, 1)
    pred = linearized_predictions(k, kt, y, f0, f0t, lr=0.1, steps=None)
    torch.testing.assert_close(pred["test"], kt @ torch.linalg.solve(k, y.double()))
    torch.testing.assert_close(pred["train"], y.double())  # interpolates the training targets
    assert linearized_predictions(k, kt, y, f0, f0t, lr=0.1, steps=0)["test"].abs().max() == 0
    with pytest.raises(ValueError, match="lr=0"):
        linearized_predictions(k, kt, y, f0, f0t, lr=0, steps=1)


def test_ntk_parameterisation_keeps_the_kernel_scale_fixed_as_width_grows():
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    diag = [float(empirical_ntk(NTKParamMLP(5, w, 1, seed=0), x).diagonal().mean()) for w in (64, 4096)]
    assert diag[1] == pytest.approx(diag[0], rel=0.3)
    with pytest.raises(ValueError, match="width=0"):
        NTKParamMLP(5, 0, 1)
    assert math.isfinite(diag[0])
