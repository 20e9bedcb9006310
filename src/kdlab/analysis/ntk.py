"""The empirical neural tangent kernel, its drift during training, and kernel-regression predictions with it.

The survey's section 8: for a network f(theta, x) trained by gradient descent, df/dt = -H(t) (f - y) with
H(t)_{ij} = < d f(theta_t, x_i) / d theta, d f(theta_t, x_j) / d theta >; as the width grows the kernel stays
(almost) fixed during training and the network behaves like kernel regression with the initial kernel (Jacot, Gabriel,
Hongler, "Neural Tangent Kernel: Convergence and Generalization in Neural Networks", NeurIPS 2018; Lee et al., "Wide
Neural Networks of Any Depth Evolve as Linear Models Under Gradient Descent", NeurIPS 2019).

- ``empirical_ntk``: the kernel of any module at its current parameters, via torch.func (jacrev + vmap, batched).
- ``ntk_drift``: ||K_T - K_0||_F / ||K_0||_F.
- ``linearized_predictions``: what the network linearised at initialisation predicts after t steps of full-batch
  gradient descent on the squared loss (closed form with the kernel), to compare with the trained network.
- ``NTKParamMLP``: a ReLU MLP in the NTK parameterisation, whose kernel has a width-independent scale.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

__all__ = ["NTKParamMLP", "empirical_ntk", "linearized_predictions", "ntk_drift"]

NTK_MODES = ("trace", "full", "diagonal")


def _jacobian_chunks(model: nn.Module, x: Tensor, batch_size: int) -> list[Tensor]:
    """Per-sample Jacobians d f(x_i) / d theta, flattened over all parameters: chunks of [b, k, P]."""
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError(f"model {type(model).__name__} has no trainable parameters; the NTK needs some")
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def single(p: dict[str, Tensor], xi: Tensor) -> Tensor:
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return out.reshape(-1)  # [k]

    per_sample = vmap(jacrev(single), in_dims=(None, 0))
    chunks = []
    for i in range(0, x.shape[0], batch_size):
        jac = per_sample(params, x[i:i + batch_size])
        b = min(batch_size, x.shape[0] - i)
        chunks.append(torch.cat([j.reshape(b, j.shape[1], -1) for j in jac.values()], dim=2))
    return chunks


def empirical_ntk(model: nn.Module, x1: Tensor, x2: Tensor | None = None,
                  mode: Literal["trace", "full", "diagonal"] = "trace", batch_size: int = 64) -> Tensor:
    """The empirical NTK K(x, x') = < d f(theta, x) / d theta, d f(theta, x') / d theta > at the current theta.

    For a model with k outputs the kernel is a k x k block per pair of inputs,
        K_{cc'}(x, x') = sum_p  d f_c(x) / d theta_p * d f_c'(x') / d theta_p.
    ``mode``: "full" -> [n1, n2, k, k] (every block); "diagonal" -> [n1, n2, k] (K_cc, one kernel per output);
    "trace" -> [n1, n2] = sum_c K_cc (the trace over outputs; for a network whose last layer is linear the
    infinite-width kernel is K_inf(x, x') I_k, so trace / k estimates the scalar kernel K_inf).
    ``x2=None`` means x2 = x1 (a Gram matrix: symmetric positive semi-definite up to float error).
    Computed in eval mode (restored afterwards), in chunks of ``batch_size`` inputs; the Jacobians of x2 are held in
    memory (n2 * k * P floats).
    """
    if mode not in NTK_MODES:
        raise ValueError(f"mode={mode!r} is not allowed; allowed: {', '.join(NTK_MODES)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is not allowed; allowed: an int >= 1")
    for name, x in (("x1", x1), ("x2", x2)):
        if x is not None and (not isinstance(x, Tensor) or x.dim() < 2 or x.shape[0] == 0):
            raise ValueError(f"{name} must be a tensor [n, ...] with n >= 1, got {getattr(x, 'shape', x)!r}")
    was_training = model.training
    model.eval()
    try:
        j1 = _jacobian_chunks(model, x1, batch_size)
        j2 = j1 if x2 is None else _jacobian_chunks(model, x2, batch_size)
    finally:
        model.train(was_training)
    equation = {"full": "ikp,jlp->ijkl", "diagonal": "ikp,jkp->ijk", "trace": "ikp,jkp->ij"}[mode]
    rows = [torch.cat([torch.einsum(equation, a, b) for b in j2], dim=1) for a in j1]
    return torch.cat(rows, dim=0)


def ntk_drift(k_initial: Tensor, k_final: Tensor) -> float:
    """Relative change of the kernel during training: ||K_T - K_0||_F / ||K_0||_F (0 = the kernel did not move)."""
    if k_initial.shape != k_final.shape:
        raise ValueError(f"k_initial {tuple(k_initial.shape)} and k_final {tuple(k_final.shape)} must match")
    denom = float(k_initial.double().norm())
    if denom == 0:
        raise ValueError("k_initial is all zeros; the relative drift is undefined")
    return float((k_final.double() - k_initial.double()).norm()) / denom


def _flatten_full(kernel: Tensor) -> Tensor:
    """[n1, n2, k, k] -> [n1 k, n2 k] with row index i * k + c (sample-major, matching y.reshape(-1))."""
    n1, n2, k, _ = kernel.shape
    return kernel.permute(0, 2, 1, 3).reshape(n1 * k, n2 * k)


def linearized_predictions(k_train: Tensor, k_test_train: Tensor, y_train: Tensor, f0_train: Tensor,
                           f0_test: Tensor, lr: float, steps: int | None) -> dict[str, Tensor]:
    """Predictions of the network linearised at initialisation after ``steps`` of full-batch gradient descent.

    Loss L = (1 / (2n)) sum_i ||f(x_i) - y_i||^2, step theta <- theta - lr grad L. For the linear model
    f_lin(x) = f_0(x) + J_0(x) (theta - theta_0) this gives exactly (K = K_0(X, X), eigenpairs (lambda_r, u_r)):
        f_t(X) - Y   = (I - lr K / n)^t (f_0(X) - Y)
        f_t(x*)      = f_0(x*) + K_0(x*, X) A_t (Y - f_0(X)),
        A_t          = sum_r g(lambda_r) u_r u_r^T,  g(lambda) = (1 - (1 - lr lambda / n)^t) / lambda
    (g(0) = t lr / n; ``steps=None`` is the converged limit, g(lambda) = 1 / lambda: kernel regression with the
    pseudo-inverse). Lee et al., "Wide Neural Networks of Any Depth Evolve as Linear Models Under Gradient Descent",
    NeurIPS 2019 (their gradient-flow formula, here in its discrete-step form).
    Kernels: "full" NTKs [n, n, k, k] and [m, n, k, k] (outputs coupled, the exact finite-width linearisation), or
    scalar kernels [n, n] and [m, n] applied to every output independently (the infinite-width form K I_k).
    Returns {"train": [n, k], "test": [m, k]}.
    """
    if y_train.dim() != 2 or f0_train.shape != y_train.shape or f0_test.dim() != 2 \
            or f0_test.shape[1] != y_train.shape[1]:
        raise ValueError(f"y_train {tuple(y_train.shape)}, f0_train {tuple(f0_train.shape)} must be [n, k] and "
                         f"f0_test {tuple(f0_test.shape)} [m, k]")
    n, k = y_train.shape
    m = f0_test.shape[0]
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr={lr!r} is not allowed; allowed: a finite float > 0")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 0):
        raise ValueError(f"steps={steps!r} is not allowed; allowed: an int >= 0, or None (converged)")
    if k_train.dim() == 4:
        if k_train.shape != (n, n, k, k) or k_test_train.shape != (m, n, k, k):
            raise ValueError(f"full kernels must be [n, n, k, k] = {[n, n, k, k]} and [m, n, k, k] = {[m, n, k, k]}, "
                             f"got {list(k_train.shape)} and {list(k_test_train.shape)}")
        kk, kt = _flatten_full(k_train.double()), _flatten_full(k_test_train.double())
        resid = (y_train - f0_train).double().reshape(-1, 1)  # [n k, 1]
    elif k_train.dim() == 2:
        if k_train.shape != (n, n) or k_test_train.shape != (m, n):
            raise ValueError(f"scalar kernels must be [n, n] = {[n, n]} and [m, n] = {[m, n]}, got "
                             f"{list(k_train.shape)} and {list(k_test_train.shape)}")
        kk, kt = k_train.double(), k_test_train.double()
        resid = (y_train - f0_train).double()  # [n, k]
    else:
        raise ValueError(f"k_train has {k_train.dim()} dims; allowed: 4 (full NTK) or 2 (scalar kernel)")
    kk = (kk + kk.T) / 2  # symmetric up to float error; eigh needs it exactly
    lam, u = torch.linalg.eigh(kk)
    lam = lam.clamp_min(0.0)
    tol = lam.max() * kk.shape[0] * torch.finfo(torch.float64).eps
    if steps is None:
        g = torch.where(lam > tol, 1.0 / lam.clamp_min(tol), torch.zeros_like(lam))
    else:
        a = lr * lam / n
        # (1 - (1 - a)^t) / lambda, written with log1p/expm1 so that tiny lambda keeps its limit t lr / n
        g_pos = -torch.expm1(steps * torch.log1p(-a.clamp_max(1 - 1e-12))) / lam.clamp_min(tol)
        direct = (1 - (1 - a) ** steps) / lam.clamp_min(tol)  # for a >= 1 (oscillating or diverging GD)
        g = torch.where(a < 1, g_pos, direct)
        g = torch.where(lam > tol, g, torch.full_like(lam, steps * lr / n))
    alpha = u @ (g.unsqueeze(1) * (u.T @ resid))
    test = kt @ alpha
    train = kk @ alpha
    return {"train": f0_train.double() + train.reshape(n, k), "test": f0_test.double() + test.reshape(m, k)}


class NTKParamMLP(nn.Module):
    """A bias-free ReLU MLP in the NTK parameterisation (Jacot, Gabriel, Hongler, NeurIPS 2018):

        h_1 = relu(W_1 x / sqrt(d)),  h_l = relu(W_l h_{l-1} / sqrt(m)),  f(x) = V h_L / sqrt(m),
    every weight drawn N(0, 1). The 1/sqrt(fan_in) factors sit in the forward pass instead of the initialisation,
    so the kernel converges to a finite limit as the width m grows and a fixed learning rate stays stable at every
    width; with the standard parameterisation the kernel would grow with m.
    """

    def __init__(self, in_features: int, width: int, out_features: int, depth: int = 1, seed: int = 0) -> None:
        super().__init__()
        for name, value, minimum in (("in_features", in_features, 1), ("width", width, 1),
                                     ("out_features", out_features, 1), ("depth", depth, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name}={value!r} is not allowed; allowed: an int >= {minimum}")
        gen = torch.Generator().manual_seed(seed)
        sizes = [in_features] + [width] * depth
        self.hidden = nn.ParameterList(
            [nn.Parameter(torch.randn(sizes[i + 1], sizes[i], generator=gen)) for i in range(depth)])
        self.out = nn.Parameter(torch.randn(out_features, width, generator=gen))
        self.in_features, self.width = in_features, width

    def forward(self, x: Tensor) -> Tensor:
        h = x.reshape(x.shape[0], -1)
        for w in self.hidden:
            h = torch.relu(h @ w.T / math.sqrt(w.shape[1]))
        return h @ self.out.T / math.sqrt(self.width)
