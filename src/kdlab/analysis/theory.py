"""Why distillation works, as measurements: distillation error, the distillation generalization bound, risk variance.

Three explanations from the survey's sections 6 and 7, each turned into a function that measures something:

- ``distillation_error``: Phi_{gamma,n}(f, g), how far a student g is from a teacher f in softened target probability,
  and the L1 distance between their softened distributions (Hsu, Ji, Telgarsky, Wang, "Generalization Bounds via
  Distillation", ICLR 2021).
- ``generalization_bound``: the survey's Lemma (after Hsu et al.) evaluated term by term for a teacher f and a
  student g: the teacher's test error is bounded by the student's training surrogate + 8 Phi + the complexity of the
  student's class. The Rademacher term is a norm-based upper bound for ReLU MLPs (``margin_rademacher_bound``).
- ``risk_variance``: Monte-Carlo variance, over resampled datasets, of the one-hot empirical risk, the Bayes-distilled
  risk and a teacher-distilled risk of a fixed predictor (Menon, Rawat, Reddi, Kim, Kumar, "A Statistical Perspective
  on Distillation", ICML 2021): V[R*_hat(f)] <= V[R_hat(f)].

Nothing here trains a model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.seeding import derive_seed, generator_for
from .dark_knowledge import check_logits_targets

__all__ = [
    "augmented_layer_norms",
    "distillation_error",
    "distilled_risk_per_sample",
    "generalization_bound",
    "margin_rademacher_bound",
    "mlp_linears",
    "norm_grid_class",
    "onehot_risk_per_sample",
    "risk_variance",
    "softened_target_probability",
    "variance_interval",
    "variance_ratio_interval",
]


def _check_gamma(gamma: float) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or gamma <= 0:
        raise ValueError(f"gamma={gamma!r} is not allowed; allowed: a finite float > 0 (the softmax temperature)")
    return float(gamma)


def softened_target_probability(logits: Tensor, targets: Tensor, gamma: float) -> Tensor:
    """phi_gamma(f(x_i), y_i) = exp(f(x_i)_{y_i} / gamma) / sum_j exp(f(x_i)_j / gamma), per sample, float64 [N].

    The softmax with temperature gamma of the survey's section 7 (Hsu, Ji, Telgarsky, Wang, "Generalization Bounds
    via Distillation", ICLR 2021), read at the label.
    """
    check_logits_targets(logits, targets)
    gamma = _check_gamma(gamma)
    probs = torch.softmax(logits.detach().double() / gamma, dim=1)
    return probs.gather(1, targets.long().view(-1, 1)).squeeze(1)


def distillation_error(f_logits: Tensor, g_logits: Tensor, targets: Tensor, gamma: float) -> dict[str, float]:
    """The distillation error of a student g against a teacher f on n labelled points.

    phi:  Phi_{gamma,n}(f, g) = (1/n) sum_i | phi_gamma(f(x_i), y_i) - phi_gamma(g(x_i), y_i) |
          (exactly as defined in the survey's section 7).
    l1:   (1/n) sum_i || softmax(f(x_i) / gamma) - softmax(g(x_i) / gamma) ||_1, the distillation distance of
          Hsu, Ji, Telgarsky, Wang, "Generalization Bounds via Distillation", ICLR 2021 (it needs no labels).

    Since both distributions sum to 1, |p_y - q_y| = |sum_{j != y} (q_j - p_j)|, so phi <= l1 / 2 always.
    Returns ``{"phi", "l1", "n"}``; 0 and 0 for identical predictors.
    """
    check_logits_targets(f_logits, targets)
    check_logits_targets(g_logits, targets)
    if f_logits.shape != g_logits.shape:
        raise ValueError(f"f_logits {tuple(f_logits.shape)} and g_logits {tuple(g_logits.shape)} must have the same "
                         "shape [n, k]")
    gamma = _check_gamma(gamma)
    if f_logits.shape[0] == 0:
        raise ValueError("distillation_error needs at least one sample (f_logits has 0 rows)")
    p = torch.softmax(f_logits.detach().double() / gamma, dim=1)
    q = torch.softmax(g_logits.detach().double() / gamma, dim=1)
    idx = targets.long().view(-1, 1)
    phi = (p.gather(1, idx) - q.gather(1, idx)).abs().mean()
    l1 = (p - q).abs().sum(1).mean()
    return {"phi": float(phi), "l1": float(l1), "n": int(f_logits.shape[0])}


# ------------------------------------------------------------------------------------------ the Rademacher term


def mlp_linears(model: nn.Module) -> list[nn.Linear]:
    """The Linear layers of a ReLU MLP in forward order: kdlab's ``mlp`` (hidden layers, then the head).

    The norm bound below holds for networks x -> W_L relu(... relu(W_1 x + b_1) ...) + b_L only, so anything else
    (another family, a tanh/GELU activation) is refused with a ValueError naming the model.
    """
    spec = getattr(model, "spec", {}) or {}
    if spec.get("name") != "mlp" or not hasattr(model, "hidden") or not hasattr(model, "head"):
        raise ValueError(f"model {spec.get('name', type(model).__name__)!r} is not allowed; the norm-based "
                         "Rademacher bound is implemented for kdlab 'mlp' models (Linear + ReLU layers) only")
    if spec.get("activation", "relu") != "relu":
        raise ValueError(f"model activation={spec.get('activation')!r} is not allowed; allowed: 'relu' (the bound "
                         "needs a 1-Lipschitz, positive-homogeneous activation)")
    return [layer[0] for layer in model.hidden] + [model.head]


def augmented_layer_norms(linears: Sequence[nn.Linear]) -> list[float]:
    """Frobenius norms of the layer matrices once the biases are folded into the weights.

    Append a constant 1 to the input, x' = [x; 1]. A hidden layer becomes W'_l = [[W_l, b_l], [0, 1]] (the extra
    unit carries the 1 through the ReLU, relu(1) = 1) and the last layer W'_L = [W_L, b_L], so the network is
    bias-free on x' and
        ||W'_l||_F^2 = ||W_l||_F^2 + ||b_l||^2 + 1  (hidden),    ||W'_L||_F^2 = ||W_L||_F^2 + ||b_L||^2  (last).
    """
    if len(linears) == 0:
        raise ValueError("linears is empty; allowed: at least one nn.Linear")
    norms = []
    for i, layer in enumerate(linears):
        if not isinstance(layer, nn.Linear):
            raise ValueError(f"linears[{i}] is a {type(layer).__name__}; allowed: nn.Linear")
        sq = float(layer.weight.detach().double().pow(2).sum())
        if layer.bias is not None:
            sq += float(layer.bias.detach().double().pow(2).sum())
        if i < len(linears) - 1:
            sq += 1.0
        norms.append(math.sqrt(sq))
    return norms


def margin_rademacher_bound(layer_norms: Sequence[float], x: Tensor, num_classes: int,
                            augment_input: bool = True) -> float:
    """Upper bound on the empirical Rademacher complexity of the margin class of a ReLU network family.

    The class: G = { depth-d ReLU networks x -> W_d relu(... relu(W_1 x)) with ||W_j||_F <= M_j } (biases folded
    in, see ``augmented_layer_norms``), and the margin class { (x, y) -> g(x)_y - max_{i != y} g(x)_i : g in G }.

        Rad <= (2 k / n) * prod_j M_j * (sqrt(2 ln(2) d) + 1) * sqrt(sum_i ||x_i||^2)

    with ||x_i||^2 + 1 in place of ||x_i||^2 when ``augment_input`` (the constant input that carries the biases).
    Derivation, three published steps:
    1. the margin map z -> z_y - max_{i != y} z_i is sqrt(2)-Lipschitz in l2 (|d_y| + max_{i != y} |d_i| <=
       sqrt(2) ||d||), so by the vector-contraction inequality (Maurer, "A Vector-Contraction Inequality for
       Rademacher Complexities", ALT 2016) Rad(margin class) <= sqrt(2) * sqrt(2) * (1/n) E sup sum_{i,c}
       sigma_{ic} g_c(x_i);
    2. the sup of a sum over the k outputs is at most the sum of the k sups, and output c is a scalar network whose
       last layer (row c of W_d) has norm <= M_d: a factor k on the scalar class's complexity;
    3. the scalar class: Golowich, Rakhlin, Shamir, "Size-Independent Sample Complexity of Neural Networks",
       COLT 2018, Theorem 1 (1-Lipschitz positive-homogeneous activation, Frobenius-norm bounds M_j):
       R_n <= (1/n) prod_j M_j (sqrt(2 ln(2) d) + 1) sqrt(sum_i ||x_i||^2).
    Assumptions: ReLU activations, element-wise; the bound is for the whole norm ball, so it is an upper bound
    (usually loose) and not an estimate of the trained network's own fit to noise.
    """
    norms = [float(m) for m in layer_norms]
    if not norms or any(not math.isfinite(m) or m < 0 for m in norms):
        raise ValueError(f"layer_norms={layer_norms!r} is not allowed; allowed: a non-empty list of finite norms >= 0")
    if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a tensor [n, ...] with n >= 1, got {getattr(x, 'shape', type(x).__name__)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r} is not allowed; allowed: an int >= 2")
    n, depth = x.shape[0], len(norms)
    sq = x.detach().double().reshape(n, -1).pow(2).sum(1) + (1.0 if augment_input else 0.0)
    return float(2 * num_classes / n * math.prod(norms) * (math.sqrt(2 * math.log(2) * depth) + 1)
                 * math.sqrt(float(sq.sum())))


def norm_grid_class(layer_norms: Sequence[float], architecture: int, num_architectures: int) -> dict[str, Any]:
    """The class G_j a network belongs to and its prior weight p_j, fixed before seeing data.

    Classes are indexed by (architecture a, integer exponents e_1..e_d): G_j = { networks of architecture a with
    ||W'_l||_F <= 2^{e_l} }. A network with norms M_l is in the class with e_l = ceil(log2 M_l). The prior is
        p_j = (1 / A) * prod_l q(e_l),   q(e) = 2 / (3 (|e| + 1)(|e| + 2)),   e in Z,
    with sum_e q(e) = (2/3)(1/2 + 2 * 1/2) = 1, so sum_j p_j = 1 over all architectures and exponents (the union
    bound behind the Lemma's 6 sqrt(ln(1/p_j) / n) term). Returns ``{"exponents", "levels", "prior_weight"}``;
    the Rademacher bound is evaluated at ``levels`` (2^{e_l} >= M_l), the class's norm radii.
    """
    if isinstance(num_architectures, bool) or not isinstance(num_architectures, int) or num_architectures < 1:
        raise ValueError(f"num_architectures={num_architectures!r} is not allowed; allowed: an int >= 1")
    if isinstance(architecture, bool) or not isinstance(architecture, int) or not 0 <= architecture < num_architectures:
        raise ValueError(f"architecture={architecture!r} is not allowed; allowed: 0..{num_architectures - 1}")
    exponents = []
    for m in layer_norms:
        if not math.isfinite(m) or m <= 0:
            raise ValueError(f"layer norm {m!r} is not allowed; allowed: finite and > 0")
        exponents.append(math.ceil(math.log2(m)))
    log_p = -math.log(num_architectures) + sum(math.log(2 / (3 * (abs(e) + 1) * (abs(e) + 2))) for e in exponents)
    return {"exponents": exponents, "levels": [2.0**e for e in exponents], "prior_weight": math.exp(log_p)}


# ------------------------------------------------------------------------------------------ the Lemma


def generalization_bound(f_logits: Tensor, g_logits: Tensor, targets: Tensor, *, gamma: float, delta: float,
                         prior_weight: float, rademacher: float, n: int | None = None) -> dict[str, float]:
    """The survey's section-7 Lemma (after Hsu, Ji, Telgarsky, Wang, ICLR 2021) for teacher f and student g in G_j.

    With probability at least 1 - delta over the n training points,
        Pr[f(x) != y] <= (2/n) sum_i (1 - phi_gamma(g(x_i), y_i))           "train_surrogate"
                         + 16 / n                                            "constant"
                         + 6 sqrt((ln(2/delta) + ln lg n) / n)               "confidence"   (lg = log base 2)
                         + 8 Phi_{gamma,n}(f, g)                             "distillation"
                         + (1/gamma) Rad(margin class of G_j)                "complexity"
                         + 6 sqrt(ln(1/p_j) / n)                             "prior"
    The Lemma takes the infimum over (j, g in G_j); evaluating it at one student gives a value >= the infimum, so
    every row is itself an upper bound. The training term is written with g, as the survey prints it; the teacher's
    own surrogate (2/n) sum_i (1 - phi_gamma(f(x_i), y_i)) is returned alongside as ``train_surrogate_teacher``.
    ``rademacher`` is Rad(...) itself (e.g. ``margin_rademacher_bound`` at the class's norm levels) and ``n``
    defaults to the number of rows (it must equal it: the averages and the concentration terms use the same n).

    Groups, as in the survey's summary "test error <= training error + distillation error + distillation
    complexity": ``training`` = train_surrogate, ``distillation_error`` = 8 Phi, ``distillation_complexity`` =
    constant + confidence + complexity + prior; ``total`` is their sum.
    """
    check_logits_targets(f_logits, targets)
    rows = int(targets.shape[0])
    if n is None:
        n = rows
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n={n!r} is not allowed; allowed: an int >= 2 (ln lg n needs n >= 2)")
    if n != rows:
        raise ValueError(f"n={n} is not allowed: the logits hold {rows} samples and the bound's averages use the "
                         "same n points; allowed: n == number of rows")
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < 1:
        raise ValueError(f"delta={delta!r} is not allowed; allowed: a float in (0, 1)")
    if isinstance(prior_weight, bool) or not isinstance(prior_weight, (int, float)) or not 0 < prior_weight <= 1:
        raise ValueError(f"prior_weight={prior_weight!r} is not allowed; allowed: a float in (0, 1]")
    if isinstance(rademacher, bool) or not isinstance(rademacher, (int, float)) or not math.isfinite(rademacher) \
            or rademacher < 0:
        raise ValueError(f"rademacher={rademacher!r} is not allowed; allowed: a finite float >= 0")
    gamma = _check_gamma(gamma)
    dist = distillation_error(f_logits, g_logits, targets, gamma)
    phi_g = softened_target_probability(g_logits, targets, gamma)
    phi_f = softened_target_probability(f_logits, targets, gamma)
    terms = {
        "train_surrogate": float(2 * (1 - phi_g).mean()),
        "constant": 16 / n,
        "confidence": 6 * math.sqrt((math.log(2 / delta) + math.log(math.log2(n))) / n),
        "distillation": 8 * dist["phi"],
        "complexity": rademacher / gamma,
        "prior": 6 * math.sqrt(math.log(1 / prior_weight) / n),
    }
    groups = {
        "training": terms["train_surrogate"],
        "distillation_error": terms["distillation"],
        "distillation_complexity": terms["constant"] + terms["confidence"] + terms["complexity"] + terms["prior"],
    }
    return {**terms, **groups, "total": sum(groups.values()), "phi": dist["phi"], "l1": dist["l1"],
            "rademacher": float(rademacher), "train_surrogate_teacher": float(2 * (1 - phi_f).mean()),
            "gamma": gamma, "delta": float(delta), "prior_weight": float(prior_weight), "n": n}


# ------------------------------------------------------------------------------------------ risk variance


def onehot_risk_per_sample(logits: Tensor, targets: Tensor) -> Tensor:
    """l(y_i, f(x_i)) = -log softmax(f(x_i))_{y_i}, the per-sample loss of the one-hot empirical risk R_hat(f), [N]."""
    check_logits_targets(logits, targets)
    return F.cross_entropy(logits.double(), targets.long(), reduction="none")


def distilled_risk_per_sample(logits: Tensor, probs: Tensor) -> Tensor:
    """sum_c p(c|x_i) l(c, f(x_i)) = -sum_c p(c|x_i) log softmax(f(x_i))_c, [N].

    With p = p* (the Bayes posterior) its mean is the Bayes-distilled risk R*_hat(f) of Menon et al. (ICML 2021);
    with p = a teacher's probabilities, the teacher-distilled risk.
    """
    if logits.dim() != 2 or probs.shape != logits.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and probs {tuple(probs.shape)} must both be [N, k]")
    return -(probs.double() * torch.log_softmax(logits.double(), dim=1)).sum(1)


def variance_interval(values: Tensor | Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Sample variance s^2 (ddof = 1) of R replicates with a chi-square confidence interval.

        [ (R-1) s^2 / chi2_{(1+c)/2, R-1},  (R-1) s^2 / chi2_{(1-c)/2, R-1} ]
    exact when the replicates are i.i.d. normal; here each replicate is a mean of n i.i.d. losses, close to normal
    by the central limit theorem (the interval is approximate for small n or heavy-tailed losses).
    """
    from scipy.stats import chi2  # lazily: scipy (installed with scikit-learn) is slow to import

    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() < 2:
        raise ValueError(f"values has {v.numel()} entries; allowed: at least 2 replicates")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r} is not allowed; allowed: a float in (0, 1)")
    r = v.numel()
    s2 = float(v.var(unbiased=True))
    return {"variance": s2, "low": (r - 1) * s2 / float(chi2.ppf((1 + confidence) / 2, r - 1)),
            "high": (r - 1) * s2 / float(chi2.ppf((1 - confidence) / 2, r - 1)), "replicates": r}


def variance_ratio_interval(a: Tensor | Sequence[float], b: Tensor | Sequence[float], confidence: float = 0.95,
                            num_bootstrap: int = 2000, seed: int = 0) -> dict[str, float]:
    """var(a) / var(b) of paired replicates with a percentile bootstrap interval.

    The replicates are paired (a_r and b_r are computed on the same dataset, so they are correlated and an F
    interval for independent samples would be wrong): resample replicate indices with replacement B times,
    recompute the ratio, take the (1-c)/2 and (1+c)/2 quantiles (Efron & Tibshirani, "An Introduction to the
    Bootstrap", 1993, ch. 13). Seeded, so the interval is reproducible.
    """
    a = torch.as_tensor(a, dtype=torch.float64).flatten()
    b = torch.as_tensor(b, dtype=torch.float64).flatten()
    if a.numel() != b.numel() or a.numel() < 2:
        raise ValueError(f"a and b must be paired replicates of equal length >= 2, got {a.numel()} and {b.numel()}")
    if isinstance(num_bootstrap, bool) or not isinstance(num_bootstrap, int) or num_bootstrap < 10:
        raise ValueError(f"num_bootstrap={num_bootstrap!r} is not allowed; allowed: an int >= 10")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r} is not allowed; allowed: a float in (0, 1)")
    ratio = float(a.var() / b.var())
    idx = torch.randint(0, a.numel(), (num_bootstrap, a.numel()), generator=generator_for(seed, "variance-ratio"))
    boot = a[idx].var(dim=1) / b[idx].var(dim=1)
    q = torch.quantile(boot, torch.tensor([(1 - confidence) / 2, (1 + confidence) / 2], dtype=torch.float64))
    return {"ratio": ratio, "low": float(q[0]), "high": float(q[1]), "num_bootstrap": num_bootstrap}


def _logits_of(model: nn.Module | Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 8192) -> Tensor:
    was_training = getattr(model, "training", None)
    if isinstance(model, nn.Module):
        model.eval()
    try:
        with torch.inference_mode():
            return torch.cat([model(x[i:i + batch_size]).double() for i in range(0, len(x), batch_size)])
    finally:
        if isinstance(model, nn.Module) and was_training:
            model.train()


def risk_variance(predictor: nn.Module | Callable[[Tensor], Tensor], mixture: Any, sizes: Sequence[int],
                  replicates: int, teacher: nn.Module | Callable[[Tensor], Tensor] | None = None, seed: int = 0,
                  confidence: float = 0.95, num_bootstrap: int = 2000) -> list[dict[str, Any]]:
    """Monte-Carlo variance of three empirical risks of a fixed predictor f over resampled datasets.

    For each dataset size n, draw ``replicates`` independent datasets of n points from ``mixture`` (a
    ``GaussianMixture``, whose p*(y|x) is exact) and compute on each
        one-hot risk         R_hat(f)   = (1/n) sum_i l(y_i, f(x_i))
        Bayes-distilled      R*_hat(f)  = (1/n) sum_i sum_c p*(c|x_i) l(c, f(x_i))
        teacher-distilled    R^t_hat(f) = (1/n) sum_i sum_c p_t(c|x_i) l(c, f(x_i))   (if ``teacher``)
    with l the softmax cross-entropy. Menon, Rawat, Reddi, Kim, Kumar, "A Statistical Perspective on
    Distillation", ICML 2021: both R_hat and R*_hat are unbiased for R(f), and V[R*_hat] <= V[R_hat] (law of total
    variance: R*_hat averages the one-hot loss over y given x). Reported per size: mean and variance of each risk
    with chi-square intervals, and the variance ratios against the one-hot risk with paired bootstrap intervals.
    """
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 2:
        raise ValueError(f"replicates={replicates!r} is not allowed; allowed: an int >= 2")
    if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
        raise ValueError(f"sizes={list(sizes)!r} is not allowed; allowed: a non-empty list of ints >= 1")
    rows = []
    for n in sizes:
        x, y = mixture.sample(n * replicates, generator_for(seed, "risk-variance", n))
        logits = _logits_of(predictor, x)
        risks = {"onehot": onehot_risk_per_sample(logits, y),
                 "bayes": distilled_risk_per_sample(logits, mixture.bayes_posterior(x))}
        if teacher is not None:
            risks["teacher"] = distilled_risk_per_sample(logits, torch.softmax(_logits_of(teacher, x), dim=1))
        means = {k: v.view(replicates, n).mean(1) for k, v in risks.items()}
        row: dict[str, Any] = {"n": n, "replicates": replicates}
        for key, values in means.items():
            row[key] = {"mean": float(values.mean()), **variance_interval(values, confidence)}
        for key in means:
            if key != "onehot":
                row[f"{key}_over_onehot"] = variance_ratio_interval(means[key], means["onehot"], confidence,
                                                                    num_bootstrap, seed=derive_seed(seed, n))
        rows.append(row)
    return rows

