"""Relation-based distillation losses: match how the samples of a batch relate to each other, not the features.

lsp (local structure over a kNN graph), rkd_distance, rkd_angle, rkd, sp and pairwise.

Each sample's feature is flattened to one embedding (``[N, ...] -> [N, D]``); teacher and student embeddings may have
any two widths, because only N x N (or N x N x N) relation tables are compared. No adapter is needed
(``shape_rule="any"``). The teacher is detached. All register into ``FEATURE_LOSSES`` (``feature_base.py``).

Pairs (i, j) always mean i != j: a sample's relation to itself carries no information about the others (a distance
of 0, a cosine of 1) and would only dilute the mean.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import LossOutput, named_parts
from .checks import check_int, check_positive
from .feature_base import FEATURE_LOSSES, FeatureLoss, check_choice, zero_loss
from .functional import soft_kl

# floor under squared distances before the square root: its gradient at 0 is infinite (duplicate samples)
EPS = 1e-12


def off_diagonal(matrix: Tensor) -> Tensor:
    """The entries with i != j of a square ``[N, N]`` matrix, row by row: ``-> [N, N - 1]``."""
    n = matrix.shape[0]
    keep = ~torch.eye(n, dtype=torch.bool, device=matrix.device)
    return matrix[keep].view(n, n - 1)


def squared_distances(z: Tensor) -> Tensor:
    """||z_i - z_j||^2 for rows of ``z`` ``[N, D] -> [N, N]``, via the Gram matrix (memory N^2, not N^2 D).

    Rows are centred first: distances do not change, and the Gram form loses less precision to cancellation.
    """
    z = z - z.mean(dim=0, keepdim=True)
    gram = z @ z.T
    norms = gram.diagonal()
    return (norms[:, None] + norms[None, :] - 2 * gram).clamp_min(0.0)


def distances(z: Tensor) -> Tensor:
    """Euclidean distances ||z_i - z_j|| ``[N, N]`` between the rows of ``z`` ``[N, D]``."""
    return squared_distances(z).clamp_min(EPS).sqrt()


def distance_potential(z: Tensor) -> Tensor:
    """RKD's psi_D for every pair i != j: ||z_i - z_j|| / mu, mu = mean of those distances: ``-> [N, N - 1]``."""
    pairs = off_diagonal(distances(z))
    return pairs / pairs.mean().clamp_min(EPS)


def angle_potential(z: Tensor) -> Tensor:
    """RKD's psi_A = cos of the angle at z_j in the triangle (z_i, z_j, z_k), for all distinct i, j, k: ``-> [M]``.

        cos[i, j, k] = <z_i - z_j, z_k - z_j> / (||z_i - z_j|| ||z_k - z_j||),   M = N (N-1) (N-2)

    Computed from the Gram matrix G (<z_i - z_j, z_k - z_j> = G_ik - G_ij - G_kj + G_jj), so memory is N^3, not
    N^2 D as with explicit difference vectors; rows are centred first (angles do not change) to limit cancellation.
    """
    z = z - z.mean(dim=0, keepdim=True)
    gram = z @ z.T
    norms = gram.diagonal()
    dist = (norms[:, None] + norms[None, :] - 2 * gram).clamp_min(EPS).sqrt()
    # index order [i, j, k]
    dot = gram[:, None, :] - gram[:, :, None] - gram[None, :, :] + norms[None, :, None]
    cos = dot / (dist[:, :, None] * dist[None, :, :])
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    distinct = ~(eye[:, :, None] | eye[:, None, :] | eye[None, :, :])   # i != j, i != k, j != k
    return cos[distinct]


def _embeddings(loss: FeatureLoss, student_feature: Tensor, teacher_feature: Tensor) -> tuple[Tensor, Tensor]:
    student, teacher = loss._pair(student_feature, teacher_feature)
    return student.flatten(1), teacher.flatten(1)


# -- lsp ---------------------------------------------------------------------------------------------------------


