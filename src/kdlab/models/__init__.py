"""Model families with one contract (``KDModel``), so that any model can be the teacher or the student.

Build by name with :func:`create_model`; the family modules below register their names on import. A model's weights
file carries its spec (:func:`save_model_weights`), so :func:`load_model_weights` rebuilds it from the file alone.
"""

from . import cnn, mlp, resnet, wrn  # noqa: F401  (importing registers the families)
from .base import KDModel
from .complexity import count_macs, count_params
from .factory import MODELS, create_model, model_from_spec, register_model, register_spec_builder
from .inference import model_device, predict_logits
from .taps import list_taps
from .weights import load_model_weights, save_model_weights

__all__ = ["KDModel", "MODELS", "create_model", "register_model", "model_from_spec", "register_spec_builder",
           "count_params", "count_macs", "list_taps", "predict_logits", "model_device", "save_model_weights",
           "load_model_weights"]
