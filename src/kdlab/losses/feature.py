"""Feature-based distillation losses (fitnet, at, agd, nonlocal) and the registry that also holds the relation
losses of ``relation.py`` (lsp, rkd_distance, rkd_angle, rkd, sp, pairwise).

Every loss is an ``nn.Module`` with ``forward(student_feature [N, ...], teacher_feature [N, ...]) -> scalar``; it is the
distillation term only (no cross-entropy, no hint-training schedule): the training scheme adds it to the task loss.

>>> loss = build_feature_loss("at", beta=1000.0)
>>> value = loss(student_taps["stage2"], teacher_taps["stage2"])          # doctest: +SKIP

Which shapes a loss accepts is its ``shape_rule`` (and ``needs_adapter`` answers it for a pair of tap shapes):

    "same"          the student feature must be adapted to the teacher's exact shape (``make_adapter``): fitnet, agd
    "same_spatial"  [N, C, H, W] maps with equal H, W; channel counts may differ: nonlocal
    "spatial"       [N, C, H, W] maps, any channel counts, spatial sizes resized inside the loss: at
    "any"           any two shapes; samples are flattened and compared within the batch: lsp and the relation losses
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Registry
from .checks import check_positive

FEATURE_LOSSES: Registry = Registry("feature loss")

SHAPE_RULES = ("same", "same_spatial", "spatial", "any")


def build_feature_loss(name: str, **hyperparams: Any) -> FeatureLoss:
    """The feature or relation loss registered as ``name`` with ``hyperparams`` (the others at their defaults).

    Raises ConfigError for an unknown name (with a did-you-mean), an option the loss does not have, or a value it
    does not allow; each message names the key, the value and what is allowed.
    """
    factory = FEATURE_LOSSES.get(name)
    FEATURE_LOSSES.check_kwargs(name, hyperparams)
    return factory(**hyperparams)


def check_choice(loss: str, key: str, value: Any, choices: Sequence[str]) -> str:
    """One of ``choices`` (strings), else ConfigError in the format of ``checks.py`` with a did-you-mean."""
    if not isinstance(value, str) or value not in choices:
        close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"loss '{loss}': {key}={value!r} is not allowed; must be one of "
                          f"{', '.join(choices)}{hint}")
    return value


class FeatureLoss(nn.Module):
    """Base class: a distillation term from a student feature and a teacher feature of the same batch.

    Attributes:
        name: the registry name, used in messages.
        shape_rule: which shape pairs the loss accepts (see the module docstring).
        hyperparams: the resolved hyperparameters as JSON-able values, for logging and run keys.
        last_parts: named, *weighted* components of the last call as floats (they sum to the returned value).

    The teacher's feature is detached (a fixed target) and, if it is an inference tensor (captured under
    ``torch.inference_mode``), cloned so autograd may save it. Half-precision features are promoted to float32.
    """

    name: ClassVar[str] = ""
    shape_rule: ClassVar[str] = "any"

    def __init__(self, **hyperparams: Any) -> None:
        super().__init__()
        self.hyperparams: dict[str, Any] = dict(hyperparams)
        self.last_parts: dict[str, float] = {}

    def forward(self, student_feature: Tensor, teacher_feature: Tensor) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.hyperparams.items())

    def needs_adapter(self, student_shape: Sequence[int], teacher_shape: Sequence[int]) -> bool:
        """Whether the student's tap needs ``make_adapter(student_shape, teacher_shape)`` before this loss.

        Shapes are without the batch dim. Raises ConfigError when no adapter can help (a map-only loss on a vector
        tap), so a bad tap pairing fails at setup time rather than in the first training step.
        """
        student, teacher = tuple(int(v) for v in student_shape), tuple(int(v) for v in teacher_shape)
        if self.shape_rule in ("spatial", "same_spatial"):
            if len(student) != 3 or len(teacher) != 3:
                raise ConfigError(f"loss '{self.name}' compares feature maps [C, H, W]; got student tap shape "
                                  f"{list(student)} and teacher tap shape {list(teacher)}: pick convolutional taps")
            return self.shape_rule == "same_spatial" and student[1:] != teacher[1:]
        if self.shape_rule == "same":
            if len(student) == 1 and len(teacher) == 3:
                raise ConfigError(f"loss '{self.name}' cannot compare a student vector {list(student)} with a teacher "
                                  f"feature map {list(teacher)}: no adapter maps a vector onto a spatial layout. Use "
                                  f"a relation loss or pick other taps")
            return student != teacher
        return False

    # -- helpers for subclasses -------------------------------------------------------------------------------

    def _pair(self, student_feature: Tensor, teacher_feature: Tensor) -> tuple[Tensor, Tensor]:
        """Promote, detach the teacher, and check the shapes against ``shape_rule`` (ValueError naming both)."""
        student = _as_float(student_feature)
        teacher = teacher_feature.detach()
        if teacher.is_inference():
            teacher = teacher.clone()
        teacher = _as_float(teacher).to(student.dtype)
        shapes = f"student_feature {tuple(student.shape)}, teacher_feature {tuple(teacher.shape)}"
        if student.dim() < 2 or teacher.dim() < 2 or student.shape[0] != teacher.shape[0]:
            raise ValueError(f"loss '{self.name}': features must be batches [N, ...] of the same N; got {shapes}")
        if self.shape_rule == "same" and student.shape != teacher.shape:
            raise ValueError(f"loss '{self.name}' compares features element by element and needs equal shapes; got "
                             f"{shapes}. Map the student's feature with make_adapter(student_shape, teacher_shape)")
        if self.shape_rule in ("spatial", "same_spatial") and (student.dim() != 4 or teacher.dim() != 4):
            raise ValueError(f"loss '{self.name}' needs feature maps [N, C, H, W]; got {shapes}")
        if self.shape_rule == "same_spatial" and student.shape[2:] != teacher.shape[2:]:
            raise ValueError(f"loss '{self.name}' needs equal spatial sizes (channels may differ); got {shapes}. "
                             f"Map the student's feature with make_adapter(student_shape, teacher_shape)")
        return student, teacher

    def _record(self, **parts: Tensor) -> None:
        self.last_parts = {key: float(value.detach()) for key, value in parts.items()}


def _as_float(x: Tensor) -> Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def zero_loss(student: Tensor) -> Tensor:
    """A zero that is still connected to the student's graph (backward works, grads are 0): a batch too small to
    hold any relation."""
    return student.sum() * 0.0


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

    def forward(self, student_feature: Tensor, teacher_feature: Tensor) -> Tensor:
        student, teacher = self._pair(student_feature, teacher_feature)
        hint = self.weight * 0.5 * (teacher - student).pow(2).mean()
        self._record(hint=hint)
        return hint


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

    def forward(self, student_feature: Tensor, teacher_feature: Tensor) -> Tensor:
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
        self._record(attention=loss)
        return loss


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

    def forward(self, student_feature: Tensor, teacher_feature: Tensor) -> Tensor:
        student, teacher = self._pair(student_feature, teacher_feature)
        if student.dim() != 4:
            raise ValueError(f"loss 'agd' needs feature maps [N, C, H, W]; got {tuple(student.shape)}")
        m_spatial, m_channel = self.masks(student, teacher)
        squared = (teacher - student).pow(2).flatten(2)                     # [N, C, H*W]
        feat = (squared * m_spatial[:, None, :] * m_channel[:, :, None]).mean()
        att = ((spatial_attention(teacher) - spatial_attention(student)).abs().mean()
               + (channel_attention(teacher) - channel_attention(student)).abs().mean())
        feat, att = self.alpha * feat, self.gamma * att
        self._record(feature=feat, attention=att)
        return feat + att


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

    def forward(self, student_feature: Tensor, teacher_feature: Tensor) -> Tensor:
        student, teacher = self._pair(student_feature, teacher_feature)
        diff = position_relation(teacher) - position_relation(student)
        loss = self.weight * diff.pow(2).sum(dim=-1).mean()
        self._record(relation=loss)
        return loss


# relation.py registers its losses into FEATURE_LOSSES; importing it here (after everything it needs from this module
# is defined) makes every name available to build_feature_loss whichever of the two modules is imported first
from . import relation  # noqa: E402,F401
