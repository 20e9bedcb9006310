"""Where a run directory keeps its training files: one definition for the loop that writes them and for everything
that reads them (a teacher loaded from a run, an ESKD epoch, ``kdlab eval``).

    metrics.jsonl                              one JSON record per epoch (train/val loss and accuracy, loss parts)
    checkpoints/epoch-0003/weights.safetensors trainable state of the objective after 1-based epoch 3
    checkpoints/epoch-0003/state.pt            optimiser, RNG and scaler state, epoch, best metric
    checkpoints/latest                         text: name of the newest complete epoch directory
    checkpoints/best.safetensors               the student's best-validation weights, its spec in the metadata
    checkpoints/last.safetensors               the same for the last epoch

(``summary.json`` and ``config.yaml`` belong to the recipe that runs the loop: :mod:`kdlab.recipe`.)
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
LATEST = "latest"


def epoch_dir_name(epoch: int) -> str:
    """Name of the checkpoint directory of 1-based ``epoch``."""
    return f"epoch-{epoch:04d}"


def epoch_weights_path(run_dir: str | Path, epoch: int) -> Path:
    """The objective's trainable state saved after 1-based ``epoch`` (kept when listed in ``train.keep_epochs``)."""
    return Path(run_dir) / CHECKPOINTS / epoch_dir_name(epoch) / "weights.safetensors"


def best_weights_path(run_dir: str | Path) -> Path:
    """The student's best-validation weights: what a finished run exports (as a teacher, to ``kdlab eval``)."""
    return Path(run_dir) / CHECKPOINTS / "best.safetensors"


def last_weights_path(run_dir: str | Path) -> Path:
    """The student's weights after the last completed checkpoint epoch."""
    return Path(run_dir) / CHECKPOINTS / "last.safetensors"
