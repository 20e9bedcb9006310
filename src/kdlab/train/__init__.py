"""Training: the one loop, optimisers and schedules, checkpoints and resume, evaluation."""

from .checkpoint import load_latest_checkpoint, load_model_weights, save_checkpoint, save_model_weights
from .device import resolve_device
from .evaluate import evaluate, predict_logits
from .loop import fit
from .optim import build_optimizer, lr_factor
from .seeding import seed_everything

__all__ = ["fit", "evaluate", "predict_logits", "build_optimizer", "lr_factor", "seed_everything",
           "save_checkpoint", "load_latest_checkpoint", "save_model_weights", "load_model_weights", "resolve_device"]
