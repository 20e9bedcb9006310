"""Feature and relation distillation terms: a student tap, a teacher tap, an adapter, a loss, a weight over epochs.

A term is the unit of feature-based and relation-based knowledge (Gou, Yu, Maybank, Tao, "Knowledge Distillation: A
Survey", IJCV 2021, Sec. 2.2-2.3): ``weight(epoch) * loss(adapter(student[student_tap]), teacher[teacher_tap])``.
The Distiller adds the terms of a run to its response loss.

``build_feature_terms`` turns the ``features`` section of a config into terms for one student/teacher pair, checking
everything that needs the models before any training: both taps exist, the pair of tap shapes is one the loss can
compare (with an adapter where it needs equal shapes), and every error names the term (``features[1]``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..batch import Inputs
from ..config import FeatureTermConfig, TermSchedule, term_label
from ..errors import ConfigError
from ..losses import LossOutput, build_feature_loss
from .adapters import infer_feature_shapes, make_adapter
from .hooks import resolve_tap


def scheduled_weight(weight: float, schedule: TermSchedule | None, epoch: int) -> float:
    """The weight of a term in 0-based ``epoch`` (the loop's count); the schedule speaks 1-based epochs.

    With e = epoch + 1 (1-based):

        w(e) = 0                                                   if e < start_epoch or e > end_epoch
        w(e) = weight * min(1, (e - start_epoch + 1) / warmup)     if warmup > 0   (linear warm-up)
        w(e) = weight                                              otherwise

    The warm-up is per epoch, so a resumed run gets exactly the weights of an uninterrupted one.
    """
    if schedule is None:
        return weight
    e = epoch + 1
    if e < schedule.start_epoch or (schedule.end_epoch is not None and e > schedule.end_epoch):
        return 0.0
    if schedule.warmup_epochs > 0:
        return weight * min(1.0, (e - schedule.start_epoch + 1) / schedule.warmup_epochs)
    return weight


class FeatureTerm(nn.Module):
    """One term: ``loss(adapter(student_feature), teacher_feature)``, weighted per epoch by :func:`scheduled_weight`.

    The adapter (identity when the loss can compare the raw shapes) trains with the student but belongs to the
    term, never to the student, so the student's exported weights keep exactly the architecture that was asked for.
    """

    def __init__(self, label: str, student_tap: str, teacher_tap: str, loss: nn.Module, adapter: nn.Module,
                 weight: float = 1.0, schedule: TermSchedule | None = None) -> None:
        super().__init__()
        self.label = label
        self.student_tap = student_tap
        self.teacher_tap = teacher_tap
        self.loss = loss
        self.adapter = adapter
        self.weight = float(weight)
        self.schedule = schedule

    def weight_at(self, epoch: int) -> float:
        """The term's weight in 0-based ``epoch``."""
        return scheduled_weight(self.weight, self.schedule, epoch)

    def forward(self, student_feature: Tensor, teacher_feature: Tensor) -> Tensor:
        """The unweighted term value (the loss's own hyperparameters, e.g. AT's beta, are inside)."""
        return self.compute(student_feature, teacher_feature).loss

    def compute(self, student_feature: Tensor, teacher_feature: Tensor) -> LossOutput:
        """The unweighted term value and its parts for the logs: the value under the term's label; a multi-part loss
        (rkd: distance, angle) adds its parts as ``<label>_<part>``. Parts are detached tensors."""
        value, own = self.loss.compute(self.adapter(student_feature), teacher_feature)
        parts = {self.label: value.detach()}
        if len(own) > 1:
            parts.update({f"{self.label}_{key}": part for key, part in own.items()})
        return LossOutput(value, parts)

    def extra_repr(self) -> str:
        return f"{self.label!r}: {self.student_tap} -> {self.teacher_tap}, weight={self.weight:g}"


def build_feature_terms(configs: Sequence[FeatureTermConfig], student: nn.Module, teacher: nn.Module,
                        example: Inputs) -> nn.ModuleList:
    """Terms for ``student`` and ``teacher``, checked before any training on ``example``, a real batch of the
    training data (at least 2 samples; a tensor or a mapping of named tensors).

    Each tap is resolved on its model, the feature shapes come from one forward pass of the example per model
    (:func:`infer_feature_shapes`, which leaves the global random state and the train/eval flags untouched), and the
    loss's ``needs_adapter`` decides whether ``make_adapter`` maps the student's shape to the teacher's. Raises
    ConfigError naming the term (``features[i] (label)``) for an unknown tap, an unknown loss or option, or a tap
    pairing no adapter can fix (e.g. AT on a vector tap, a student vector against a teacher feature map for fitnet).
    """
    if not configs:
        return nn.ModuleList()
    for i, term in enumerate(configs):
        _resolve(f"features[{i}] ({term_label(term)}).student_tap", student, term.student_tap)
        _resolve(f"features[{i}] ({term_label(term)}).teacher_tap", teacher, term.teacher_tap)
    student_shapes = infer_feature_shapes(student, _unique(t.student_tap for t in configs), example)
    teacher_shapes = infer_feature_shapes(teacher, _unique(t.teacher_tap for t in configs), example)
    terms = nn.ModuleList()
    for i, term in enumerate(configs):
        where = f"features[{i}] ({term_label(term)})"
        try:
            loss = build_feature_loss(term.loss.name, **term.loss.options)
        except ConfigError as exc:
            raise ConfigError(f"{where}.loss: {exc}") from None
        s_shape, t_shape = student_shapes[term.student_tap], teacher_shapes[term.teacher_tap]
        try:
            adapter = (make_adapter(s_shape, t_shape, batch_norm=term.adapter_batch_norm)
                       if loss.needs_adapter(s_shape, t_shape) else nn.Identity())
        except ConfigError as exc:
            raise ConfigError(f"{where}: student tap '{term.student_tap}' {list(s_shape)} and teacher tap "
                              f"'{term.teacher_tap}' {list(t_shape)} cannot be compared: {exc}") from None
        terms.append(FeatureTerm(term_label(term), term.student_tap, term.teacher_tap, loss, adapter,
                                 term.weight, term.schedule))
    return terms


def _resolve(key: str, model: nn.Module, tap: str) -> None:
    try:
        resolve_tap(model, tap)
    except ConfigError as exc:
        raise ConfigError(f"{key}='{tap}': {exc}") from None


def _unique(taps) -> list[str]:  # noqa: ANN001  (any iterable of tap names)
    return list(dict.fromkeys(taps))
