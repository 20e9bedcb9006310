"""The one training loop, for supervised and distillation training alike.

``fit`` trains an :class:`~kdlab.distill.objective.Objective` for ``train.epochs`` epochs: every epoch is one
:func:`train_epoch`, then the student is evaluated on the validation loader, and every ``train.checkpoint_every``
epochs (and after the last, and after each of ``train.keep_epochs``) :func:`~kdlab.train.fit_state.save_progress`
writes ``metrics.jsonl``, the best and last student weights and a resumable checkpoint. Called again on the same run
directory, ``fit`` continues after the last checkpoint (:func:`~kdlab.train.fit_state.resume`) and ends with exactly
the weights of an uninterrupted run (same seed, CPU).

Host reads. A step never reads a tensor on the host: its loss, logits and loss parts are kept on the device
(:class:`~kdlab.train.totals.EpochTotals`) and summed at a refresh, every ``REFRESH_STEPS`` steps, where the running
loss is read once (the progress bar shows it; the NaN guard checks it), and at the end of the epoch, where every
statistic is read once.

NaN guard. When the running loss of the epoch is not finite at a refresh or at the end of the epoch, ``fit`` stops
with :class:`~kdlab.errors.TrainingDiverged`. The epoch is never checkpointed, so the last good checkpoint stays
``latest`` and a rerun resumes from it. Granularity: the guard sees a non-finite loss at the first refresh at or
after the step that produced it, so up to ``REFRESH_STEPS - 1`` more steps may run (their updates are lost with the
epoch); the message names the window of steps.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from tqdm.auto import tqdm

from ..batch import split_batch
from ..config import OptimConfig, ScheduleConfig, TrainConfig
from ..data.epochs import batches_per_epoch, set_loader_epoch
from ..distill.objective import Objective
from ..errors import KdlabError, TrainingDiverged
from ..layout import CHECKPOINTS
from . import distributed
from .evaluate import evaluate
from .fit_state import resume, save_progress
from .metric_logs import MetricLog, open_metric_logs
from .step import TrainStep
from .totals import EpochStats, EpochTotals

log = logging.getLogger("kdlab")

REFRESH_STEPS = 20  # steps between two host reads of the running loss (progress bar, NaN guard)


def fit(objective: Objective, train_loader: Iterable, val_loader: Iterable | None, run_dir: str | Path, *,
        train: TrainConfig, optim: OptimConfig, schedule: ScheduleConfig, metadata: dict[str, Any] | None = None,
        progress: bool | None = None, steps_per_epoch: int | None = None,
        on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train, evaluate each epoch, checkpoint; returns ``{"best_epoch", "best_val_accuracy", "history"}``.

    ``train_loader`` and ``val_loader`` are any iterables of batches (:mod:`kdlab.batch`): a kdlab loader, a torch
    ``DataLoader`` over a map-style or an iterable ``Dataset``, a generator-backed object. An epoch is one pass over
    ``train_loader``, capped at ``steps_per_epoch`` batches when given; a loader without a length (an
    ``IterableDataset``) needs ``steps_per_epoch``, because the learning-rate schedule is a function of the step.
    At every epoch start ``set_epoch`` is called on the loader, its sampler or its dataset where one has it; what a
    resumed run then equals, per kind of loader, is in :mod:`kdlab.data.epochs`.

    The best epoch is the one with the highest validation accuracy (the lowest training loss without a validation
    set). ``metadata`` goes into the saved weights; ``on_epoch_end(record)`` runs after each epoch's checkpoint.
    ``train.log`` adds metric sinks besides ``metrics.jsonl`` (:mod:`kdlab.train.metric_logs`).
    """
    run_dir = Path(run_dir)
    steps = epoch_steps(train_loader, steps_per_epoch)
    is_main = distributed.current().is_main
    show = is_main and _want_progress(progress if progress is not None else train.progress)
    step = TrainStep(objective, train, optim, schedule, steps_per_epoch=steps)
    state = resume(run_dir, objective, step)
    logs: list[MetricLog] = open_metric_logs(train.log, run_dir, state.epochs_done) if is_main else []
    try:
        for epoch in range(state.epochs_done, train.epochs):
            stats, seconds = train_epoch(step, train_loader, epoch, run_dir, show, steps)
            val = evaluate(objective.student, val_loader) if val_loader is not None else None
            val = val if val is not None and val["num_samples"] else None
            record = epoch_record(epoch, step.lr, stats, val, seconds)
            meta = {**(metadata or {}), "epoch": epoch + 1, "val_accuracy": record["val_accuracy"]}
            state.add_epoch(record, val["accuracy"] if val else -stats.loss, objective.student, meta)
            for sink in logs:
                sink.epoch_end(record)
            if (epoch + 1) % train.checkpoint_every == 0 or epoch + 1 in (train.epochs, *train.keep_epochs):
                if is_main:
                    save_progress(run_dir, objective, step, state, meta, train.keep_epochs)
                    for sink in logs:
                        sink.checkpoint(state.history)
                state.unsaved_best = None
                distributed.barrier()
            if is_main:
                log.info("epoch %d/%d  loss %.4f  train acc %.4f  val acc %s  (%.1fs)", epoch + 1, train.epochs,
                         stats.loss, stats.accuracy, f"{val['accuracy']:.4f}" if val else "-", seconds)
            if on_epoch_end is not None:
                on_epoch_end(record)
    finally:
        for sink in logs:
            sink.close()
    return {"best_epoch": state.best_epoch, "best_val_accuracy": state.best_score, "history": state.history}


