"""Distillation: the Distiller (student + frozen teacher + loss), teacher loading and the teacher-output cache."""

from .cache import cached_teacher_logits, default_cache_dir, weights_digest
from .distiller import Distiller, freeze
from .teacher import load_teacher, teacher_weights_path

__all__ = ["Distiller", "freeze", "load_teacher", "teacher_weights_path", "cached_teacher_logits",
           "default_cache_dir", "weights_digest"]
