"""Train a model built in this process (a compressed one, or a fresh one on a custom split) through the one loop,
in a content-addressed run directory.

Compressed models cannot go through :func:`kdlab.recipe.run`: a magnitude-pruned model carries its masks as
``torch.nn.utils.parametrize`` parametrizations that must exist before training, and a low-rank model's architecture
is not a registered family. :func:`finetune` takes the model object itself and trains it with
:func:`kdlab.train.fit` (same checkpoints, resume and metrics as every other run). The directory is named by
:func:`run_key` of a payload that identifies the run (how the model was made + its RunConfig), so a finished run is
reused and an interrupted one resumes -- the content addressing of :class:`kdlab.store.RunStore`, for runs
that have no plain RunConfig.

Also :func:`effective_macs`: multiply-accumulates that a sparse kernel would execute (zero weights skipped).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..config import RunConfig
from ..data import TensorLoader
from ..distill import Distiller
from ..errors import KdlabError
from ..io import atomic_write_json, atomic_write_text
from ..losses import ResponseLoss
from ..losses import build as build_loss
from ..models import count_macs, count_params, load_model_weights, save_model_weights
from ..models.checks import check_in_shape
from ..models.complexity import sum_over_layers
from ..runlock import acquire_run_lock
from ..train import evaluate, fit, seed_everything
from ..train.checkpoint import remove_stale_temp_files
from .pruning import nonzero_params, remove_pruning

log = logging.getLogger("kdlab")

__all__ = ["KEY_FILE", "SUMMARY", "effective_macs", "finetune", "finetune_dir", "run_key"]

KEY_FILE = "key.json"
SUMMARY = "summary.json"


def run_key(payload: dict[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of ``payload`` (sorted keys): the identity of an in-process run."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def finetune_dir(root: str | Path, payload: dict[str, Any]) -> Path:
    """The run directory of ``payload`` under ``root``: ``root/<run_key(payload)[:16]>``."""
    return Path(root) / run_key(payload)[:16]


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


def _claim(run_dir: Path, identity: dict[str, Any], cfg: RunConfig) -> dict[str, Any] | None:
    """Write the run's identity (and its config, for reading) into ``run_dir``; return the summary when this exact
    run already finished there."""
    key_path = run_dir / KEY_FILE
    canonical = json.loads(json.dumps(identity, sort_keys=True, default=str))
    if key_path.is_file():
        stored = json.loads(key_path.read_text())
        if {k: stored.get(k) for k in canonical} != canonical:
            raise KdlabError(f"'{run_dir}' holds a different in-process run; delete it to start over")
        summary = run_dir / SUMMARY
        return json.loads(summary.read_text()) if summary.is_file() else None
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(key_path, json.dumps({**canonical, "config": cfg.to_dict()}, sort_keys=True, indent=1,
                                           default=str))
    return None


def finetune(model: nn.Module, train, val, cfg: RunConfig, root: str | Path, payload: dict[str, Any], *,
             test=None, loss: ResponseLoss | None = None, teacher_logits: torch.Tensor | None = None,
             progress: bool | None = None,
             on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train ``model`` IN PLACE with :func:`kdlab.train.fit` in ``root/<run_key(payload + cfg.digest())[:16]>``.

    ``train`` / ``val`` / ``test`` are :class:`kdlab.data.ArrayDataset` s (``test`` optional); ``cfg`` supplies
    optimiser, schedule, epochs, batch size and seed (its ``model`` and ``data`` sections are only recorded);
    ``loss`` defaults to CE (a loss that needs a teacher needs ``teacher_logits``: the teacher's logits for every
    row of ``train``, in order). ``payload`` must identify how ``model`` was made (e.g. compression method, budget,
    digest of the source weights): together with ``cfg`` it names the directory, so a finished run is returned
    without training and an interrupted one resumes from its last checkpoint (``model`` must then be made the same
    way again). The best-validation weights are loaded into ``model`` at the end and tested on ``test``; a reused
    run leaves ``model`` untouched (its summary says all there is to know).

    Returns the summary (also written to ``summary.json``): ``params`` (stored values), ``nonzero_params`` (masked
    weights read through their masks, :func:`kdlab.compress.nonzero_params`), ``macs`` (dense), ``effective_macs``,
    ``best_epoch``, ``best_val_accuracy``, ``final`` (last epoch's train/val accuracy and loss), ``test_accuracy``
    and ``test_loss`` (None without ``test``), ``weights`` (a file :func:`kdlab.models.load_model_weights` rebuilds
    without help: pruning masks are baked in) and ``run_dir``.
    """
    # the run's identity: how the model was made + the RunConfig's digest (which, as in the run store, leaves out
    # execution-only settings such as checkpoint_every at their defaults)
    identity = {"payload": payload, "run": cfg.digest()}
    run_dir = finetune_dir(root, identity)
    # one process per run directory, as in the run store: a second user waits, then reuses the finished run
    with acquire_run_lock(run_dir, wait=True):
        finished = _claim(run_dir, identity, cfg)
        if finished is not None:
            log.info("%s is already finished; reusing it", run_dir)
            return {**finished, "run_dir": str(run_dir), "reused": True}
        remove_stale_temp_files(run_dir)  # of a killed earlier attempt
        started = time.perf_counter()
        if cfg.train.num_threads:
            torch.set_num_threads(cfg.train.num_threads)  # as kdlab.recipe.run does
        seed_everything(cfg.train.seed, cfg.train.deterministic)
        loss = loss if loss is not None else build_loss("ce")
        loss.set_schedule(cfg.train.epochs)  # a warm-up or curriculum given as a fraction of training, as in recipe.run
        distiller = Distiller(model, loss, teacher_logits=teacher_logits)
        train_loader = TensorLoader(train, cfg.train.batch_size, shuffle=True, seed=cfg.train.seed)
        val_loader = TensorLoader(val, cfg.train.eval_batch_size)
        result = fit(distiller, train_loader, val_loader, run_dir, train=cfg.train, optim=cfg.optim,
                     schedule=cfg.schedule, metadata={"run_key": run_key(identity)}, progress=progress,
                     on_epoch_end=on_epoch_end)
        best = run_dir / "checkpoints" / "best.safetensors"
        load_model_weights(best, model)
        test_metrics = evaluate(model, TensorLoader(test, cfg.train.eval_batch_size)) if test is not None else None
        # a file that rebuilds on its own: the masks of a magnitude-pruned model are baked in (a plain model of the
        # source architecture with zeros); structured-pruned and low-rank models carry their spec
        baked = remove_pruning(copy.deepcopy(model))
        weights = save_model_weights(run_dir / "model.safetensors", baked)
        in_shape = tuple(getattr(model, "in_shape", train.x.shape[1:]))
        last = result["history"][-1]
        summary = {
            "run_key": run_key(identity),
            "params": count_params(model),
            "nonzero_params": nonzero_params(model),
            "macs": count_macs(model, in_shape),
            "effective_macs": effective_macs(model, in_shape),
            "epochs": cfg.train.epochs,
            "seed": cfg.train.seed,
            "best_epoch": result["best_epoch"],
            "best_val_accuracy": result["best_val_accuracy"],
            "final": {k: last[k] for k in ("train_accuracy", "train_loss", "val_accuracy", "val_loss")},
            "test_accuracy": test_metrics["accuracy"] if test_metrics else None,
            "test_loss": test_metrics["loss"] if test_metrics else None,
            "num_train": len(train),
            "seconds": time.perf_counter() - started,
            "weights": str(weights),
        }
        atomic_write_json(run_dir / SUMMARY, summary)
        return {**summary, "run_dir": str(run_dir), "reused": False}
