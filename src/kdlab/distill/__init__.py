"""Distillation: the objective contract (Objective, StepOutput), the Distiller (student + frozen teacher + response
loss + feature terms), training schemes (online, self-distillation), teacher loading and the teacher-output cache."""

from .cache import cached_teacher_logits, default_cache_dir, weights_digest
from .adapters import infer_feature_shapes, make_adapter
from .distiller import Distiller, freeze
from .hooks import FeatureTaps, resolve_tap
from .terms import FeatureTerm, build_feature_terms, scheduled_weight
from .aux_heads import AuxiliaryHead, make_aux_heads
from .schemes import SCHEMES, born_again, born_again_configs, build_scheme, check_scheme
from .build import build_objective
from .objective import Objective, StepOutput
from .teacher import compile_for_inference, load_teacher, teacher_weights_path

__all__ = ["Objective", "StepOutput", "Distiller", "freeze", "FeatureTaps", "resolve_tap", "make_adapter",
           "infer_feature_shapes", "FeatureTerm", "build_feature_terms", "scheduled_weight", "AuxiliaryHead",
           "make_aux_heads", "SCHEMES", "born_again", "born_again_configs", "build_scheme", "check_scheme", "build_objective", "load_teacher",
           "compile_for_inference", "teacher_weights_path", "cached_teacher_logits", "default_cache_dir",
           "weights_digest"]
