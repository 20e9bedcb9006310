"""Adapters map a student's feature to the shape of the teacher's feature, so that losses comparing them element by
element (``fitnet``, ``agd``, ...) work across architectures; plus ``infer_feature_shapes`` to learn the shapes.

An adapter is the trainable regressor of FitNets (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015):
it trains together with the student (its parameters belong in the optimiser) but is *not* part of the student: keep
it outside the student module (e.g. on the Distiller) so that the student's exported weights stay exactly the
architecture that was asked for. After training it is thrown away.

Shapes are given without the batch dimension: ``[C, H, W]`` for conv feature maps, ``[D]`` for vectors, ``[N, D]``
for token features (a transformer's hidden states: N tokens of width D).

    student -> teacher           adapter
    equal shapes                 identity (no parameters)
    [C, H, W] -> [C', H', W']    1x1 conv C -> C' (+ batch norm if asked), then bilinear resize to (H', W') if needed
    [D] -> [D']                  linear D -> D'
    [C, H, W] -> [D']            global average pool, then linear C -> D'
    [N, D] -> [N, D']            linear D -> D' on every token (the same N)
    [N, D] -> [D']               mean over the tokens, then linear D -> D'
    [D] -> [C', H', W']          ConfigError: a vector has no spatial layout to map onto a feature map
    [N, D] -> [N', D'], N != N'  ConfigError: tokens have no geometry to resample (a spatial map does: bilinear)
    tokens <-> feature maps      ConfigError: neither layout maps onto the other without a choice kdlab will not make
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..batch import Inputs, inputs_to
from ..errors import ConfigError
from ..models.outputs import model_logits
from .hooks import FeatureTaps


def _check_shape(argument: str, shape: object) -> tuple[int, ...]:
    """A feature shape without the batch dim: [D], [N, D] (tokens) or [C, H, W] of positive ints."""
    ok = (isinstance(shape, Sequence) and not isinstance(shape, str) and len(shape) in (1, 2, 3)
          and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in shape))
    if not ok:
        raise ConfigError(f"{argument}={shape!r} is not allowed; must be a feature shape without the batch dim: "
                          f"[D] (a vector), [N, D] (tokens) or [C, H, W] (a feature map) of positive integers")
    return tuple(int(v) for v in shape)


class TokenPooledLinear(nn.Module):
    """Mean over the tokens ``[B, N, D] -> [B, D]``, then linear ``D -> D'``: tokens against a vector."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.mean(dim=1))


class ConvAdapter(nn.Module):
    """1x1 conv ``C -> C'`` (+ optional batch norm), then bilinear resize to the teacher's ``(H', W')``.

    The conv runs before the resize: the regressor is per position, so the order only changes the cost, and mapping
    channels first is cheaper when the student's map is the smaller one (the usual case). Bilinear with
    ``align_corners=False`` treats pixels as areas, so a 4x4 map upsampled to 8x8 keeps its content aligned.
    """

    def __init__(self, in_channels: int, out_channels: int, size: tuple[int, int], batch_norm: bool = False) -> None:
        super().__init__()
        # a conv followed by batch norm needs no bias: BN's shift replaces it
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=not batch_norm)
        self.norm = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
        self.size = tuple(size)

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.conv(x))
        if tuple(y.shape[-2:]) != self.size:
            y = F.interpolate(y, size=self.size, mode="bilinear", align_corners=False)
        return y

    def extra_repr(self) -> str:
        return f"size={self.size}"


class PooledLinearAdapter(nn.Module):
    """Global average pool ``[N, C, H, W] -> [N, C]``, then linear ``C -> D'``: a feature map against a vector."""

    def __init__(self, in_channels: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_channels, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.mean(dim=(2, 3)))