def epoch_steps(loader: Iterable, steps_per_epoch: int | None) -> int:
    """Batches per epoch: ``len(loader)``, capped at ``steps_per_epoch``; ``steps_per_epoch`` for a loader without a
    length. Raises KdlabError when neither gives a positive number."""
    length = batches_per_epoch(loader)
    if steps_per_epoch is not None and (isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int)
                                        or steps_per_epoch < 1):
        raise KdlabError(f"steps_per_epoch={steps_per_epoch!r} is not allowed; give an int >= 1")
    if length is None and steps_per_epoch is None:
        raise KdlabError(f"the training loader ({type(loader).__name__}) has no length (an IterableDataset?): pass "
                         "fit(..., steps_per_epoch=N), the batches of one epoch; the learning-rate schedule needs it")
    steps = length if steps_per_epoch is None else steps_per_epoch if length is None else min(length, steps_per_epoch)
    if steps == 0:
        raise KdlabError("the training loader yields no batch: the training set is smaller than one batch with "
                         "drop_last")
    return steps


def train_epoch(step: TrainStep, loader: Iterable, epoch: int, run_dir: Path, show: bool,
                steps: int) -> tuple[EpochStats, float]:
    """One epoch of at most ``steps`` updates (0-based ``epoch``); its statistics over all ranks and its training
    seconds.

    Raises TrainingDiverged when the running loss is not finite at a refresh or at the end of the epoch.
    """
    step.objective.train()
    step.objective.set_epoch(epoch)
    set_loader_epoch(loader, epoch)
    totals = EpochTotals()
    started = time.perf_counter()
    bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{step.epochs}", leave=False, disable=not show,
               dynamic_ncols=True, file=sys.stderr)
    done = 0
    for i, batch in enumerate(loader):
        if i == steps:
            break
        x, y, index = step.to_device(*split_batch(batch))
        totals.add(step(x, y, index, epoch * steps + i), y)
        done = i + 1
        bar.update(1)
        if done % REFRESH_STEPS == 0 and done < steps:
            running = _guarded(totals.running_loss(), epoch, done, run_dir)
            bar.set_postfix(loss=f"{running:.4f}")
    bar.close()
    if done == 0:
        raise KdlabError(f"the training loader yielded no batch in epoch {epoch + 1}")
    stats = totals.read()
    _guarded(stats.loss, epoch, done, run_dir)
    return distributed_stats(stats), time.perf_counter() - started


def distributed_stats(stats: EpochStats) -> EpochStats:
    """The epoch's statistics over every rank's samples (unchanged in a single process)."""
    if not distributed.current().enabled:
        return stats
    keys = sorted(stats.parts)
    totals = distributed.all_reduce_sum([stats.loss * stats.seen, stats.accuracy * stats.seen, float(stats.seen),
                                         *(stats.parts[k] * stats.seen for k in keys)])
    seen = totals[2]
    return EpochStats(loss=totals[0] / seen, accuracy=totals[1] / seen,
                      parts={k: v / seen for k, v in zip(keys, totals[3:])}, seen=int(seen))


def epoch_record(epoch: int, lr: float, stats: EpochStats, val: dict[str, Any] | None,
                 seconds: float) -> dict[str, Any]:
    """One line of ``metrics.jsonl``: 1-based epoch, last learning rate, training means (loss parts as
    ``train_<part>``), validation loss and accuracy (None without a validation set), training seconds."""
    return {
        "epoch": epoch + 1,
        "lr": lr,
        "train_loss": stats.loss,
        "train_accuracy": stats.accuracy,
        **{f"train_{k}": v for k, v in stats.parts.items()},
        "val_loss": val["loss"] if val else None,
        "val_accuracy": val["accuracy"] if val else None,
        "epoch_seconds": seconds,
    }


def _guarded(running_loss: float, epoch: int, steps_done: int, run_dir: Path) -> float:
    """``running_loss`` if finite, else TrainingDiverged naming the steps since the previous (finite) refresh."""
    if math.isfinite(running_loss):
        return running_loss
    previous_refresh = (steps_done - 1) // REFRESH_STEPS * REFRESH_STEPS
    window = f"steps {previous_refresh + 1}-{steps_done}"
    raise TrainingDiverged(
        f"loss became {running_loss} at epoch {epoch + 1}, within {window} (the running loss is checked every "
        f"{REFRESH_STEPS} steps); stopped. The last good checkpoint is kept in {run_dir / CHECKPOINTS} "
        f"(epoch {epoch if epoch > 0 else 'none'}). Lower optim.lr or check the inputs.")


def _want_progress(flag: bool | None) -> bool:
    if flag is not None:
        return flag
    return sys.stderr.isatty()