@FEATURE_LOSSES.register("lsp")
class LocalStructureLoss(FeatureLoss):
    """Local structure preserving: match each sample's distribution over its teacher-space neighbours.

    Yang, Qiu, Song, Tao, Wang, "Distilling Knowledge From Graph Convolutional Networks", CVPR 2020. The graph here
    is the k-nearest-neighbour graph of the batch in the teacher's feature space (samples flattened, z_i), without
    self loops; N(i) are i's k teacher neighbours, and the student's structure uses the *same* sets:

        LS_ij = exp(-||z_i - z_j||^2 / tau) / sum_{l in N(i)} exp(-||z_i - z_l||^2 / tau),   j in N(i)
        L     = weight * (1/N) sum_i KL(LS^t_i || LS^s_i)

    Kernel: the paper defines LS through a similarity function of the two features and leaves its choice open;
    kdlab uses the RBF (Gaussian) kernel on the Euclidean distance, tau = 2 sigma^2 (``temperature``). The KL direction (teacher
    first) is that of the authors' released code. With flattened conv features squared distances are large, so
    tau = 1 makes each LS_i nearly one-hot on the nearest neighbour; a tau near the typical squared distance keeps the
    whole neighbourhood in play.

    No adapter: the two feature spaces never meet, only the neighbour distributions are compared. ``k`` is reduced to
    N - 1 for batches with fewer than k + 1 samples; a batch of 1 has no neighbours and gives 0.

    Defaults (kdlab's, for batch-level graphs; the paper works on point-cloud and graph nodes): ``k=4``,
    ``temperature=1.0`` (the kernel exp(-||z_i - z_j||^2)), ``weight=1.0``.
    """

    name = "lsp"
    shape_rule = "any"

    def __init__(self, k: int = 4, temperature: float = 1.0, weight: float = 1.0) -> None:
        super().__init__(
            k=check_int("lsp", "k", k, minimum=1),
            temperature=check_positive("lsp", "temperature", temperature),
            weight=check_positive("lsp", "weight", weight),
        )
        self.k: int = self.hyperparams["k"]
        self.temperature: float = self.hyperparams["temperature"]
        self.weight: float = self.hyperparams["weight"]

    def neighbours(self, teacher_distances: Tensor) -> Tensor:
        """Indices ``[N, k]`` of each sample's k nearest neighbours (itself excluded) from ``[N, N]`` distances."""
        # a sample is its own nearest neighbour at distance 0: rule it out
        masked = teacher_distances.detach().clone().fill_diagonal_(float("inf"))
        k = min(self.k, masked.shape[0] - 1)
        return masked.topk(k, dim=1, largest=False).indices

    def compute(self, student_feature: Tensor, teacher_feature: Tensor) -> LossOutput:
        student, teacher = _embeddings(self, student_feature, teacher_feature)
        if student.shape[0] < 2:
            zero = zero_loss(student)
            return LossOutput(zero, named_parts(structure=zero))
        distances_t = squared_distances(teacher)
        index = self.neighbours(distances_t)
        logits_t = -distances_t.gather(1, index) / self.temperature
        logits_s = -squared_distances(student).gather(1, index) / self.temperature
        loss = self.weight * soft_kl(torch.log_softmax(logits_t, dim=1), torch.log_softmax(logits_s, dim=1))
        return LossOutput(loss, named_parts(structure=loss))


# -- rkd ---------------------------------------------------------------------------------------------------------


def _rkd_term(potential: Callable[[Tensor], Tensor], student: Tensor, teacher: Tensor, min_samples: int) -> Tensor:
    """mean huber(potential(student) - potential(teacher)) (beta 1), or 0 when the batch has fewer than
    ``min_samples`` samples (no pair for distances, no triangle for angles)."""
    if student.shape[0] < min_samples:
        return zero_loss(student)
    return F.smooth_l1_loss(potential(student), potential(teacher), beta=1.0)


@FEATURE_LOSSES.register("rkd_distance")
class RKDDistanceLoss(FeatureLoss):
    """RKD distance-wise loss: match the batch's pairwise distances, each side normalised by its mean distance.

    Park, Kim, Lu, Cho, "Relational Knowledge Distillation", CVPR 2019, eqs. (4)-(5):

        psi_D(z_i, z_j) = ||z_i - z_j||_2 / mu,    mu = mean over pairs i != j of ||z_i - z_j||_2
        L = weight * mean_{i != j} huber( psi_D(s_i, s_j) - psi_D(t_i, t_j) )
        huber(x) = x^2 / 2 if |x| <= 1 else |x| - 1/2

    The normalisation by mu makes teacher and student distances comparable whatever their scales and widths. The
    paper sums over pairs; kdlab averages over the N(N-1) ordered pairs so ``weight`` does not depend on the batch
    size. A batch of 1 has no pairs and gives 0.

    ``weight=25.0``: the distance weight used for CIFAR classification (the CRD benchmark of Tian, Krishnan, Isola,
    ICLR 2020, which sets 25 for distance and 50 for angle); the paper's metric-learning runs use 1 and 2.
    """

    name = "rkd_distance"

    def __init__(self, weight: float = 25.0) -> None:
        super().__init__(weight=check_positive("rkd_distance", "weight", weight))
        self.weight: float = self.hyperparams["weight"]

    def compute(self, student_feature: Tensor, teacher_feature: Tensor) -> LossOutput:
        student, teacher = _embeddings(self, student_feature, teacher_feature)
        loss = self.weight * _rkd_term(distance_potential, student, teacher, min_samples=2)
        return LossOutput(loss, named_parts(distance=loss))


