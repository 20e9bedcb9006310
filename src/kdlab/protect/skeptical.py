"""The skeptical student: an attacker's counter-measure against nasty teachers.

Kundu, Sun, Fu, Pedram, Beerel, "Analyzing the Confidentiality of Undistillable Teachers in Knowledge
Distillation", NeurIPS 2021 (official code: github.com/ksouvik52/Skeptical2021, ``train_kd_to_SD.py``).

Idea: do not let the teacher talk to the student's final head. The distillation term goes to an *auxiliary head*
attached to a shallow part of the student (a feature tap); the final head learns from the labels. What the teacher
teaches reaches the final head only through the shared shallow layers, which dilutes a nasty teacher's misleading
soft labels while keeping a normal teacher's useful ones (the paper reports skeptical students close to normal KD
students from normal teachers and far better than KD students from nasty teachers).

    final = student(x)                         logits of the student's own head (what is exported and evaluated)
    aux   = g(f_tap(x))                        the auxiliary head g on the tap's output
    L     = kd_weight * R(aux, z_T, y)         R = any kdlab response loss (kd, ats, dkd, ...), its CE term included
          + ce_weight * CE(final, y)
          + self_distill * KL(softmax(final / T) || softmax(aux / T))     (optional; T = the response loss's temperature)

Weights and where they come from. The official code's loss for KD location ``loc`` is
``alpha T^2 KL(p_T || p_loc) + (1 - alpha) CE(loc)`` (exactly kdlab's ``kd`` loss on the auxiliary logits) ``+ CE(final)``
with weight 1 ``+ 0.3 KL(p_final || p_aux1) + 0.7 CE(aux1)``, a self-distillation from the final head to its
3/4-depth auxiliary head (no T^2 factor). kdlab has a single auxiliary head, so ``kd_weight = ce_weight = 1`` follow
the code and the self-distillation term is optional (``self_distill``, default 0: the study tests the mechanism the
paper names, KD into a shallow sub-section; set 0.3 to add the code's term on the same head). As in the code, both
heads stay attached in the self-distillation term, so with ``self_distill > 0`` the final head receives gradient
from the auxiliary head. The code uses the same temperature for teacher and student; so does kdlab's ``kd``.

The auxiliary head (trained with the student, *not* exported: it lives on this objective, not inside the student,
so the student's saved weights are exactly the architecture that was asked for):

    tap output [N, C, H, W] -> global average pool -> [N, C]
    tap output [N, D]       -> as is
    then Linear(C or D, hidden) -> ReLU -> Linear(hidden, K)        (hidden = 0: a single Linear to K)

The paper's heads are stacks of separable convolutions ending in pooling and a linear layer (the "scala" branches
of self-distillation networks); a one-hidden-layer MLP on pooled features is the lightest head that is more than a
linear probe, which keeps the method applicable to any kdlab model and any module path.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ..config import RunConfig, Section
from ..batch import Inputs
from ..distill import FeatureTaps, StepOutput, freeze, infer_feature_shapes
from ..distill.distiller import teacher_batch_logits
from ..errors import ConfigError
from ..losses import ResponseLoss
from ..recipe import run_or_reuse
from ..validate import check_components

log = logging.getLogger("kdlab")


class AuxiliaryHead(nn.Module):
    """Pool a feature map (if 4-D), then an MLP with one hidden ReLU layer (or a single linear layer)."""

    def __init__(self, feature_shape: Sequence[int], num_classes: int, hidden: int = 128) -> None:
        super().__init__()
        shape = tuple(int(v) for v in feature_shape)
        if len(shape) not in (1, 3):
            raise ConfigError(f"skeptical tap output shape {list(shape)} is not allowed; the auxiliary head reads "
                              f"[D] vectors or [C, H, W] feature maps (without the batch dim)")
        self.pool = len(shape) == 3
        width = shape[0]
        if hidden > 0:
            self.mlp: nn.Module = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
        else:
            self.mlp = nn.Linear(width, num_classes)

    def forward(self, feature: Tensor) -> Tensor:
        """Logits [N, K] from a tap output [N, C, H, W] (pooled) or [N, D]."""
        if self.pool:
            feature = feature.mean(dim=(2, 3))
        return self.mlp(feature.flatten(1))


class SkepticalObjective(nn.Module):
    """Student + auxiliary head at ``tap`` + response loss at that head + CE at the final head (formula in the module doc).

    An :class:`~kdlab.distill.objective.Objective` for :func:`kdlab.train.fit`: ``student`` is the model that is
    evaluated and exported, ``loss`` is the response loss applied to the auxiliary head, and a step returns the
    objective, the final head's logits and the parts: the response loss's parts prefixed ``aux_`` plus ``final_ce``
    (and ``self_distill`` when on), so the training log shows all terms. The teacher (or its cached logits, indexed by
    ``index``) is never a registered submodule, so it is not in ``parameters()``, ``state_dict()`` or ``train()``.
    The forward hook on the tap stays installed while the objective lives; ``close()`` removes it.

    The self-distillation temperature T is the response loss's ``temperature`` (1 for a loss without one), read when
    the objective is built and at every ``set_epoch``: a learned temperature (ctkd) is followed epoch by epoch, so no
    step waits for the device to read it.
    """

    def __init__(self, student: nn.Module, loss: ResponseLoss, tap: str, example: Inputs, num_classes: int,
                 teacher: nn.Module | None = None, teacher_logits: Tensor | None = None, hidden: int = 128,
                 ce_weight: float = 1.0, kd_weight: float = 1.0, self_distill: float = 0.0) -> None:
        super().__init__()
        for key, value in (("ce_weight", ce_weight), ("kd_weight", kd_weight), ("self_distill", self_distill)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"skeptical.{key}={value!r} is not allowed; must be a number >= 0")
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 0:
            raise ConfigError(f"skeptical.hidden={hidden!r} is not allowed; must be an integer >= 0 (0 = linear head)")
        if loss.requires_teacher and teacher is None and teacher_logits is None:
            raise ValueError(f"loss '{loss.name}' needs a teacher or cached logits")
        self.student = student
        self.loss = loss
        self.tap = tap
        shape = infer_feature_shapes(student, [tap], example)[tap]  # resolves the tap: ConfigError if unknown
        self.aux_head = AuxiliaryHead(shape, num_classes, hidden)
        self.ce_weight, self.kd_weight, self.self_distill = float(ce_weight), float(kd_weight), float(self_distill)
        self.__dict__["teacher"] = freeze(teacher) if teacher is not None else None
        self.__dict__["teacher_logits"] = teacher_logits
        self.__dict__["_taps"] = FeatureTaps(student, [tap])
        self.self_distill_temperature = _temperature(loss)

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to the response loss (for losses that depend on training progress)."""
        self.loss.set_epoch(epoch)
        self.self_distill_temperature = _temperature(self.loss)

    def teacher_outputs(self, x: Tensor, index: Tensor) -> Tensor:
        """The teacher's logits of this batch: cached rows ``index``, or the frozen teacher run without gradient."""
        return teacher_batch_logits(self.teacher, self.teacher_logits, x, index)

    def forward(self, x: Tensor, y: Tensor, index: Tensor) -> StepOutput:
        """Objective, final-head logits and parts of a batch; see the class and module docstrings for the formula."""
        final = self.student(x)
        aux = self.aux_head(self._taps[self.tap])
        self._taps.clear()  # drop the reference to this batch's feature; the graph keeps what backward needs
        teacher = self.teacher_outputs(x, index) if self.loss.requires_teacher else None
        kd, kd_parts = self.loss.compute(aux, teacher, y)
        parts = {f"aux_{k}": v for k, v in kd_parts.items()}
        ce = F.cross_entropy(final, y)
        objective = self.kd_weight * kd + self.ce_weight * ce
        parts["final_ce"] = ce.detach()
        if self.self_distill > 0:
            t = self.self_distill_temperature
            log_final = torch.log_softmax(final / t, dim=-1)
            sd = (log_final.exp() * (log_final - torch.log_softmax(aux / t, dim=-1))).sum(-1).mean()
            objective = objective + self.self_distill * sd
            parts["self_distill"] = sd.detach()
        return StepOutput(objective, final, parts)

    def close(self) -> None:
        """Remove the forward hook from the student (idempotent)."""
        self._taps.remove()


