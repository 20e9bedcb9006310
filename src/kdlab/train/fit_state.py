"""Where a run stands (epochs done, best so far, the metrics history), restored from its latest checkpoint and written
with the next one. What a checkpoint holds and where it lives: :mod:`kdlab.train.checkpoint`, :mod:`kdlab.layout`.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..distill.objective import Objective
from ..io import atomic_write_text
from ..layout import METRICS, best_weights_path, last_weights_path
from ..models.weights import save_model_weights
from .checkpoint import load_latest_checkpoint, save_checkpoint
from .seeding import rng_state, set_rng_state
from .step import TrainStep

log = logging.getLogger("kdlab")


@dataclass
class FitState:
    """Epochs done, the best epoch so far (by its score: validation accuracy, else minus the training loss) and one
    metrics record per epoch. The best student's weights wait in memory until the next checkpoint writes them, so
    ``best.safetensors`` always matches the checkpoint's ``state.pt``."""

    epochs_done: int = 0
    best_score: float = -math.inf
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    unsaved_best: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None

    def add_epoch(self, record: dict[str, Any], score: float, student: nn.Module, metadata: dict[str, Any]) -> None:
        """Record a finished epoch; keep a copy of the student's weights if it is the best so far."""
        self.history.append(record)
        self.epochs_done = record["epoch"]
        if score > self.best_score:
            self.best_score, self.best_epoch = score, record["epoch"]
            self.unsaved_best = ({k: v.detach().clone() for k, v in student.state_dict().items()}, dict(metadata))


def resume(run_dir: Path, objective: Objective, step: TrainStep) -> FitState:
    """The state after the latest checkpoint of ``run_dir``, with the objective, optimiser, gradient scaler and RNG
    restored to it; a fresh state when the run has no checkpoint."""
    latest = load_latest_checkpoint(run_dir)
    if latest is None:
        return FitState()
    tensors, state = latest
    objective.load_state_dict(tensors, strict=True)
    step.optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        step.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    done = state["epoch"] + 1
    log.info("resuming %s after epoch %d/%d", run_dir, done, step.epochs)
    return FitState(epochs_done=done, best_score=state["best_val_accuracy"], best_epoch=state["best_epoch"],
                    history=[h for h in _read_metrics(run_dir) if h["epoch"] <= done])


def save_progress(run_dir: Path, objective: Objective, step: TrainStep, state: FitState, metadata: dict[str, Any],
                  keep_epochs: list[int]) -> None:
    """Write what the epochs so far produced: the best student's weights (if a new best is waiting), the last
    student's, ``metrics.jsonl`` and the resumable checkpoint of the last epoch (objective, optimiser, scaler, RNG)."""
    student = objective.student
    if state.unsaved_best is not None:
        weights, best_metadata = state.unsaved_best
        save_model_weights(best_weights_path(run_dir), student, best_metadata, state_dict=weights)
    save_model_weights(last_weights_path(run_dir), student, metadata)
    atomic_write_text(run_dir / METRICS, "".join(json.dumps(h) + "\n" for h in state.history))
    save_checkpoint(run_dir, state.epochs_done - 1, _trainable_state(objective), {
        "epoch": state.epochs_done - 1, "optimizer": step.optimizer.state_dict(), "rng": rng_state(),
        "scaler": step.scaler.state_dict() if step.scaler.is_enabled() else None,
        "best_val_accuracy": state.best_score, "best_epoch": state.best_epoch,
    }, keep_epochs=keep_epochs)


def _trainable_state(objective: Objective) -> dict[str, torch.Tensor]:
    return {k: v for k, v in objective.state_dict().items() if isinstance(v, torch.Tensor)}


def _read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
