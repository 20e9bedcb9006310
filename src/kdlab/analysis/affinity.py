"""Class affinity of a classifier and how consistently different models rank it.

The affinity matrix A[i, j] says how much a model's probability mass for samples of true class i
goes to the wrong class j. "Exploring Dark Knowledge under Various Teacher Capacities and
Addressing Capacity Mismatch" (Fan, Li, Zhan, FCS 2026) observes that teachers of different
capacity agree on these relative affinities; ``affinity_consistency`` measures that agreement with
rank correlations (Spearman, Kendall tau-b) and top-k overlap.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..io import atomic_write
from .dark_knowledge import check_logits_targets, check_temperature, iter_logit_batches

__all__ = [
    "AffinityAccumulator",
    "CONSISTENCY_STATS",
    "affinity_consistency",
    "average_ranks",
    "class_affinity",
    "consistency_matrix",
    "kendall_tau_b",
    "plot_affinity_heatmap",
    "plot_consistency_matrix",
    "spearman_correlation",
]

CONSISTENCY_STATS: tuple[str, ...] = ("spearman", "kendall", "topk_overlap")

# Above this many classes the per-cell numbers would overlap, so heatmaps are drawn without them.
MAX_ANNOTATED_CLASSES = 20
# Above this many classes class names would overlap; the axes then show plain indices.
MAX_NAMED_CLASSES = 100
MAX_FIGURE_INCHES = 16.0


# ---------------------------------------------------------------------------------------------
# Affinity matrix
# ---------------------------------------------------------------------------------------------


class AffinityAccumulator:
    """Streams the class-affinity matrix over batches of (logits, targets); memory is O(C^2).

    A[i, j] = S[i, j] / sum_{k != i} S[i, k] for j != i, A[i, i] = 0, where
    S[i, j] = mean over samples with true class i of softmax(z / tau)_j. A class with no samples
    gets a row of NaN. Paper: "Exploring Dark Knowledge under Various Teacher Capacities and
    Addressing Capacity Mismatch", Fan, Li, Zhan, FCS 2026.
    """

    def __init__(self, num_classes: int, temperature: float = 1.0) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        self.num_classes = num_classes
        self.temperature = check_temperature(temperature)
        # log of the per-class sums of probabilities. Log space because a confident model (logits
        # ~1e4) has non-GT probabilities that underflow to 0 in float64, which would leave whole
        # rows 0/0; their logs stay finite and the renormalised row is still exact.
        self._log_sums = torch.full((num_classes, num_classes), -math.inf, dtype=torch.float64)
        self._count = torch.zeros(num_classes, dtype=torch.long)

    @torch.no_grad()
    def update(self, logits: Tensor, targets: Tensor) -> None:
        """Add one batch: logits [N, C] (any float dtype/device), targets [N] class indices."""
        check_logits_targets(logits, targets, self.num_classes)
        if logits.shape[0] == 0:
            return
        z = logits.detach().to(device="cpu", dtype=torch.float64)
        y = targets.detach().to(device="cpu", dtype=torch.long)
        if not bool(torch.isfinite(z).all()):
            raise ValueError("logits must be finite, got NaN or infinite values")
        log_p = torch.log_softmax(z / self.temperature, dim=1)
        # Per-class log-sum-exp over the batch: shift by the per-class column maximum, sum, unshift.
        rows = y.unsqueeze(1).expand_as(log_p)
        peak = torch.full_like(self._log_sums, -math.inf).scatter_reduce_(0, rows, log_p, reduce="amax")
        shifted = torch.zeros_like(self._log_sums).index_add_(0, y, (log_p - peak[y]).exp())
        batch_log_sums = shifted.log() + peak  # classes absent from the batch: log(0) + -inf = -inf
        self._log_sums = torch.logaddexp(self._log_sums, batch_log_sums)
        self._count += torch.bincount(y, minlength=self.num_classes)

    def compute(self) -> Tensor:
        """Return A as a float64 [C, C] tensor: zero diagonal, rows summing to 1, NaN rows for empty classes."""
        log_rows = self._log_sums.clone()
        log_rows.fill_diagonal_(-math.inf)
        # Row renormalisation makes the division by the class count cancel out.
        affinity = torch.softmax(log_rows, dim=1)
        affinity[self._count == 0] = math.nan
        return affinity


def class_affinity(
    logits_or_batches: Tensor | Iterable[tuple[Tensor, Tensor]],
    targets: Tensor | None = None,
    num_classes: int | None = None,
    temperature: float = 1.0,
) -> Tensor:
    """Class-affinity matrix [C, C] of one logits tensor or an iterable of (logits, targets) batches.

    A[i, j] = mean_{n: y_n = i} p_nj / sum_{k != i} mean_{n: y_n = i} p_nk for j != i, A[i, i] = 0,
    with p_n = softmax(z_n / tau); rows of classes without samples are NaN. ``num_classes`` defaults
    to the width of the first batch. Paper: "Exploring Dark Knowledge under Various Teacher
    Capacities and Addressing Capacity Mismatch", Fan, Li, Zhan, FCS 2026.
    """
    accumulator: AffinityAccumulator | None = None
    for logits, batch_targets in iter_logit_batches(logits_or_batches, targets):
        if accumulator is None:
            check_logits_targets(logits, batch_targets, num_classes)
            accumulator = AffinityAccumulator(logits.shape[1], temperature)
        accumulator.update(logits, batch_targets)
    if accumulator is None:
        raise ValueError("logits_or_batches must hold at least one (logits, targets) batch, got none")
    return accumulator.compute()


# ---------------------------------------------------------------------------------------------
# Rank correlations (own implementations: exact tie handling, no scipy import)
# ---------------------------------------------------------------------------------------------


def _as_vector(x: Tensor | np.ndarray | Sequence[float], name: str) -> np.ndarray:
    arr = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must hold finite values, got NaN or infinite entries")
    return arr


def _paired_vectors(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_vector(x, "x"), _as_vector(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"x and y must have the same length, got {a.shape[0]} and {b.shape[0]}")
    return a, b


# The helpers below work on [R, n] arrays, one ranking problem per row, so the per-row statistics
# of a 1000-class affinity matrix are a handful of numpy calls rather than 1000 Python loops.


def _rank_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: dense integer ranks (ties equal, 0-based), average ranks (1-based), tied-pair count."""
    rows, n = x.shape
    order = np.argsort(x, axis=1, kind="stable")
    s = np.take_along_axis(x, order, axis=1)
    starts_run = np.ones_like(s, dtype=bool)
    starts_run[:, 1:] = s[:, 1:] != s[:, :-1]
    ends_run = np.ones_like(s, dtype=bool)
    ends_run[:, :-1] = starts_run[:, 1:]
    idx = np.broadcast_to(np.arange(n), s.shape)
    run_start = np.maximum.accumulate(np.where(starts_run, idx, 0), axis=1)
    run_end = np.minimum.accumulate(np.where(ends_run, idx, n)[:, ::-1], axis=1)[:, ::-1]
    dense = np.empty((rows, n), dtype=np.int64)
    average = np.empty((rows, n), dtype=np.float64)
    np.put_along_axis(dense, order, np.cumsum(starts_run, axis=1) - 1, axis=1)
    np.put_along_axis(average, order, (run_start + run_end) / 2.0 + 1.0, axis=1)
    # sum over tie groups of t (t - 1) / 2 = sum over elements of their position inside the group
    tied_pairs = (idx - run_start).sum(axis=1)
    return dense, average, tied_pairs


