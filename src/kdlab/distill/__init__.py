"""Distillation: the Distiller (student + frozen teacher + loss), teacher loading and the teacher-output cache."""

from .cache import cached_teacher_logits, default_cache_dir, weights_digest
from .adapters import infer_feature_shapes, make_adapter
from .distiller import Distiller, freeze
from .hooks import FeatureTaps, resolve_tap
from .teacher import load_teacher, teacher_weights_path

__all__ = ["Distiller", "freeze", "FeatureTaps", "resolve_tap", "make_adapter", "infer_feature_shapes", "load_teacher", "teacher_weights_path", "cached_teacher_logits",
           "default_cache_dir", "weights_digest"]
