"""The one training loop, for supervised and distillation training alike.

``fit`` trains ``distiller`` (any module whose ``forward(x, y, index)`` returns ``(loss, student_logits)`` and whose
``student`` attribute is the model to evaluate) for ``cfg.train.epochs`` epochs, evaluates each epoch, writes
``metrics.jsonl``, best/last student weights and a resumable checkpoint. Calling it again on the same run directory
continues after the last complete epoch; the result equals an uninterrupted run (same seed, CPU).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..config import RunConfig
from ..errors import KdlabError, TrainingDiverged
from ..io import atomic_write_text
from . import distributed
from ..layout import CHECKPOINTS, METRICS
from ..models.weights import save_model_weights
from .checkpoint import load_latest_checkpoint, save_checkpoint
from .device import autocast_context, grad_scaler, use_channels_last
from .evaluate import evaluate
from .optim import build_optimizer, lr_factor, set_lr
from .seeding import rng_state, set_rng_state

log = logging.getLogger("kdlab")

def fit(distiller: nn.Module, train_loader, val_loader, cfg: RunConfig, run_dir: str | Path,
        *, metadata: dict[str, Any] | None = None, progress: bool | None = None,
        on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train, evaluate each epoch, checkpoint; returns ``{"best_epoch", "best_val_accuracy", "history"}``."""
    run_dir = Path(run_dir)
    student = distiller.student
    optimizer = build_optimizer(distiller.parameters(), cfg.optim)
    ranks = distributed.current()
    # under torchrun the same Distiller runs wrapped in DDP, which averages gradients over ranks in backward()
    # find_unused_parameters: hint stages, scheduled-off terms and auxiliary heads leave some parameters unused
    device = next(student.parameters()).device  # the recipe moved the objective to train.device
    step_module = (DistributedDataParallel(distiller, device_ids=[device.index] if device.type == "cuda" else None,
                                           find_unused_parameters=True) if ranks.enabled else distiller)
    epochs, base_lr = cfg.train.epochs, cfg.optim.lr
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise KdlabError("the training loader yields no batch: the training set is smaller than one batch with drop_last")
    show = ranks.is_main and _want_progress(progress if progress is not None else cfg.train.progress)
    channels_last = use_channels_last(cfg.train.channels_last, student)
    if channels_last:  # the student and every trained module of the objective (peers, adapters, heads)
        distiller.to(memory_format=torch.channels_last)
    autocast = autocast_context(device, cfg.train.precision)
    scaler = grad_scaler(device, cfg.train.precision)  # a pass-through unless precision is fp16

    start_epoch, best_acc, best_epoch, history = 0, -math.inf, -1, []
    best_weights: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None
    resumed = load_latest_checkpoint(run_dir)
    if resumed is not None:
        tensors, state = resumed
        distiller.load_state_dict(tensors, strict=True)
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        start_epoch, best_acc, best_epoch = state["epoch"] + 1, state["best_val_accuracy"], state["best_epoch"]
        history = [h for h in _read_metrics(run_dir) if h["epoch"] <= state["epoch"] + 1]
        log.info("resuming %s after epoch %d/%d", run_dir, start_epoch, epochs)

    for epoch in range(start_epoch, epochs):
        distiller.train()
        distiller.set_epoch(epoch)
        train_loader.set_epoch(epoch)
        started = time.perf_counter()
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct, seen = 0, 0
        parts_sum: dict[str, float] = {}
        bar = tqdm(train_loader, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}", leave=False,
                   disable=not show, dynamic_ncols=True, file=sys.stderr)
        for i, (x, y, index) in enumerate(bar):
            step = epoch * steps_per_epoch + i
            set_lr(optimizer, base_lr * lr_factor(step, steps_per_epoch, epochs, cfg.schedule, base_lr))
            if device.type != "cpu":
                x, y, index = (t.to(device, non_blocking=True) for t in (x, y, index))
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                loss, logits, parts = step_module(x, y, index)
            loss = loss.float()
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"loss became {value} at epoch {epoch + 1}, step {i + 1} (parts: { {k: float(v) for k, v in parts.items()} }); "
                    f"stopped. The last good checkpoint is kept in {run_dir / CHECKPOINTS} "
                    f"(epoch {epoch if epoch > 0 else 'none'}). Lower optim.lr or check the inputs.")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)  # with fp16: unscales, and skips the step if a gradient overflowed
            scaler.update()
            n = len(y)
            loss_sum += value * n
            correct += (logits.detach().argmax(1) == y).sum().item()
            seen += n
            for key, part in parts.items():
                parts_sum[key] = parts_sum.get(key, 0.0) + float(part) * n
            if show and i % 20 == 0:
                bar.set_postfix(loss=f"{value:.4f}")
        bar.close()
        train_time = time.perf_counter() - started
        if ranks.enabled:
            keys = sorted(parts_sum)
            totals = distributed.all_reduce_sum([loss_sum.item(), correct, seen, *(parts_sum[k] for k in keys)])
            loss_sum, correct, seen = torch.tensor(totals[0], dtype=torch.float64), int(totals[1]), int(totals[2])
            parts_sum = dict(zip(keys, totals[3:]))
        val = evaluate(student, val_loader) if val_loader is not None and len(val_loader.dataset) else None
        record = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": loss_sum.item() / seen,
            "train_accuracy": correct / seen,
            **{f"train_{k}": v / seen for k, v in parts_sum.items()},
            "val_loss": val["loss"] if val else None,
            "val_accuracy": val["accuracy"] if val else None,
            "epoch_seconds": train_time,
        }
        history.append(record)
        score = val["accuracy"] if val else -record["train_loss"]
        meta = {**(metadata or {}), "epoch": epoch + 1, "val_accuracy": record["val_accuracy"]}
        if score > best_acc:
            best_acc, best_epoch = score, epoch + 1
            # kept in memory and written with the next checkpoint, so best.safetensors always matches `state.pt`
            best_weights = ({k: v.detach().clone() for k, v in student.state_dict().items()}, dict(meta))
        is_checkpoint = ((epoch + 1) % cfg.train.checkpoint_every == 0 or epoch + 1 == epochs
                         or epoch + 1 in cfg.train.keep_epochs)
        if ranks.is_main and is_checkpoint:
            if best_weights is not None:
                save_model_weights(run_dir / CHECKPOINTS / "best.safetensors", student, best_weights[1],
                                   state_dict=best_weights[0])
            save_model_weights(run_dir / CHECKPOINTS / "last.safetensors", student, meta)
            atomic_write_text(run_dir / METRICS, "".join(json.dumps(h) + "\n" for h in history))
            save_checkpoint(run_dir, epoch, _trainable_state(distiller), {
                "epoch": epoch, "optimizer": optimizer.state_dict(), "rng": rng_state(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "best_val_accuracy": best_acc, "best_epoch": best_epoch,
            }, keep_epochs=cfg.train.keep_epochs)
        if is_checkpoint:
            best_weights = None
            distributed.barrier()
        if ranks.is_main:
            log.info("epoch %d/%d  loss %.4f  train acc %.4f  val acc %s  (%.1fs)", epoch + 1, epochs,
                     record["train_loss"], record["train_accuracy"],
                     f"{record['val_accuracy']:.4f}" if val else "-", train_time)
        if on_epoch_end is not None:
            on_epoch_end(record)
    return {"best_epoch": best_epoch, "best_val_accuracy": best_acc, "history": history}


def _trainable_state(distiller: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in distiller.state_dict().items() if isinstance(v, torch.Tensor)}


def _read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _want_progress(flag: bool | None) -> bool:
    if flag is not None:
        return flag
    return sys.stderr.isatty()
