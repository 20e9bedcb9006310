"""Train a model built in this process (a compressed one, or a fresh one on a custom split) through the one loop.

Compressed models cannot go through :func:`kdlab.recipe.run`: a magnitude-pruned model carries its masks as
``torch.nn.utils.parametrize`` parametrizations that must exist before training, and a low-rank model's architecture
is not a registered family. :func:`finetune` takes the model object itself and trains it with
:func:`kdlab.train.fit` (same checkpoints, resume and metrics as every other run) in the directory it is given.
The caller owns the directory: run-store jobs (:class:`kdlab.store.Job`, e.g. the compression study's
:class:`kdlab.studies.compress.CompressFinetuneJob`) name it by their identity and lock it, so a finished run is
reused and an interrupted one resumes, as every run is.

Also :func:`effective_macs`: multiply-accumulates that a sparse kernel would execute (zero weights skipped).
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..config import RunConfig
from ..data import TensorLoader
from ..distill import Distiller
from ..io import atomic_write_json
from ..losses import ResponseLoss
from ..losses import build as build_loss
from ..models import count_macs, count_params, load_model_weights, save_model_weights
from ..models.checks import check_in_shape
from ..models.complexity import sum_over_layers
from ..train import evaluate, fit, seed_everything
from .pruning import nonzero_params, remove_pruning

log = logging.getLogger("kdlab")

__all__ = ["SUMMARY", "effective_macs", "finetune"]

SUMMARY = "summary.json"


def effective_macs(model: nn.Module, in_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass of one sample, counting only non-zero weights.

    For every ``nn.Linear`` / ``nn.Conv2d`` with weight ``W`` (``out`` rows) producing ``n_out`` output values, a
    dense kernel does ``n_out * numel(W) / out`` MACs (:func:`kdlab.models.count_macs`); a kernel that skips zero
    weights does ``n_out * nnz(W) / out``. For a dense model the two agree; for a magnitude-pruned model this is
    the compute that unstructured sparsity can save in principle (Han et al., NeurIPS 2015, count it the same way).
    Masked weights are read through their mask. Biases, normalisation and activations are not counted.
    """
    shape = check_in_shape("effective_macs", in_shape)
    return sum_over_layers(model, shape, lambda module, output: output.numel() // module.weight.shape[0]
                           * int((module.weight != 0).sum()))


def finetune(model: nn.Module, train, val, cfg: RunConfig, run_dir: str | Path, *, test=None,
             loss: ResponseLoss | None = None, teacher_logits: torch.Tensor | None = None, keep: str = "best",
             summary_extra: dict[str, Any] | None = None, progress: bool | None = None,
             on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train ``model`` IN PLACE with :func:`kdlab.train.fit` in ``run_dir`` (resuming what is there).

    ``train`` / ``val`` / ``test`` are :class:`kdlab.data.ArrayDataset` s (``val`` and ``test`` optional); ``cfg``
    supplies optimiser, schedule, epochs, batch size and seed (its ``model`` and ``data`` sections are only
    recorded); ``loss`` defaults to CE (a loss that needs a teacher needs ``teacher_logits``: the teacher's logits for
    every row of ``train``, in order). ``keep``: the weights kept at the end, ``best`` (best validation accuracy) or
    ``last``. The caller owns the directory: a run-store job (:class:`kdlab.store.Job`) locks and claims it first;
    an interrupted run resumes from its last checkpoint, so ``model`` must then be made the same way again.

    Returns the summary (also written to ``summary.json``): ``params`` (stored values), ``nonzero_params`` (masked
    weights read through their masks, :func:`kdlab.compress.nonzero_params`), ``macs`` (dense), ``effective_macs``,
    ``best_epoch``, ``best_val_accuracy``, ``final`` (last epoch's train/val accuracy and loss), ``test_accuracy``
    and ``test_loss`` (None without ``test``), ``weights`` (a file :func:`kdlab.models.load_model_weights` rebuilds
    without help: pruning masks are baked in), ``loss_revision`` (the revision of the loss's arithmetic,
    :attr:`kdlab.losses.ResponseLoss.revision`), plus ``summary_extra``.
    """
    if keep not in ("best", "last"):
        raise ValueError(f"keep={keep!r} is not allowed; allowed: 'best', 'last'")
    run_dir = Path(run_dir)
    started = time.perf_counter()
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)  # as kdlab.recipe.run does
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    loss = loss if loss is not None else build_loss("ce")
    loss.set_schedule(cfg.train.epochs)  # a warm-up or curriculum given as a fraction of training, as in recipe.run
    distiller = Distiller(model, loss, teacher_logits=teacher_logits)
    train_loader = TensorLoader(train, cfg.train.batch_size, shuffle=True, seed=cfg.train.seed)
    val_loader = TensorLoader(val, cfg.train.eval_batch_size) if val is not None else None
    result = fit(distiller, train_loader, val_loader, run_dir, train=cfg.train, optim=cfg.optim, schedule=cfg.schedule,
                 progress=progress, on_epoch_end=on_epoch_end)
    load_model_weights(run_dir / "checkpoints" / f"{keep}.safetensors", model)
    test_metrics = evaluate(model, TensorLoader(test, cfg.train.eval_batch_size)) if test is not None else None
    # a file that rebuilds on its own: the masks of a magnitude-pruned model are baked in (a plain model of the
    # source architecture with zeros); structured-pruned and low-rank models carry their spec
    baked = remove_pruning(copy.deepcopy(model))
    weights = save_model_weights(run_dir / "model.safetensors", baked)
    in_shape = tuple(getattr(model, "in_shape", train.x.shape[1:]))
    last = result["history"][-1]
    summary = {
        "params": count_params(model),
        "nonzero_params": nonzero_params(model),
        "macs": count_macs(model, in_shape),
        "effective_macs": effective_macs(model, in_shape),
        "epochs": cfg.train.epochs,
        "seed": cfg.train.seed,
        "best_epoch": result["best_epoch"],
        "best_val_accuracy": result["best_val_accuracy"] if val is not None else None,
        "final": {k: last[k] for k in ("train_accuracy", "train_loss", "val_accuracy", "val_loss")},
        "test_accuracy": test_metrics["accuracy"] if test_metrics else None,
        "test_loss": test_metrics["loss"] if test_metrics else None,
        "num_train": len(train),
        "seconds": time.perf_counter() - started,
        "weights": str(weights),
        # what the store checks before reusing the run (kdlab.store.Job.trained_loss); the resolved hyperparameters
        # carry every option a revision depends on (standardize)
        "loss_revision": type(loss).revision_for(loss.hyperparams),
        **(summary_extra or {}),
    }
    atomic_write_json(run_dir / SUMMARY, summary)
    return summary

