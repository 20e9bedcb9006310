"""Model families with one contract (``KDModel``), so that any model can be the teacher or the student.

Build by name with :func:`create_model`; the family modules below register their names on import.
"""

from . import cnn, mlp, resnet, wrn  # noqa: F401  (importing registers the families)
from .base import KDModel
from .complexity import count_macs, count_params
from .factory import MODELS, create_model, register_model
from .taps import list_taps

__all__ = ["KDModel", "MODELS", "create_model", "register_model", "count_params", "count_macs", "list_taps"]
