"""Feature-based distillation losses: fitnet, at, agd, nonlocal (the relation losses are in ``relation.py``; both
register into ``FEATURE_LOSSES`` of ``feature_base.py``).

Every loss is an ``nn.Module`` with ``forward(student_feature [N, ...], teacher_feature [N, ...]) -> scalar``; it is the
distillation term only (no cross-entropy, no hint-training schedule): the training scheme adds it to the task loss.

>>> loss = build_feature_loss("at", beta=1000.0)
>>> value = loss(student_taps["stage2"], teacher_taps["stage2"])          # doctest: +SKIP

Which shapes a loss accepts is its ``shape_rule`` (and ``needs_adapter`` answers it for a pair of tap shapes):

    "same"          the student feature must be adapted to the teacher's exact shape (``make_adapter``): fitnet, agd
    "same_spatial"  [N, C, H, W] maps with equal H, W; channel counts may differ: nonlocal
    "spatial"       [N, C, H, W] maps, any channel counts, spatial sizes resized inside the loss: at
    "any"           any two shapes; samples are flattened and compared within the batch: lsp and the relation losses

Token features ``[N, T, D]`` (a transformer's hidden states; T tokens of width D). Every loss here takes them, with
the same token count T in student and teacher:

    fitnet     element-wise on the tokens (an adapter maps D -> D' per token)
    at         attention over positions: the tokens are the positions, Q = sum_d |A_{t, d}|^p (a T-vector)
    agd        spatial attention over the tokens, channel attention over the D features
    nonlocal   relations between positions: between tokens, r[t, u] = softmax_u(<A_t, A_u>)

The position-based losses read tokens as a map ``[D, T, 1]`` (:func:`~kdlab.losses.feature_base.tokens_as_map`).
What none of them does: compare taps with different token counts (a feature map can be resampled bilinearly
because it has a spatial grid; a token sequence, with a [CLS] token or text, has none, so kdlab refuses rather than
interpolate), or compare tokens with a conv feature map. AT's attention maps of different sizes are resized for
conv maps only. Padding tokens (``attention_mask == 0``) count like any other token: the papers define these losses
on dense maps and say nothing about masks. Relation losses flatten each sample and accept any two shapes, tokens
included.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import LossOutput, named_parts
from .checks import check_positive
from .feature_base import FEATURE_LOSSES, FeatureLoss, check_choice

# -- fitnet ------------------------------------------------------------------------------------------------------


@FEATURE_LOSSES.register("fitnet")
class FitNetLoss(FeatureLoss):
    """FitNets hint loss: the (adapted) student's guided layer regresses the teacher's hint layer.

    Romero, Ballas, Kahou, Chassang, Gatta, Bengio, "FitNets: Hints for Thin Deep Nets", ICLR 2015, eq. (3):

        L_HT = 1/2 * || u_h(x) - r(v_g(x)) ||^2

    with ``u_h`` the teacher's hint, ``v_g`` the student's guided layer and ``r`` the regressor (here: the adapter
    from ``make_adapter``, applied before this loss). kdlab normalises by the number of elements, so the value does
    not grow with the batch or the map size:

        L = weight * 1/2 * (1 / (N * numel)) * sum_{n, e} (teacher[n, e] - student[n, e])^2

    Needs an adapter when the shapes differ (``shape_rule="same"``).

    The paper trains in two stages (first the student's lower half on the hint alone, then the whole student with
    KD). That is a training-scheme concern: this module is the hint term only; a scheme may train on it alone first.

    ``weight=1.0``: the paper's hint stage optimises the hint loss alone, so it fixes no weight; 1 keeps the formula.
    """

    name = "fitnet"
    shape_rule = "same"

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__(weight=check_positive("fitnet", "weight", weight))
        self.weight: float = self.hyperparams["weight"]

    def compute(self, student_feature: Tensor, teacher_feature: Tensor) -> LossOutput:
        student, teacher = self._pair(student_feature, teacher_feature)
        hint = self.weight * 0.5 * (teacher - student).pow(2).mean()
        return LossOutput(hint, named_parts(hint=hint))


# -- at ----------------------------------------------------------------------------------------------------------


def attention_map(feature: Tensor, p: float) -> Tensor:
    """Activation-based spatial attention Q = sum_c |A_c|^p: ``[N, C, H, W] -> [N, 1, H, W]``."""
    return feature.abs().pow(p).sum(dim=1, keepdim=True)


@FEATURE_LOSSES.register("at")
class AttentionTransferLoss(FeatureLoss):
    """Attention transfer: match where the two networks put their activation energy, not the activations.

    Zagoruyko, Komodakis, "Paying More Attention to Attention: Improving the Performance of Convolutional Neural
    Networks via Attention Transfer", ICLR 2017:

        Q(A)  = vec( sum_c |A_c|^p )                          (an H*W vector per sample; p = 2 in the paper)
        q     = Q / ||Q||_2
        L     = beta/2 * (1 / (N * H * W)) * sum_n sum_i (q_s[n, i] - q_t[n, i])^2

    Eq. (2) of the paper writes the p-norm of ``q_s - q_t`` (not squared), summed over the batch; its experiments
    set beta = 10^3 "divided by the number of elements in the attention map and batch size" (Sec. 4.1) and the
    authors' released code squares the difference. kdlab follows that experimental form, so ``beta=1000`` (the
    paper's value) means the same as in the paper's experiments.

    No adapter: the channel sum makes the maps comparable for any channel counts. Spatial sizes may differ too: the
    smaller attention map is resized bilinearly (``align_corners=False``) to the larger one's size before the
    normalisation (kdlab's choice; the paper only compares maps of equal size).

    Hyperparameters: ``beta=1000.0`` and ``p=2.0``, both the paper's.
    """

    name = "at"
    shape_rule = "spatial"

    def __init__(self, beta: float = 1000.0, p: float = 2.0) -> None:
        super().__init__(beta=check_positive("at", "beta", beta), p=check_positive("at", "p", p))
        self.beta: float = self.hyperparams["beta"]
        self.p: float = self.hyperparams["p"]

    def compute(self, student_feature: Tensor, teacher_feature: Tensor) -> LossOutput:
        student, teacher = self._pair(student_feature, teacher_feature)
        q_s, q_t = attention_map(student, self.p), attention_map(teacher, self.p)
        size = (max(q_s.shape[2], q_t.shape[2]), max(q_s.shape[3], q_t.shape[3]))
        if tuple(q_s.shape[2:]) != size:
            q_s = F.interpolate(q_s, size=size, mode="bilinear", align_corners=False)
        if tuple(q_t.shape[2:]) != size:
            q_t = F.interpolate(q_t, size=size, mode="bilinear", align_corners=False)
        q_s = F.normalize(q_s.flatten(1), dim=1)
        q_t = F.normalize(q_t.flatten(1), dim=1)
        loss = self.beta / 2 * (q_s - q_t).pow(2).mean()
        return LossOutput(loss, named_parts(attention=loss))


# -- agd ---------------------------------------------------------------------------------------------------------


def spatial_attention(feature: Tensor) -> Tensor:
    """G^S(A) = (1/C) sum_c |A_c|: ``[N, C, H, W] -> [N, H*W]``."""
    return feature.abs().mean(dim=1).flatten(1)


def channel_attention(feature: Tensor) -> Tensor:
    """G^C(A) = (1/(H W)) sum_{i,j} |A_{:,i,j}|: ``[N, C, H, W] -> [N, C]``."""
    return feature.abs().mean(dim=(2, 3))


@FEATURE_LOSSES.register("agd")
class AttentionGuidedLoss(FeatureLoss):
    """Attention-guided distillation: feature imitation weighted towards the pixels and channels that matter.

    Zhang, Ma, "Improve Object Detection with Feature-based Knowledge Distillation: Towards Accurate and Efficient
    Detectors", ICLR 2021 (Sec. 3.1). For feature maps A ``[C, H, W]`` (student already adapted to the teacher):

        G^S(A) = (1/C) sum_k |A_k|              spatial attention, H x W
        G^C(A) = (1/(HW)) sum_{i,j} |A_{.,i,j}|   channel attention, C
        M^S    = HW * softmax( (G^S(A^t) + G^S(A^s)) / T )      masks; each averages to 1
        M^C    = C  * softmax( (G^C(A^t) + G^C(A^s)) / T )
        feat   = (1/(C H W)) sum_k sum_{i,j} (A^t_{k,i,j} - A^s_{k,i,j})^2 * M^S_{i,j} * M^C_k
        att    = mean_{i,j} |G^S(A^t) - G^S(A^s)| + mean_k |G^C(A^t) - G^C(A^s)|
        L      = alpha * feat + gamma * att          (every term averaged over the batch)

    The paper builds the masks from the sum of the teacher's and the student's attention (``mask_source="both"``);
    ``mask_source="teacher"`` uses the teacher's alone. The masks are weights: no gradient flows through them (a
    student could otherwise lower the loss by moving its attention instead of matching features).

    kdlab's normalisation differs from the paper's detector setting on purpose. The paper takes the square root of
    the masked sum over a whole FPN level (an L2 norm) and compares attention maps with an L2 distance, with weights
    tuned to those detector-sized sums. kdlab averages: because the masks average to 1, ``feat`` is a
    weighted MSE that equals plain MSE for uniform attention, so it is on the scale of ``fitnet`` and independent of
    the map size (and its gradient stays finite when student == teacher, unlike a square root at 0); ``att`` is a
    mean absolute error. Hence kdlab's defaults ``alpha=1.0`` and ``gamma=1.0`` instead of the paper's weights.
    ``temperature=0.5`` is the paper's T for one-stage detectors. Needs an adapter when shapes differ.
    """

    name = "agd"
    shape_rule = "same"
    tokens_as_maps = True

    def __init__(self, temperature: float = 0.5, alpha: float = 1.0, gamma: float = 1.0,
                 mask_source: str = "both") -> None:
        super().__init__(
            temperature=check_positive("agd", "temperature", temperature),
            alpha=check_positive("agd", "alpha", alpha),
            gamma=check_positive("agd", "gamma", gamma),
            mask_source=check_choice("agd", "mask_source", mask_source, ("both", "teacher")),
        )
        self.temperature: float = self.hyperparams["temperature"]
        self.alpha: float = self.hyperparams["alpha"]
        self.gamma: float = self.hyperparams["gamma"]
        self.mask_source: str = self.hyperparams["mask_source"]

    def masks(self, student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
        """(M^S ``[N, H*W]``, M^C ``[N, C]``), without gradient."""
        with torch.no_grad():
            spatial, channel = spatial_attention(teacher), channel_attention(teacher)
            if self.mask_source == "both":
                spatial = spatial + spatial_attention(student)
                channel = channel + channel_attention(student)
            m_spatial = spatial.shape[1] * torch.softmax(spatial / self.temperature, dim=1)
            m_channel = channel.shape[1] * torch.softmax(channel / self.temperature, dim=1)
        return m_spatial, m_channel

    def compute(self, student_feature: Tensor, teacher_feature: Tensor) -> LossOutput:
        student, teacher = self._pair(student_feature, teacher_feature)
        if student.dim() != 4:
            raise ValueError(f"loss 'agd' needs feature maps [N, C, H, W]; got {tuple(student.shape)}")
        m_spatial, m_channel = self.masks(student, teacher)
        squared = (teacher - student).pow(2).flatten(2)                     # [N, C, H*W]
        feat = (squared * m_spatial[:, None, :] * m_channel[:, :, None]).mean()
        att = ((spatial_attention(teacher) - spatial_attention(student)).abs().mean()
               + (channel_attention(teacher) - channel_attention(student)).abs().mean())
        feat, att = self.alpha * feat, self.gamma * att
        return LossOutput(feat + att, named_parts(feature=feat, attention=att))


# -- nonlocal ----------------------------------------------------------------------------------------------------


def position_relation(feature: Tensor) -> Tensor:
    """r[n, i, j] = softmax_j(<A_i, A_j>) over the spatial positions i, j (channel vectors): ``-> [N, HW, HW]``."""
    positions = feature.flatten(2)                                          # [N, C, HW]
    return torch.softmax(positions.transpose(1, 2) @ positions, dim=-1)


@FEATURE_LOSSES.register("nonlocal")
class NonLocalLoss(FeatureLoss):
    """Non-local distillation: match how every position relates to every other position.

    Zhang, Ma, "Improve Object Detection with Feature-based Knowledge Distillation: Towards Accurate and Efficient
    Detectors", ICLR 2021 (Sec. 3.2). The paper inserts a non-local block into teacher and student and matches the
    blocks' outputs with an L2 loss weighted by lambda. kdlab uses a parameter-free reading: the pairwise attention
    of an embedded-Gaussian non-local block with identity embeddings,

        r[i, j] = exp(<A_i, A_j>) / sum_l exp(<A_i, A_l>)        (A_i: channel vector at position i, i, j in H*W)
        L       = weight * (1 / (N * H * W)) * sum_n sum_i sum_j (r^t[n, i, j] - r^s[n, i, j])^2

    i.e. the squared L2 distance between matching rows, averaged over rows and batch (an MSE over all entries would
    shrink like 1/(HW)). Channel counts may differ; spatial sizes must be equal (``make_adapter`` otherwise).

    The inner products are not rescaled, so features of large magnitude make the rows nearly one-hot (the loss stays
    finite: softmax is computed stably). ``weight=1.0`` is kdlab's choice: the paper's lambda is tuned to the outputs
    of its learned blocks on detector features and does not carry over to this reading.
    """

    name = "nonlocal"
    shape_rule = "same_spatial"

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__(weight=check_positive("nonlocal", "weight", weight))
        self.weight: float = self.hyperparams["weight"]

    def compute(self, student_feature: Tensor, teacher_feature: Tensor) -> LossOutput:
        student, teacher = self._pair(student_feature, teacher_feature)
        diff = position_relation(teacher) - position_relation(student)
        loss = self.weight * diff.pow(2).sum(dim=-1).mean()
        return LossOutput(loss, named_parts(relation=loss))
