"""Loading a teacher: from a kdlab run directory; from a model (kdlab's registry or an external source) plus a weights
file (.safetensors, a torch.save'd state dict read with weights_only=True, or a Hugging Face checkpoint directory);
or a Hugging Face checkpoint directory alone (``teacher.model: {source: huggingface, path: DIR}``)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..config import TeacherConfig
from ..errors import ConfigError
from ..io import load_tensors
from ..layout import CHECKPOINTS, best_weights_path, epoch_weights_path
from ..models import build_model, load_model_weights, load_state_dict_file
from ..models.weights import state_dict_mismatch
from .distiller import freeze


def teacher_weights_path(run_dir: str | Path) -> Path:
    """The weights a finished kdlab run exports as a teacher (its best-validation checkpoint)."""
    return best_weights_path(run_dir)


def load_teacher(cfg: TeacherConfig, num_classes: int, in_shape: Sequence[int]) -> nn.Module:
    """Build and load the teacher, check it has ``num_classes`` outputs, and freeze it."""
    if cfg.run is not None:
        path = teacher_weights_path(cfg.run)
        if not path.is_file():
            raise ConfigError(f"teacher.run='{cfg.run}' has no trained weights ({path} is missing); "
                              "train the teacher first with `kdlab train`")
        try:
            model = load_model_weights(path)
            if cfg.epoch is not None:
                load_epoch_weights(cfg.run, cfg.epoch, model)
        except ConfigError as exc:
            raise ConfigError(f"teacher.run='{cfg.run}': {exc}") from None
        key = "teacher.run"
    else:
        assert cfg.model is not None
        section = cfg.model.as_dict()
        if cfg.weights is not None:
            weights = Path(cfg.weights)
            if not weights.exists():
                raise ConfigError(f"teacher.weights='{cfg.weights}' does not exist")
            if weights.is_dir() and teacher_weights_path(weights).is_file():
                raise ConfigError(f"teacher.weights='{cfg.weights}' is a kdlab run directory; give teacher.run "
                                  "for a kdlab run")
        # the teacher's own class count and input shape may be given (a kdlab model trained elsewhere); they are
        # then checked against the data below
        classes = section.pop("num_classes", num_classes) if "source" not in section else num_classes
        shape = section.pop("in_shape", in_shape) if "source" not in section else in_shape
        if cfg.weights is not None and section.get("source") == "huggingface" and \
                (Path(cfg.weights) / "config.json").is_file():
            # a Hugging Face checkpoint directory: transformers reads it (its saved key names may differ from the
            # module's, which from_pretrained maps), with the architecture its config.json names
            section = {"source": "huggingface", "path": str(cfg.weights),
                       **({"architecture": section["architecture"]} if section.get("architecture") else {})}
            model = build_model(section, classes, shape, key="teacher.weights")
            return _checked(freeze(model), num_classes, in_shape, "teacher.weights")
        model = build_model(section, classes, shape, key="teacher.model")
        if cfg.weights is not None:
            try:
                load_state_dict_file(cfg.weights, model)
            except RuntimeError as exc:
                raise ConfigError(f"teacher.weights='{cfg.weights}' does not fit teacher.model "
                                  f"({state_dict_mismatch(exc)}); give the teacher.model options it was trained "
                                  "with") from None
            except ConfigError as exc:
                raise ConfigError(f"teacher.weights='{cfg.weights}': {exc}") from None
        key = "teacher.model"
    return _checked(freeze(model), num_classes, in_shape, key)


def _checked(model: nn.Module, num_classes: int, in_shape: Sequence[int], key: str) -> nn.Module:
    """``model`` if its spec's class count and input shape are the data's, else ConfigError naming ``key``."""
    spec = getattr(model, "spec", {})
    teacher_classes = spec.get("num_classes")
    if teacher_classes is not None and int(teacher_classes) != int(num_classes):
        raise ConfigError(f"{key}: the teacher has {teacher_classes} classes but the student and dataset have "
                          f"{num_classes}; teacher and student must predict the same classes")
    teacher_shape = spec.get("in_shape")
    if teacher_shape is not None and list(teacher_shape) != list(in_shape):
        raise ConfigError(f"{key}: the teacher takes inputs of shape {list(teacher_shape)} but the dataset's are "
                          f"{list(in_shape)}; distil on the data the teacher was trained on")
    return model


def compile_for_inference(teacher: nn.Module) -> nn.Module:
    """``torch.compile`` a frozen teacher for its inference passes (``teacher.compile: true``).

    The first batch of each new shape pays the compilation (tens of seconds on a CPU); outputs equal the eager
    teacher's within float tolerance. The compiled wrapper keeps the original in ``_orig_mod``; the teacher-output
    cache keys on that original, so compiling does not re-key the cache.
    """
    return torch.compile(teacher)


def load_epoch_weights(run_dir: str | Path, epoch: int, model: nn.Module) -> nn.Module:
    """Load the student weights a run kept after 1-based ``epoch`` (its ``train.keep_epochs``) into ``model``."""
    path = epoch_weights_path(run_dir, epoch)
    if not path.is_file():
        kept = sorted(p.parent.name for p in Path(run_dir, CHECKPOINTS).glob("epoch-*/weights.safetensors"))
        raise ConfigError(f"teacher.epoch={epoch}: run '{run_dir}' did not keep that epoch (kept: "
                          f"{', '.join(kept) or 'none'}); train the teacher with train.keep_epochs: [{epoch}]")
    state = load_tensors(path)
    try:
        model.load_state_dict({k[len("student."):]: v for k, v in state.items() if k.startswith("student.")})
    except RuntimeError as exc:
        raise ConfigError(f"teacher.epoch={epoch}: '{path}' does not fit the run's model "
                          f"({state_dict_mismatch(exc)}); the file is damaged") from None
    return model


def resolve_weights_file(path: str | Path) -> Path:
    """A .safetensors file, or a kdlab run directory's best weights."""
    path = Path(path)
    return teacher_weights_path(path) if path.is_dir() else path