def _temperature(loss: ResponseLoss) -> float:
    # a response loss's temperature hyperparameter where it has one (kd, dkd, ...; ctkd's is learned), else 1
    return float(getattr(loss, "temperature", 1.0))


# --------------------------------------------------------------------------------------------- one run


class SkepticalHeadOptions(Section):
    """The auxiliary head's size and the weights of the terms (module docstring); shared by every config that builds
    skeptical students (this run config, the nasty study, the distillability audit)."""

    hidden: int = Field(128, ge=0)
    ce_weight: float = Field(1.0, ge=0)
    kd_weight: float = Field(1.0, ge=0)
    self_distill: float = Field(0.0, ge=0)

    def head_options(self) -> dict[str, Any]:
        """Just these options, from this config or any config that extends it."""
        return {key: getattr(self, key) for key in SkepticalHeadOptions.model_fields}


class SkepticalConfig(SkepticalHeadOptions):
    """How the skeptical student is built: where the auxiliary head sits, its size, and the weights of the terms."""

    # a tap name of the student (model.feature_taps, e.g. hidden1, stage1) or a module path
    tap: str


class SkepticalRunConfig(Section):
    """One skeptical-student run: a distillation RunConfig (its loss goes to the auxiliary head) + the head's options."""

    run: RunConfig
    skeptical: SkepticalConfig

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able data."""
        return self.model_dump(mode="json", exclude_none=False)

    def digest(self) -> str:
        """SHA-256 identity of the run: the RunConfig's own digest (so its rules for which fields count apply) plus
        the skeptical options; never equal to a RunConfig digest."""
        payload = {"kind": "skeptical", "run": self.run.digest(), "skeptical": self.skeptical.model_dump(mode="json")}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def check(self) -> None:
        """:func:`check_skeptical` (how a study validates a planned skeptical run)."""
        check_skeptical(self)

    def run_or_reuse(self, out_dir: Path, *, progress: bool | None = None,
                     teacher_cache_dir: str | Path | None = None) -> tuple[dict[str, Any], bool]:
        """Train (or resume, or reuse) this skeptical student in ``out_dir``, waiting while another process holds it;
        return its summary and whether this call trained it (how a :class:`kdlab.store.RunStore` runs it)."""
        return _run_skeptical(self, out_dir, progress=progress, teacher_cache_dir=teacher_cache_dir, wait=True)


def check_skeptical(cfg: SkepticalRunConfig) -> None:
    """Registry names and options as ``check_components``, plus: the run has a teacher (the method distils)."""
    check_components(cfg.run)
    if cfg.run.teacher is None:
        raise ConfigError("skeptical run: run.teacher is missing; the skeptical student distils from a teacher")
    if cfg.run.features or cfg.run.hint_epochs or cfg.run.scheme is not None:
        raise ConfigError("skeptical run: run.features, run.hint_epochs and run.scheme are not supported; the "
                          "skeptical student routes one response loss to its auxiliary head (allowed: leave them unset)")


def run_skeptical(cfg: SkepticalRunConfig, out_dir: str | Path, *, progress: bool | None = None,
                  teacher_cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Train a skeptical student as ``cfg`` says in ``out_dir``; return its summary (as :func:`kdlab.recipe.run`).

    Idempotent and resumable like the recipe: a finished directory returns its summary, an unfinished one resumes,
    and a directory holding a different run is refused. The exported weights (``checkpoints/best.safetensors``) are
    the student alone; the auxiliary head lives only in the resumable checkpoints.
    """
    return _run_skeptical(cfg, out_dir, progress=progress, teacher_cache_dir=teacher_cache_dir)[0]