def _count_inversions_rows(seq: np.ndarray) -> np.ndarray:
    """Per row, the number of pairs i < j with seq[i] > seq[j] (strict); entries are integers in [0, n).

    Bottom-up merge sort, vectorised per level: O(n log^2 n) per row and O(R n) memory, so the
    ~1e6 flattened off-diagonal entries of a 1000-class matrix are fine where pair loops are not.
    """
    rows, n = seq.shape
    inversions = np.zeros(rows, dtype=np.int64)
    a = seq.astype(np.int64)
    col = np.arange(n)
    row_id = np.arange(rows)[:, None]
    width = 1
    while width < n:
        blocks_per_row = -(-n // (2 * width))
        block = row_id * blocks_per_row + col // (2 * width)
        in_left = (col % (2 * width)) < width
        # block * n keeps blocks apart and in order, so all left halves together form one sorted array
        keyed = a + block * n
        left_keys = keyed[:, in_left].ravel()
        right_keys = keyed[:, ~in_left].ravel()
        # end of each block's left half inside left_keys
        left_end = np.cumsum(np.bincount(block[:, in_left].ravel(), minlength=rows * blocks_per_row))
        greater = left_end[block[:, ~in_left].ravel()] - np.searchsorted(left_keys, right_keys, side="right")
        inversions += greater.reshape(rows, -1).sum(axis=1)
        a = np.sort(keyed, axis=1) - block * n  # merge: each block ends up sorted in place
        width *= 2
    return inversions


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    _, rx, _ = _rank_rows(x)
    _, ry, _ = _rank_rows(y)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    numerator = (rx * ry).sum(axis=1)
    denominator = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(denominator > 0, numerator / denominator, np.nan)
    return np.clip(rho, -1.0, 1.0)


def _kendall_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    dx, _, tied_x = _rank_rows(x)
    dy, _, tied_y = _rank_rows(y)
    _, _, tied_both = _rank_rows(dx * n + dy)
    pairs = n * (n - 1) // 2
    # Sorted by (x, y), a pair with different x is discordant exactly when its y order is inverted;
    # pairs inside an x tie are sorted by y, so they add no inversions.
    order = np.lexsort((dy, dx), axis=1)
    discordant = _count_inversions_rows(np.take_along_axis(dy, order, axis=1))
    concordant_minus_discordant = (pairs - tied_x - tied_y + tied_both - 2 * discordant).astype(np.float64)
    denominator = np.sqrt((pairs - tied_x).astype(np.float64) * (pairs - tied_y).astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = np.where(denominator > 0, concordant_minus_discordant / denominator, np.nan)
    return np.clip(tau, -1.0, 1.0)


def average_ranks(x: Tensor | np.ndarray | Sequence[float]) -> np.ndarray:
    """1-based ranks of ``x`` where tied values share the average of the ranks they span.

    rank(x_i) = #{j: x_j < x_i} + (#{j: x_j = x_i} + 1) / 2, e.g. [10, 20, 20, 30] -> [1, 2.5, 2.5, 4].
    Paper: "The proof and measurement of association between two things", Spearman, Am. J. Psychol., 1904.
    """
    arr = _as_vector(x, "x")
    return _rank_rows(arr[None, :])[1][0]


def spearman_correlation(x: Tensor | np.ndarray | Sequence[float], y: Tensor | np.ndarray | Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of the average ranks (ties get the average rank).

    rho = sum_i (r_i - mean r)(s_i - mean s) / sqrt(sum_i (r_i - mean r)^2 * sum_i (s_i - mean s)^2),
    r = average_ranks(x), s = average_ranks(y). NaN when either input is constant (rank variance 0)
    or has fewer than 2 entries. Paper: "The proof and measurement of association between two
    things", Spearman, Am. J. Psychol., 1904.
    """
    a, b = _paired_vectors(x, y)
    if a.shape[0] < 2:
        return math.nan
    return float(_spearman_rows(a[None, :], b[None, :])[0])


def kendall_tau_b(x: Tensor | np.ndarray | Sequence[float], y: Tensor | np.ndarray | Sequence[float]) -> float:
    """Kendall's tau-b with tie correction.

    tau_b = (n_c - n_d) / sqrt((n_0 - n_1) (n_0 - n_2)), n_0 = n (n - 1) / 2, n_1 / n_2 = pairs tied in
    x / in y, n_c / n_d = concordant / discordant pairs (pairs tied in x or y count as neither).
    NaN when x or y is constant or has fewer than 2 entries. O(n log^2 n).
    Paper: "The treatment of ties in ranking problems", Kendall, Biometrika, 1945.
    """
    a, b = _paired_vectors(x, y)
    if a.shape[0] < 2:
        return math.nan
    return float(_kendall_rows(a[None, :], b[None, :])[0])


# ---------------------------------------------------------------------------------------------
# Consistency between affinity matrices
# ---------------------------------------------------------------------------------------------


def _check_affinity(a: Tensor, name: str) -> np.ndarray:
    if not isinstance(a, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [C, C], got {type(a).__name__}")
    if a.dim() != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 2:
        raise ValueError(f"{name} must be a square [C, C] matrix with C >= 2, got shape {tuple(a.shape)}")
    return a.detach().cpu().double().numpy()


def _top_k_columns(a: np.ndarray, k: int) -> np.ndarray:
    """[R, k] column indices of each row's k largest off-diagonal entries; ties go to the lower index."""
    masked = a.copy()
    np.fill_diagonal(masked, -np.inf)
    # stable sort of the negated values keeps equal entries in column order
    return np.argsort(-masked, axis=1, kind="stable")[:, :k]


def _none_if_nan(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values.tolist()]


def affinity_consistency(A: Tensor, B: Tensor, top_k: int = 3) -> dict[str, Any]:
    """How consistently two affinity matrices [C, C] rank the wrong classes.

    - spearman / kendall: Spearman's rho / Kendall's tau-b of the off-diagonal entries of A and B,
      flattened row by row (C (C - 1) pairs).
    - spearman_per_row / kendall_per_row: the same per row i over its C-1 entries A[i, j], j != i.
    - topk_overlap = mean_i |topk_i(A) ∩ topk_i(B)| / k, topk_i over the off-diagonal entries of row i
      (ties go to the lower class index).
    Rows holding NaN in A or B (classes without samples) are left out of every statistic; their
    per-row values, and any correlation that is undefined (a constant row), are None so the dict is
    strict JSON. ``rows_used`` counts the rows that entered.
    Paper: "Exploring Dark Knowledge under Various Teacher Capacities and Addressing Capacity
    Mismatch", Fan, Li, Zhan, FCS 2026.
    """
    a = _check_affinity(A, "A")
    b = _check_affinity(B, "B")
    if a.shape != b.shape:
        raise ValueError(f"A and B must have the same shape, got {a.shape} and {b.shape}")
    c = a.shape[0]
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= c - 1:
        raise ValueError(f"top_k must be an integer in [1, {c - 1}] for {c} classes, got {top_k!r}")
    if np.isinf(a).any() or np.isinf(b).any():
        raise ValueError("A and B must not hold infinite values")
    off_diagonal = ~np.eye(c, dtype=bool)
    rows = np.flatnonzero(~(np.isnan(a).any(axis=1) | np.isnan(b).any(axis=1)))
    a_rows = a[rows][off_diagonal[rows]].reshape(len(rows), c - 1)
    b_rows = b[rows][off_diagonal[rows]].reshape(len(rows), c - 1)

    spearman_per_row = np.full(c, np.nan)
    kendall_per_row = np.full(c, np.nan)
    spearman_per_row[rows] = _spearman_rows(a_rows, b_rows)
    kendall_per_row[rows] = _kendall_rows(a_rows, b_rows)
    top_a = _top_k_columns(a, top_k)[rows]
    top_b = _top_k_columns(b, top_k)[rows]
    shared = (top_a[:, :, None] == top_b[:, None, :]).any(axis=2).sum(axis=1)

    a_flat, b_flat = a_rows.reshape(1, -1), b_rows.reshape(1, -1)
    no_rows = np.array([np.nan])
    spearman = _spearman_rows(a_flat, b_flat) if len(rows) > 0 else no_rows
    kendall = _kendall_rows(a_flat, b_flat) if len(rows) > 0 else no_rows
    return {
        "spearman": _none_if_nan(spearman)[0],
        "kendall": _none_if_nan(kendall)[0],
        "spearman_per_row": _none_if_nan(spearman_per_row),
        "kendall_per_row": _none_if_nan(kendall_per_row),
        "topk_overlap": float(shared.mean()) / top_k if len(rows) > 0 else None,
        "top_k": top_k,
        "rows_used": int(len(rows)),
    }


def consistency_matrix(affinities: Sequence[Tensor], stat: str = "spearman", top_k: int = 3) -> Tensor:
    """Pairwise consistency [M, M] of M affinity matrices under one statistic of ``affinity_consistency``.

    S[m, n] = stat(affinities[m], affinities[n]) for stat in spearman, kendall, topk_overlap;
    S[m, m] = 1; symmetric; NaN where the statistic is undefined. Paper: "Exploring Dark Knowledge
    under Various Teacher Capacities and Addressing Capacity Mismatch", Fan, Li, Zhan, FCS 2026.
    """
    if stat not in CONSISTENCY_STATS:
        raise ValueError(f"stat must be one of {', '.join(CONSISTENCY_STATS)}, got {stat!r}")
    if isinstance(affinities, Tensor) or not isinstance(affinities, Sequence) or len(affinities) == 0:
        raise ValueError(f"affinities must be a non-empty sequence of [C, C] tensors, got {type(affinities).__name__}")
    for m, a in enumerate(affinities):
        _check_affinity(a, f"affinities[{m}]")
    m_count = len(affinities)
    result = torch.eye(m_count, dtype=torch.float64)
    for m in range(m_count):
        for n in range(m + 1, m_count):
            value = affinity_consistency(affinities[m], affinities[n], top_k)[stat]
            result[m, n] = result[n, m] = math.nan if value is None else value
    return result


# ---------------------------------------------------------------------------------------------
# Plots (matplotlib Agg, written atomically)
# ---------------------------------------------------------------------------------------------


def _check_png_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise ValueError(f"path must end with .png (a PNG is written), got {str(path)!r}")
    return p


def _check_labels(labels: Sequence[str], size: int, name: str) -> list[str]:
    if isinstance(labels, str) or not isinstance(labels, Sequence) or len(labels) != size:
        got = len(labels) if isinstance(labels, Sequence) else type(labels).__name__
        raise ValueError(f"{name} must be a sequence of {size} names, got {got}")
    return [str(label) for label in labels]


def _save_png(figure: Any, path: Path) -> Path:
    # Agg canvas bound to this figure only: no pyplot, no global backend switch, no display needed. Lazily, as the
    # two figure functions below: matplotlib is slow to import and only these plots need it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    return atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=120, bbox_inches="tight"))


def _annotate(ax: Any, values: np.ndarray, on_dark_cell: Callable[[float], bool], fontsize: int) -> None:
    """Write each cell's value (two decimals, a dash for NaN); white text where the colour is dark."""
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = float(values[i, j])
            text = "—" if math.isnan(v) else f"{v:.2f}"
            colour = "white" if not math.isnan(v) and on_dark_cell(v) else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color=colour)


def plot_affinity_heatmap(
    A: Tensor, class_names: Sequence[str], path: str | os.PathLike, title: str | None = None
) -> Path:
    """Write a PNG heatmap of an affinity matrix (rows: true class, columns: wrong class) and return its path.

    Cell (i, j) shows A[i, j]; the diagonal (excluded from A) and NaN rows are blank. Cells carry
    their value when C <= 20; class names label the axes when C <= 100 (plain indices above).
    Paper: "Exploring Dark Knowledge under Various Teacher Capacities and Addressing Capacity
    Mismatch", Fan, Li, Zhan, FCS 2026.
    """
    values = _check_affinity(A, "A").copy()
    c = values.shape[0]
    names = _check_labels(class_names, c, "class_names")
    out = _check_png_path(path)
    np.fill_diagonal(values, np.nan)

    from matplotlib.figure import Figure

    # Grow with C so cells stay legible, but cap the canvas (~2000 px) for 100+ classes.
    side = min(MAX_FIGURE_INCHES, max(4.0, 0.45 * c + 2.0))
    figure = Figure(figsize=(side + 1.0, side))
    ax = figure.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=0.0)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="affinity")
    if c <= MAX_NAMED_CLASSES:
        fontsize = 8 if c <= 40 else 5
        rotation, align = (45, "right") if c <= 10 else (90, "center")
        ax.set_xticks(range(c), names, rotation=rotation, ha=align, fontsize=fontsize)
        ax.set_yticks(range(c), names, fontsize=fontsize)
    ax.set_xlabel("non-ground-truth class j")
    ax.set_ylabel("true class i")
    if c <= MAX_ANNOTATED_CLASSES:
        finite = values[np.isfinite(values)]
        midpoint = float(finite.max()) / 2.0 if finite.size else 0.0
        _annotate(ax, values, lambda v: v < midpoint, fontsize=7)  # viridis is dark at the low end
    ax.set_title(title if title is not None else "Class affinity")
    return _save_png(figure, out)


