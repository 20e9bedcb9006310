"""Model families with one contract (``KDModel``), so that any model can be the teacher or the student.

Build by name with :func:`create_model`; the family modules below register their names on import. A model's weights
file carries its spec (:func:`save_model_weights`), so :func:`load_model_weights` rebuilds it from the file alone.
"""

from . import cnn, external, mlp, resnet, wrn  # noqa: F401  (importing registers the families and the source specs)
from .base import KDModel
from .build import build_model, check_model
from .complexity import count_macs, count_params
from .factory import MODELS, create_model, model_from_spec, register_model, register_spec_builder
from .inference import model_device, predict_logits
from .outputs import logits_of, model_logits
from .taps import list_taps
from .weights import load_model_weights, load_state_dict_file, read_state_dict, save_model_weights

__all__ = ["KDModel", "MODELS", "create_model", "register_model", "model_from_spec", "register_spec_builder",
           "count_params", "count_macs", "list_taps", "predict_logits", "model_device", "save_model_weights",
           "load_model_weights", "build_model", "check_model", "logits_of", "model_logits", "read_state_dict",
           "load_state_dict_file"]