def _run_skeptical(cfg: SkepticalRunConfig, out_dir: str | Path, *, progress: bool | None = None,
                   teacher_cache_dir: str | Path | None = None, wait: bool = False) -> tuple[dict[str, Any], bool]:
    check_skeptical(cfg)
    sk = cfg.skeptical

    def skeptical_objective(run_cfg: RunConfig, student: nn.Module, loss: ResponseLoss, data: Any,
                            teacher: nn.Module | None, teacher_logits: Tensor | None) -> SkepticalObjective:
        return SkepticalObjective(student, loss, sk.tap, data.train.head(2), data.num_classes,
                                  teacher=None if teacher_logits is not None else teacher,
                                  teacher_logits=teacher_logits, hidden=sk.hidden, ce_weight=sk.ce_weight,
                                  kd_weight=sk.kd_weight, self_distill=sk.self_distill)

    # the recipe does the rest (data, teacher and its cached outputs, seeding, device, fit, test, summary); the run
    # directory is named by and holds this SkepticalRunConfig
    return run_or_reuse(cfg.run, out_dir, progress=progress, teacher_cache_dir=teacher_cache_dir, identity=cfg,
                        objective=skeptical_objective, summary_extra={"skeptical": sk.model_dump(mode="json")},
                        wait=wait)
