"""Train a model built in this process (a compressed one, or a fresh one on a custom split) through the one loop.

Compressed models cannot go through :func:`kdlab.recipe.run`: a magnitude-pruned model carries its masks as
``torch.nn.utils.parametrize`` parametrizations that must exist before training, and a low-rank model's architecture
is not a registered family. :func:`finetune` takes the model object itself and trains it with
:func:`kdlab.train.fit` (same checkpoints, resume and metrics as every other run) in the directory it is given.
:class:`CompressFinetuneJob` makes a compressed teacher's fine-tuning a run-store job: the store names the directory
by the job's identity, so a finished run is reused and an interrupted one resumes, as every run is.

Also :func:`effective_macs`: multiply-accumulates that a sparse kernel would execute (zero weights skipped).
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Sequence

import torch
from torch import nn

from ..config import RunConfig
from ..store import Job
from .budget import CompressionOptions, compress_to_budget

log = logging.getLogger("kdlab")

__all__ = ["SUMMARY", "CompressFinetuneJob", "effective_macs", "finetune"]

SUMMARY = "summary.json"


def effective_macs(model: nn.Module, in_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass of one sample, counting only non-zero weights.

    For every ``nn.Linear`` / ``nn.Conv2d`` with weight ``W`` (``out`` rows) producing ``n_out`` output values, a
    dense kernel does ``n_out * numel(W) / out`` MACs (:func:`kdlab.models.count_macs`); a kernel that skips zero
    weights does ``n_out * nnz(W) / out``. For a dense model the two agree; for a magnitude-pruned model this is
    the compute that unstructured sparsity can save in principle (Han et al., NeurIPS 2015, count it the same way).
    Masked weights are read through their mask. Biases, normalisation and activations are not counted.
    """
    from ..models.checks import check_in_shape
    from ..models.complexity import sum_over_layers

    shape = check_in_shape("effective_macs", in_shape)
    return sum_over_layers(model, shape, lambda module, output: output.numel() // module.weight.shape[0]
                           * int((module.weight != 0).sum()))


def finetune(model: nn.Module, train, val, cfg: RunConfig, run_dir: str | Path, *, test=None,
             loss: nn.Module | None = None, teacher_logits: torch.Tensor | None = None, keep: str = "best",
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
    and ``test_loss`` (None without ``test``), ``weights`` (a file :func:`kdlab.train.load_model_weights` rebuilds
    without help: pruning masks are baked in), plus ``summary_extra``.
    """
    from ..data import TensorLoader
    from ..distill import Distiller
    from ..io import atomic_write_json
    from ..losses import build as build_loss
    from ..models import count_macs, count_params
    from ..train import evaluate, fit, load_model_weights, save_model_weights, seed_everything
    from .pruning import nonzero_params, remove_pruning

    if keep not in ("best", "last"):
        raise ValueError(f"keep={keep!r} is not allowed; allowed: 'best', 'last'")
    run_dir = Path(run_dir)
    started = time.perf_counter()
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)  # as kdlab.recipe.run does
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    loss = loss if loss is not None else build_loss("ce")
    if hasattr(loss, "set_schedule"):
        loss.set_schedule(cfg.train.epochs)  # a warm-up or curriculum given as a fraction of training, as in recipe.run
    distiller = Distiller(model, loss, teacher_logits=teacher_logits)
    train_loader = TensorLoader(train, cfg.train.batch_size, shuffle=True, seed=cfg.train.seed)
    val_loader = TensorLoader(val, cfg.train.eval_batch_size) if val is not None else None
    result = fit(distiller, train_loader, val_loader, cfg, run_dir, progress=progress, on_epoch_end=on_epoch_end)
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
        **(summary_extra or {}),
    }
    atomic_write_json(run_dir / SUMMARY, summary)
    return summary


class CompressFinetuneJob(Job):
    """A trained teacher compressed to a parameter budget, then fine-tuned: a run-store job.

    ``teacher_run``: the teacher's run directory; ``method``: magnitude, structured or lowrank
    (:func:`kdlab.compress.budget.compress_to_budget`); ``target_params``: the budget; ``options``: how each method
    compresses and the fine-tuning loss; ``run``: the fine-tuning recipe (its data with the training subset, optimiser,
    schedule, epochs, batch size and seed; its ``model`` is the teacher's, recorded). The summary adds
    ``pre_finetune_test_accuracy`` and ``compression`` (what the method did: sparsity, widths or ranks).
    """

    kind: ClassVar[str] = "compress_finetune"
    teacher_run: str
    method: Literal["magnitude", "structured", "lowrank"]
    target_params: int
    options: CompressionOptions
    run: RunConfig

    def check(self) -> None:
        """Registry names and options of the fine-tuning run and its loss."""
        from ..config import check_components
        from ..errors import ConfigError
        from ..losses import build as build_loss

        check_components(self.run)
        try:
            build_loss(self.options.finetune_loss.name, **self.options.finetune_loss.options)
        except ConfigError as exc:
            raise ConfigError(f"compression.finetune_loss: {exc}") from None

    def train(self, out_dir: Path, *, progress: bool | None = None,
              teacher_cache_dir: str | Path | None = None) -> dict[str, Any]:
        """Compress the teacher (deterministic, so a resumed run rebuilds the same model) and fine-tune it in
        ``out_dir`` (called under the directory's lock by :meth:`kdlab.store.Job.run_or_reuse`)."""
        from ..data import TensorLoader, load_dataset
        from ..distill import cached_teacher_logits, freeze, teacher_weights_path
        from ..losses import build as build_loss
        from ..train import evaluate, load_model_weights

        d = self.run.data
        data = load_dataset(d.name, data_dir=d.data_dir, val_size=d.val_size, seed=d.seed,
                            train_subset=d.train_subset, **d.options)
        teacher = load_model_weights(teacher_weights_path(self.teacher_run))
        # compression is deterministic: a resumed run rebuilds the same model (and masks) before loading its state
        model, info = compress_to_budget(self.method, teacher, self.target_params, self.options)
        pre = evaluate(model, TensorLoader(data.test, 1024))["accuracy"]
        loss = build_loss(self.options.finetune_loss.name, **self.options.finetune_loss.options)
        logits = None
        if getattr(loss, "requires_teacher", True):
            logits = cached_teacher_logits(freeze(copy.deepcopy(teacher)), data.train.x, data.train.fingerprint(),
                                           cache_dir=teacher_cache_dir)
        return finetune(model, data.train, data.val, self.run, out_dir, test=data.test, loss=loss,
                        teacher_logits=logits, progress=progress,
                        summary_extra={"pre_finetune_test_accuracy": pre, "compression": info})
