"""Deep-supervision self-distillation: the student's deepest classifier teaches auxiliary classifiers on its own
intermediate taps ("Be Your Own Teacher").

Zhang, Song, Gao, Chen, Bao, Ma, "Be Your Own Teacher: Improve the Performance of Convolutional Neural Networks via
Self Distillation", ICCV 2019, Sec. 3.2. With the deepest classifier's logits z_C and feature F_C (the student's own
head and ``final_tap``), and for every auxiliary head i on an intermediate tap its logits z_i and bottleneck feature
f_i (:mod:`kdlab.distill.aux_heads`):

    L = L_sup(z_C, y)
        + sum_i [ (1 - alpha) * CE(z_i, y)
                  + alpha * KL( softmax(z_C / T) || softmax(z_i / T) )
                  + lambda * (1/N) sum_n || f_i(n) - F_C(n) ||_2^2 ]

z_C and F_C are fixed targets (detached) in the KL and hint terms: knowledge flows from deep to shallow, and the
shallow sections learn through the gradients these terms send into the shared layers below their taps.

The paper writes every classifier, the deepest included, with the (1 - alpha) CE weight (its KL and hint terms vanish
for i = C); kdlab gives the deepest classifier the run's full ``loss`` (ce), as the authors' released training does,
so the exported student sees the same supervised objective as a plain CE run and any difference comes from the
auxiliary terms. The KL carries no T^2 factor, as in the paper.

Defaults alpha = 0.3, lambda (``hint_weight``) = 0.03, T = 3: the settings of the authors' released CIFAR runs (the
paper leaves them as hyperparameters). ``taps`` defaults to every kdlab tap before the last two (the deepest block,
whose pooled output is ``pre_logits``, and ``pre_logits`` itself): stage1, stage2 of a 3-stage CNN or ResNet.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ...batch import Inputs
from ...config import RunConfig, Section
from ...errors import ConfigError
from ...losses import LossOutput, ResponseLoss
from ...losses.functional import soft_kl
from ...models.outputs import model_logits
from ..adapters import infer_feature_shapes
from ..aux_heads import head_key, make_aux_heads
from ..hooks import FeatureTaps, resolve_tap
from ..objective import StepOutput
from .base import SCHEMES, Scheme, require_teacher_free


class BYOTOptions(Section):
    # intermediate taps that get an auxiliary classifier; default: every kdlab tap before the last two
    taps: list[str] | None = Field(None, min_length=1)
    # the deepest feature the hints regress to (a map is average-pooled)
    final_tap: str = "pre_logits"
    alpha: float = Field(0.3, ge=0, le=1)
    hint_weight: float = Field(0.03, ge=0)
    temperature: float = Field(3.0, gt=0)


class SelfDistillationLoss(nn.Module):
    """The BYOT objective above. Named parts (:meth:`compute`): the supervised loss's parts for the deepest
    classifier, then ``<tap>_ce``, ``<tap>_kl``, ``<tap>_hint`` per auxiliary head (unweighted values)."""

    def __init__(self, supervised: ResponseLoss, taps: Sequence[str], alpha: float = 0.3, hint_weight: float = 0.03,
                 temperature: float = 3.0) -> None:
        super().__init__()
        self.supervised = supervised
        self.taps = list(taps)
        self.alpha = float(alpha)
        self.hint_weight = float(hint_weight)
        self.temperature = float(temperature)

    def forward(self, final_logits: Tensor, final_feature: Tensor, aux_logits: Sequence[Tensor],
                aux_features: Sequence[Tensor], targets: Tensor) -> Tensor:
        """The objective L."""
        return self.compute(final_logits, final_feature, aux_logits, aux_features, targets).loss

    def compute(self, final_logits: Tensor, final_feature: Tensor, aux_logits: Sequence[Tensor],
                aux_features: Sequence[Tensor], targets: Tensor) -> LossOutput:
        """The objective L and its parts (detached)."""
        t = self.temperature
        total, parts = self.supervised.compute(final_logits, None, targets)
        parts = dict(parts)
        log_target = torch.log_softmax(final_logits.detach().float() / t, dim=-1)
        target_feature = final_feature.detach().float()
        for tap, z, f in zip(self.taps, aux_logits, aux_features, strict=True):
            ce = F.cross_entropy(z.float(), targets)
            kl = soft_kl(log_target, torch.log_softmax(z.float() / t, dim=-1))
            hint = (f.float() - target_feature).pow(2).sum(dim=1).mean()
            total = total + (1 - self.alpha) * ce + self.alpha * kl + self.hint_weight * hint
            parts.update({f"{tap}_ce": ce.detach(), f"{tap}_kl": kl.detach(), f"{tap}_hint": hint.detach()})
        return LossOutput(total, parts)


class SelfDistillation(nn.Module):
    """The BYOT objective (an :class:`~kdlab.distill.objective.Objective`): ``student`` plus ``heads`` (trained, not
    exported); a step returns L, the deepest classifier's logits z_C and the loss's parts.

    Forward hooks read the taps; :meth:`close` removes them.
    """

    def __init__(self, student: nn.Module, heads: nn.ModuleDict, taps: Sequence[str], final_tap: str,
                 loss: SelfDistillationLoss) -> None:
        super().__init__()
        self.student = student
        self.heads = heads
        self.loss = loss
        self.aux_taps = list(taps)
        self.final_tap = final_tap
        self.__dict__["features"] = FeatureTaps(student, list(dict.fromkeys([*self.aux_taps, final_tap])))

    def forward(self, x: Inputs, y: Tensor, index: Tensor | None = None) -> StepOutput:
        """One batch: the student, its taps, and every auxiliary head."""
        logits = model_logits(self.student, x)
        try:
            final = self.features[self.final_tap]
            final = final.mean(dim=(2, 3)) if final.dim() == 4 else final.flatten(1)
            outputs = [self.heads[head_key(tap)](self.features[tap]) for tap in self.aux_taps]
        finally:
            self.features.clear()
        loss, parts = self.loss.compute(logits, final, [z for _, z in outputs], [f for f, _ in outputs], y)
        return StepOutput(loss, logits, parts)

    def set_epoch(self, epoch: int) -> None:
        """Nothing depends on the epoch."""

    def close(self) -> None:
        """Remove the forward hooks from the student; idempotent."""
        self.features.remove()


def default_taps(student: nn.Module) -> list[str]:
    """Every kdlab tap before the last two (the deepest block and ``pre_logits``)."""
    taps = list(getattr(student, "feature_taps", {}) or {})
    return taps[:-2]


def _check(cfg: RunConfig, options: BYOTOptions) -> None:
    require_teacher_free("byot", cfg, "the deepest classifier's supervised term")


def _build(options: BYOTOptions, student: nn.Module, loss: ResponseLoss, num_classes: int,
           in_shape: Sequence[int], example: Inputs) -> SelfDistillation:
    taps = list(options.taps) if options.taps is not None else default_taps(student)
    if not taps:
        raise ConfigError(f"scheme 'byot': {type(student).__name__} has no intermediate tap for an auxiliary "
                          f"classifier by default; list module paths in scheme.taps (see `kdlab models taps`)")
    if options.final_tap in taps or len(set(taps)) != len(taps):
        raise ConfigError(f"scheme.taps={taps} is not allowed; each tap once, and not the final_tap "
                          f"'{options.final_tap}'")
    for i, tap in enumerate([*taps, options.final_tap]):
        try:
            resolve_tap(student, tap)
        except ConfigError as exc:
            key = f"scheme.taps[{i}]" if i < len(taps) else "scheme.final_tap"
            raise ConfigError(f"{key}='{tap}': {exc}") from None
    shapes = infer_feature_shapes(student, [*taps, options.final_tap], example)
    final_shape = shapes[options.final_tap]
    if len(final_shape) not in (1, 3):
        raise ConfigError(f"scheme.final_tap='{options.final_tap}' gives shape {list(final_shape)}; it must be a "
                          f"vector [D] or a feature map [C, H, W]")
    # built after the student, so the student starts from the same weights as every other method's of this seed
    heads = make_aux_heads({tap: shapes[tap] for tap in taps}, final_shape[0], num_classes)
    criterion = SelfDistillationLoss(loss, taps, options.alpha, options.hint_weight, options.temperature)
    return SelfDistillation(student, heads, taps, options.final_tap, criterion)


SCHEMES.register("byot")(Scheme(options=BYOTOptions, check=_check, build=_build))