@FEATURE_LOSSES.register("rkd_angle")
class RKDAngleLoss(FeatureLoss):
    """RKD angle-wise loss: match the angles of the triangles formed by triples of samples.

    Park, Kim, Lu, Cho, "Relational Knowledge Distillation", CVPR 2019, eqs. (6)-(7):

        psi_A(z_i, z_j, z_k) = cos angle(z_i, z_j, z_k) = <e_ij, e_kj>,   e_ij = (z_i - z_j) / ||z_i - z_j||_2
        L = weight * mean over distinct (i, j, k) of huber( psi_A(s_i, s_j, s_k) - psi_A(t_i, t_j, t_k) )

    Angles are scale-free, so no normalisation is needed. Mean over the N(N-1)(N-2) ordered triples of distinct
    samples (the paper sums); memory grows as N^3 (a batch of 128 holds 2M triples). Batches of fewer than 3 samples
    have no triangle and give 0.

    ``weight=50.0``: the CIFAR classification setting of the CRD benchmark (Tian et al., ICLR 2020); the paper's
    metric-learning runs use 2.
    """

    name = "rkd_angle"

    def __init__(self, weight: float = 50.0) -> None:
        super().__init__(weight=check_positive("rkd_angle", "weight", weight))
        self.weight: float = self.hyperparams["weight"]

    def compute(self, student_feature: Tensor, teacher_feature: Tensor) -> LossOutput:
        student, teacher = _embeddings(self, student_feature, teacher_feature)
        loss = self.weight * _rkd_term(angle_potential, student, teacher, min_samples=3)
        return LossOutput(loss, named_parts(angle=loss))


@FEATURE_LOSSES.register("rkd")
class RKDLoss(FeatureLoss):
    """RKD with both potentials (the paper's RKD-DA): ``distance_weight * L_D + angle_weight * L_A``.

    Park, Kim, Lu, Cho, "Relational Knowledge Distillation", CVPR 2019; ``L_D`` and ``L_A`` exactly as in
    ``rkd_distance`` and ``rkd_angle`` (with weight 1). Defaults 25 and 50, the CIFAR setting of the CRD benchmark
    (Tian et al., ICLR 2020). Named parts: {"distance": weighted L_D, "angle": weighted L_A}.
    """

    name = "rkd"

    def __init__(self, distance_weight: float = 25.0, angle_weight: float = 50.0) -> None:
        super().__init__(
            distance_weight=check_positive("rkd", "distance_weight", distance_weight),
            angle_weight=check_positive("rkd", "angle_weight", angle_weight),
        )
        self.distance_weight: float = self.hyperparams["distance_weight"]
        self.angle_weight: float = self.hyperparams["angle_weight"]

    def compute(self, student_feature: Tensor, teacher_feature: Tensor) -> LossOutput:
        student, teacher = _embeddings(self, student_feature, teacher_feature)
        distance = self.distance_weight * _rkd_term(distance_potential, student, teacher, min_samples=2)
        angle = self.angle_weight * _rkd_term(angle_potential, student, teacher, min_samples=3)
        return LossOutput(distance + angle, named_parts(distance=distance, angle=angle))


# -- sp ----------------------------------------------------------------------------------------------------------


def similarity_matrix(z: Tensor) -> Tensor:
    """SP's G~ = row-L2-normalised Q Q^T for embeddings ``Q`` ``[N, D]``: ``-> [N, N]``."""
    return F.normalize(z @ z.T, p=2, dim=1)