def plot_consistency_matrix(
    M: Tensor, labels: Sequence[str], path: str | os.PathLike, title: str | None = None
) -> Path:
    """Write a PNG heatmap of a pairwise consistency matrix (from ``consistency_matrix``) and return its path.

    Cell (m, n) shows S[m, n] on a diverging scale over [-1, 1], annotated with its value.
    Paper: "Exploring Dark Knowledge under Various Teacher Capacities and Addressing Capacity
    Mismatch", Fan, Li, Zhan, FCS 2026.
    """
    if not isinstance(M, Tensor) or M.dim() != 2 or M.shape[0] != M.shape[1] or M.shape[0] < 1:
        shape = tuple(M.shape) if isinstance(M, Tensor) else type(M).__name__
        raise ValueError(f"M must be a square [M, M] tensor with M >= 1, got {shape}")
    values = M.detach().cpu().double().numpy()
    size = values.shape[0]
    names = _check_labels(labels, size, "labels")
    out = _check_png_path(path)

    from matplotlib.figure import Figure

    side = min(MAX_FIGURE_INCHES, max(4.0, 0.6 * size + 2.0))
    figure = Figure(figsize=(side + 1.0, side))
    ax = figure.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu_r", vmin=-1.0, vmax=1.0)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="consistency")
    ax.set_xticks(range(size), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(size), names, fontsize=8)
    if size <= MAX_ANNOTATED_CLASSES:
        _annotate(ax, values, lambda v: abs(v) > 0.6, fontsize=8)  # RdBu is dark at both ends
    ax.set_title(title if title is not None else "Affinity consistency")
    return _save_png(figure, out)