def make_adapter(student_shape: Sequence[int], teacher_shape: Sequence[int], *, batch_norm: bool = False) -> nn.Module:
    """A module mapping student features ``[N, *student_shape]`` to ``[N, *teacher_shape]`` (table in the module doc).

    ``batch_norm`` adds a BatchNorm2d after the 1x1 conv of conv-to-conv adapters (ignored otherwise). Raises
    ConfigError naming the shapes for malformed shapes and for a vector student against a feature-map teacher.
    """
    student = _check_shape("student_shape", student_shape)
    teacher = _check_shape("teacher_shape", teacher_shape)
    if not isinstance(batch_norm, bool):
        raise ConfigError(f"batch_norm={batch_norm!r} is not allowed; must be true or false")
    if student == teacher:
        return nn.Identity()
    if len(student) == 2 or len(teacher) == 2:
        return _token_adapter(student, teacher)
    if len(student) == 3 and len(teacher) == 3:
        return ConvAdapter(student[0], teacher[0], (teacher[1], teacher[2]), batch_norm=batch_norm)
    if len(student) == 1 and len(teacher) == 1:
        return nn.Linear(student[0], teacher[0])
    if len(student) == 3:
        return PooledLinearAdapter(student[0], teacher[0])
    raise ConfigError(
        f"student_shape={list(student)} (a vector) cannot be adapted to teacher_shape={list(teacher)} (a feature "
        f"map): a vector has no spatial layout to regress onto. Use a relation loss (rkd, sp, pairwise, lsp), which "
        f"compares samples within the batch and accepts any two shapes, or pick a teacher tap that gives a vector "
        f"(e.g. 'pre_logits') or a student tap that gives a feature map"
    )


def _token_adapter(student: tuple[int, ...], teacher: tuple[int, ...]) -> nn.Module:
    """The adapter between shapes of which at least one is tokens [N, D] (the table in the module docstring)."""
    if len(student) == 2 and len(teacher) == 2:
        if student[0] != teacher[0]:
            raise ConfigError(f"student_shape={list(student)} and teacher_shape={list(teacher)} have different token "
                              f"counts ({student[0]} vs {teacher[0]}): tokens have no geometry to resample. Tap "
                              "layers with the same sequence length, or use a relation loss (rkd, sp, pairwise, lsp)")
        return nn.Linear(student[1], teacher[1])
    if len(student) == 2 and len(teacher) == 1:
        return TokenPooledLinear(student[1], teacher[0])
    raise ConfigError(f"student_shape={list(student)} cannot be adapted to teacher_shape={list(teacher)}: tokens "
                      "[N, D] and feature maps [C, H, W] (or a vector student against tokens) do not map onto each "
                      "other. Use a relation loss (rkd, sp, pairwise, lsp), which accepts any two shapes, or taps of "
                      "the same kind")


def infer_feature_shapes(model: nn.Module, taps: Sequence[str], example: Inputs) -> dict[str, tuple[int, ...]]:
    """tap -> feature shape without the batch dim, from one forward pass of ``example``, a real batch (a tensor or
    a mapping of named tensors such as ``input_ids`` and ``attention_mask``) of at least 2 samples.

    A real batch, not zeros: a token model reads integer ids and masks that zeros do not stand for, and some models
    check their inputs. The batch is moved to the model's device (floating inputs to its dtype). The model runs in
    eval mode under ``torch.no_grad()`` (so no random state is drawn); every submodule's train/eval flag is restored
    afterwards (also on error), and the hooks are removed.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    inputs = inputs_to(example, device)
    inputs = (inputs.to(dtype) if isinstance(inputs, Tensor) and inputs.is_floating_point() else inputs)
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad(), FeatureTaps(model, taps) as tapped:
            model_logits(model, inputs)
            missing = [tap for tap in tapped.paths if tap not in tapped.features]
            if missing:
                raise ConfigError(f"feature taps {missing} (modules {[tapped.paths[t] for t in missing]}) produced "
                                  f"no output in a forward pass of {type(model).__name__}; pick modules that run")
            return {tap: tuple(int(v) for v in tapped.features[tap].shape[1:]) for tap in tapped.paths}
    finally:
        for module, training in modes.items():
            module.training = training