@FEATURE_LOSSES.register("sp")
class SimilarityPreservingLoss(FeatureLoss):
    """Similarity-preserving KD: inputs that the teacher finds similar should look similar to the student.

    Tung, Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019, eqs. (2)-(4):

        G   = Q Q^T                       (Q: the batch's activations, reshaped to N x D)
        G~  = G with each row divided by its L2 norm
        L   = gamma / N^2 * || G~_t - G~_s ||_F^2

    The whole N x N table, diagonal included, as in the paper. ``gamma=3000.0``: the paper's value for its CIFAR-10
    experiments.
    """

    name = "sp"

    def __init__(self, gamma: float = 3000.0) -> None:
        super().__init__(gamma=check_positive("sp", "gamma", gamma))
        self.gamma: float = self.hyperparams["gamma"]

    def compute(self, student_feature: Tensor, teacher_feature: Tensor) -> LossOutput:
        student, teacher = _embeddings(self, student_feature, teacher_feature)
        n = student.shape[0]
        loss = self.gamma / (n * n) * (similarity_matrix(teacher) - similarity_matrix(student)).pow(2).sum()
        return LossOutput(loss, named_parts(similarity=loss))


# -- pairwise ----------------------------------------------------------------------------------------------------

PHIS = ("distance", "cosine", "dot")
CRITERIA = ("l1", "l2", "ce")


def pair_relation(z: Tensor, phi: str) -> Tensor:
    """phi(z_i, z_j) for all pairs i != j of rows of ``z`` ``[N, D]``: ``-> [N, N - 1]``."""
    if phi == "distance":
        table = distances(z)
    elif phi == "cosine":
        unit = F.normalize(z, p=2, dim=1)
        table = unit @ unit.T
    else:
        table = z @ z.T
    return off_diagonal(table)


@FEATURE_LOSSES.register("pairwise")
class PairwiseRelationLoss(FeatureLoss):
    """The general pairwise relation loss: any relation function, any criterion.

    The form that relation-based KD methods share (see Gou, Yu, Maybank, Tao, "Knowledge Distillation: A Survey",
    IJCV 2021, Sec. 2.3; RKD-D and SP are instances up to normalisation):

        L_R = weight * mean_{i != j} l( phi(t_i, t_j), phi(s_i, s_j) )

    ``phi``: "distance" ||z_i - z_j||_2, "cosine" <z_i, z_j> / (||z_i|| ||z_j||), "dot" <z_i, z_j>.
    ``criterion``:
        "l1"  mean |phi_t - phi_s| over pairs
        "l2"  mean (phi_t - phi_s)^2 over pairs
        "ce"  each row i turned into a distribution over j != i by a softmax of the *similarity* (phi itself for
              cosine and dot, -phi for distance, so closer means more mass); then the cross-entropy
              -(1/N) sum_i sum_j p_t[i, j] log p_s[i, j]. It equals KL(p_t || p_s) plus the teacher's entropy, a
              constant for the student: same gradients, but its minimum is that entropy, not 0.

    Distances and dot products keep each network's scale, so "distance" and "dot" suit same-scale embeddings; "cosine"
    (the default) is scale-free and compares any two spaces. A batch of 1 has no pairs and gives 0.

    Defaults (kdlab's): ``phi="cosine"``, ``criterion="l2"``, ``weight=1.0``.
    """

    name = "pairwise"

    def __init__(self, phi: str = "cosine", criterion: str = "l2", weight: float = 1.0) -> None:
        super().__init__(
            phi=check_choice("pairwise", "phi", phi, PHIS),
            criterion=check_choice("pairwise", "criterion", criterion, CRITERIA),
            weight=check_positive("pairwise", "weight", weight),
        )
        self.phi: str = self.hyperparams["phi"]
        self.criterion: str = self.hyperparams["criterion"]
        self.weight: float = self.hyperparams["weight"]

    def compute(self, student_feature: Tensor, teacher_feature: Tensor) -> LossOutput:
        student, teacher = _embeddings(self, student_feature, teacher_feature)
        if student.shape[0] < 2:
            zero = zero_loss(student)
            return LossOutput(zero, named_parts(relation=zero))
        r_s, r_t = pair_relation(student, self.phi), pair_relation(teacher, self.phi)
        if self.criterion == "l1":
            value = (r_t - r_s).abs().mean()
        elif self.criterion == "l2":
            value = (r_t - r_s).pow(2).mean()
        else:
            sign = -1.0 if self.phi == "distance" else 1.0
            p_t = torch.softmax(sign * r_t, dim=1)
            value = -(p_t * torch.log_softmax(sign * r_s, dim=1)).sum(dim=1).mean()
        loss = self.weight * value
        return LossOutput(loss, named_parts(relation=loss))
