"""Training: the one loop, optimisers and schedules, checkpoints and resume, evaluation."""

from .checkpoint import load_latest_checkpoint, save_checkpoint
from .device import resolve_device
from .evaluate import evaluate
from .loop import fit
from .optim import build_optimizer, lr_factor
from .seeding import seed_everything

__all__ = ["fit", "evaluate", "build_optimizer", "lr_factor", "seed_everything", "save_checkpoint",
           "load_latest_checkpoint", "resolve_device"]
