"""The train/distill recipe: config -> data + models -> Distiller -> fit -> test -> summary.json.

Reads top to bottom like the experiment it runs. ``run(cfg, out_dir)`` is idempotent: a finished run directory
returns its summary, an unfinished one resumes from its last checkpoint, and a directory holding a *different* run
is refused rather than overwritten. Nothing is written before every input is checked, and one process at a time
holds a run directory (:mod:`kdlab.runlock`).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from torch import nn

from . import compress  # noqa: F401  (registers the pruned and low-rank architectures: a teacher may be one)
from .batch import slice_rows
from .config import Component, RunConfig, parse_yaml
from .data import DatasetLoader, TensorLoader, build_augment, load_dataset, open_streaming
from .distill import Objective, build_objective, cached_teacher_logits, compile_for_inference, load_teacher
from .distill.cache import disk_teacher_logits
from .distill.teacher import resolve_weights_file
from .errors import ConfigError, KdlabError, describe_os_error
from .io import atomic_write_json, atomic_write_text, check_output_dir
from .losses import LOSSES, ResponseLoss
from .losses import build as build_loss
from .models import build_model, count_params, load_model_weights
from .models.complexity import count_macs_of
from .models.weights import state_dict_mismatch
from .runlock import RunLock, acquire_run_lock
from .train import distributed, evaluate, fit, resolve_device, seed_everything
from .train.checkpoint import remove_stale_temp_files
from .train.device import use_channels_last
from .validate import check_components

log = logging.getLogger("kdlab")

SUMMARY = "summary.json"
CONFIG = "config.yaml"


# builds a training objective other than the config's own: (cfg, student, loss, data, teacher, teacher_logits) -> it
ObjectiveFactory = Callable[[RunConfig, nn.Module, ResponseLoss, Any, nn.Module | None, torch.Tensor | None], Objective]


def run(cfg: RunConfig, out_dir: str | Path, *, progress: bool | None = None,
        teacher_cache_dir: str | Path | None = None,
        on_epoch_end: Callable[[dict[str, Any], nn.Module], None] | None = None,
        identity: Any | None = None, objective: ObjectiveFactory | None = None,
        summary_extra: dict[str, Any] | None = None, wait: bool = False) -> dict[str, Any]:
    """Train (no teacher) or distil (with a teacher) as ``cfg`` says, in ``out_dir``; return the summary.

    Everything is checked before the first byte is written to ``out_dir`` (config, device, data, teacher, student,
    init weights, objective, output location and free space), so a failed command leaves ``out_dir`` as it was. The
    directory is then locked for the run's life (:mod:`kdlab.runlock`): another process on it waits (``wait=True``) or
    gets a :class:`~kdlab.errors.RunLocked` naming its PID. Under the lock the run is checked again (another process
    may have finished it, or claimed it with a different config, meanwhile), stale temp files of a killed earlier
    attempt are removed, and the config is written.

    ``on_epoch_end(record, distiller)`` is called after every epoch's checkpoint (for callbacks and tests).
    A method whose objective is not expressible in a RunConfig (the skeptical student) passes ``objective``, which
    builds it in place of ``build_objective``, and ``identity``, the config object (with ``digest()`` and
    ``to_dict()``) that names the run directory and is written to it; ``summary_extra`` is merged into the summary.
    """
    return run_or_reuse(cfg, out_dir, progress=progress, teacher_cache_dir=teacher_cache_dir,
                        on_epoch_end=on_epoch_end, identity=identity, objective=objective,
                        summary_extra=summary_extra, wait=wait)[0]


def run_or_reuse(cfg: RunConfig, out_dir: str | Path, *, progress: bool | None = None,
                 teacher_cache_dir: str | Path | None = None,
                 on_epoch_end: Callable[[dict[str, Any], nn.Module], None] | None = None,
                 identity: Any | None = None, objective: ObjectiveFactory | None = None,
                 summary_extra: dict[str, Any] | None = None, wait: bool = False) -> tuple[dict[str, Any], bool]:
    """:func:`run`, also saying whether this call trained the run (True) or found it finished (False)."""
    check_components(cfg)
    ranks = distributed.current()
    if cfg.train.batch_size % ranks.world_size:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} is the global batch and must divide evenly over "
                          f"the {ranks.world_size} processes; allowed: a multiple of {ranks.world_size}")
    device = resolve_device(cfg.train.device, ranks.local_rank)  # an unavailable device fails here, before anything
    out_dir = Path(out_dir)
    identity = identity if identity is not None else cfg
    finished = finished_summary(out_dir, identity)  # read-only: a finished run is reused without loading anything
    if finished is not None:
        check_loss_revision(finished, cfg, out_dir)
        log.info("%s is already finished; reusing it", out_dir)
        return finished, False
    check_output_dir(out_dir)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    started = time.perf_counter()

    # data: tensors in memory (TensorLoader), or samples decoded from disk batch by batch (data.streaming)
    d = cfg.data
    if d.streaming:
        data = open_streaming(d.name, data_dir=d.data_dir, val_size=d.val_size, seed=d.seed,
                              train_subset=d.train_subset, **d.options)
    else:
        data = load_dataset(d.name, data_dir=d.data_dir, val_size=d.val_size, seed=d.seed,
                            train_subset=d.train_subset, **d.options)
    augment = build_augment(crop_padding=d.crop_padding, hflip=d.hflip)
    example = data.train.head(2)  # a real batch: feature taps, auxiliary heads and MACs read their shapes from it

    # teacher (frozen) and, when inputs are deterministic, its cached outputs; feature terms read it live instead
    teacher, teacher_logits = None, None
    loss = build_loss(cfg.loss.name, **cfg.loss.options)
    loss.set_schedule(cfg.train.epochs)  # settings given as a fraction of training (DKD warm-up, CTKD curriculum)
    if cfg.teacher is not None and (loss.requires_teacher or cfg.features):
        teacher = load_teacher(cfg.teacher, data.num_classes, data.in_shape).to(device)
        if use_channels_last(cfg.train.channels_last, teacher):
            teacher.to(memory_format=torch.channels_last)
        if cfg.teacher.compile:
            teacher = compile_for_inference(teacher)
        if cfg.teacher.cache and augment is None and not cfg.features:
            for building in (True, False):  # rank 0 builds the cache, the other ranks then read it
                if building == ranks.is_main:
                    teacher_logits = teacher_output_cache(teacher, data, cfg, teacher_cache_dir)
                distributed.barrier()
            if isinstance(teacher_logits, torch.Tensor):
                teacher_logits = teacher_logits.to(device)  # tables (top-k, memory-mapped) stay on the CPU

    # student: initialised right after seeding so every method with this seed starts from the same weights
    torch.manual_seed(cfg.train.seed)
    student = build_model(cfg.model.as_dict(), data.num_classes, data.in_shape)
    if cfg.init is not None:
        init_from(student, cfg.init)
    student.to(device)
    # the objective: a Distiller (response loss + feature terms with adapters) or a scheme's (peers, live teacher,
    # auxiliary heads); taps, shapes and adapters are checked here, before any training
    if objective is not None:
        distiller = objective(cfg, student, loss, data, teacher, teacher_logits)
    else:
        distiller = build_objective(cfg, student, loss, data.num_classes, data.in_shape, example, teacher=teacher,
                                    teacher_logits=teacher_logits)
    distiller.to(device)  # adapters, peers, auxiliary heads

    # under torchrun each rank takes a strided shard with batch_size / world_size samples per step: together they
    # form exactly the single-process batch (both loaders shard alike)
    per_rank = cfg.train.batch_size // ranks.world_size
    if d.streaming:
        train_loader = DatasetLoader(data.train, per_rank, shuffle=True, seed=cfg.train.seed, augment=augment,
                                     rank=ranks.rank, world_size=ranks.world_size, num_workers=d.num_workers)
        val_loader = DatasetLoader(data.val, cfg.train.eval_batch_size, num_workers=d.num_workers)
        test_loader = DatasetLoader(data.test, cfg.train.eval_batch_size, num_workers=d.num_workers)
    else:
        train_loader = TensorLoader(data.train, per_rank, shuffle=True, seed=cfg.train.seed, augment=augment,
                                    rank=ranks.rank, world_size=ranks.world_size)
        val_loader = TensorLoader(data.val, cfg.train.eval_batch_size)
        test_loader = TensorLoader(data.test, cfg.train.eval_batch_size)
    if len(train_loader) == 0:
        raise ConfigError(f"data: the training split of '{data.name}' has no sample for this process "
                          f"({len(data.train)} samples over {ranks.world_size} processes); lower data.val_size or "
                          "raise data.train_subset")
    check_output_dir(out_dir, need_bytes=first_checkpoint_bytes(distiller, student))

    # everything is checked: claim the run directory (rank 0) and hold its lock until the summary is written
    lock, finished = _claim_on_main(out_dir, identity, wait)
    try:
        if finished is not None:
            distiller.close()
            log.info("%s was finished by another process meanwhile; reusing it", out_dir)
            return finished, False
        if ranks.is_main:
            remove_stale_temp_files(out_dir)
        meta = {"dataset": data.name, "config_digest": identity.digest()}
        callback = (lambda record: on_epoch_end(record, distiller)) if on_epoch_end else None
        try:
            result = fit(distiller, train_loader, val_loader, out_dir, train=cfg.train, optim=cfg.optim,
                         schedule=cfg.schedule, metadata=meta, progress=progress, on_epoch_end=callback)
        finally:
            distiller.close()  # forward hooks off the student and teacher, also when training fails

        # test the best-validation student
        load_model_weights(out_dir / "checkpoints" / "best.safetensors", student)
        test = evaluate(student, test_loader)
        summary = {
            "config_digest": identity.digest(),
            "dataset": data.name,
            "model": cfg.model.as_dict(),
            "loss": cfg.loss.as_dict(),
            "loss_revision": loss_revision(cfg),
            "teacher": cfg.teacher.model_dump(mode="json") if cfg.teacher else None,
            "features": [term.model_dump(mode="json") for term in cfg.features],
            "scheme": cfg.scheme.as_dict() if cfg.scheme else None,
            "seed": cfg.train.seed,
            "params": count_params(student),
            "macs": count_macs_of(student, slice_rows(example, 0, 1)),
            "epochs": cfg.train.epochs,
            "best_epoch": result["best_epoch"],
            "best_val_accuracy": result["best_val_accuracy"],
            "test_accuracy": test["accuracy"],
            "test_loss": test["loss"],
            "num_train": len(data.train),
            "seconds": time.perf_counter() - started,
            "weights": str(out_dir / "checkpoints" / "best.safetensors"),
            **(summary_extra or {}),
        }
        if ranks.is_main:
            atomic_write_json(out_dir / SUMMARY, summary)
        distributed.barrier()
        return summary, True
    finally:
        if lock is not None:
            lock.release()


def teacher_output_cache(teacher: nn.Module, data: Any, cfg: RunConfig,
                         cache_dir: str | Path | None) -> Any:
    """The teacher's logits for every training sample: in memory for tensors, memory-mapped from disk for streamed
    data; top-k reduced when ``teacher.cache_topk`` is set (:mod:`kdlab.distill.cache`)."""
    topk = cfg.teacher.cache_topk if cfg.teacher is not None else None
    if cfg.data.streaming:
        return disk_teacher_logits(teacher, data.train, data.train.fingerprint(), cache_dir=cache_dir,
                                   batch_size=cfg.train.eval_batch_size, topk=topk, num_workers=cfg.data.num_workers)
    return cached_teacher_logits(teacher, data.train.x, data.train.fingerprint(), cache_dir=cache_dir,
                                 batch_size=cfg.train.eval_batch_size, topk=topk)


def loss_revision(cfg: RunConfig | Component) -> int:
    """The revision of the loss arithmetic (:attr:`kdlab.losses.ResponseLoss.revision`) of a RunConfig's loss, or of
    a loss given as its Component (a store job's)."""
    loss = cfg.loss if isinstance(cfg, RunConfig) else cfg
    return LOSSES.get(loss.name).revision_for(loss.options)


def check_loss_revision(summary: dict[str, Any], cfg: RunConfig | Component, out_dir: Path) -> None:
    """Refuse to reuse a finished run whose loss was computed by an older revision of kdlab's arithmetic.

    A run's identity is its config; when kdlab changes what a loss computes for the same options (a corrected
    formula, a schedule-scaled default), an old run would otherwise come back under the new meaning. Summaries
    written before revisions existed carry none and count as revision 1.
    """
    loss = cfg.loss if isinstance(cfg, RunConfig) else cfg
    had, now = int(summary.get("loss_revision", 1)), loss_revision(loss)
    if had != now:
        raise ConfigError(
            f"'{out_dir}' holds a finished run of loss '{loss.name}' trained with revision {had} of its "
            f"arithmetic; this kdlab computes revision {now} for the same options (see the loss's docstring and "
            "`revision`), so the run is not reused. Delete that run directory (or point the store elsewhere) to "
            "train it again")


def first_checkpoint_bytes(distiller: nn.Module, student: nn.Module) -> int:
    """A lower bound on what a run writes by its first checkpoint, for the free-space check before claiming.

    bytes(trainable state) x 3 (the epoch's weights plus up to two optimiser moments, Adam's) + bytes(student) x 2
    (best and last weights) + 64 KiB for config, metrics and headers.
    """
    def nbytes(module: nn.Module) -> int:
        return sum(t.numel() * t.element_size() for t in module.state_dict().values() if isinstance(t, torch.Tensor))

    return 3 * nbytes(distiller) + 2 * nbytes(student) + 65536


def _claim_on_main(out_dir: Path, identity: Any, wait: bool) -> tuple[RunLock | None, dict[str, Any] | None]:
    """Rank 0 claims the directory; every rank learns whether the run is to be trained, already finished, or failed
    to claim (only rank 0 holds the error; the others must not hang at the next barrier)."""
    ranks = distributed.current()
    lock, finished, error = None, None, None
    if ranks.is_main:
        try:
            lock, finished = claim_run_dir(out_dir, identity, wait=wait)
        except BaseException as exc:  # re-raised below, after the other ranks heard of it
            error = exc
    status = distributed.all_reduce_sum([2.0 if error is not None else 1.0 if finished is not None else 0.0])[0]
    if error is not None:
        raise error
    if status == 2.0:
        raise KdlabError(f"rank 0 could not claim the run directory '{out_dir}' (see its message)")
    if status == 1.0 and finished is None:
        finished = json.loads((out_dir / SUMMARY).read_text())
    return lock, finished


def finished_summary(out_dir: Path, cfg: Any) -> dict[str, Any] | None:
    """The summary of ``out_dir`` when it holds this exact run, finished; None when it holds no run or this run
    unfinished. Writes nothing.

    ``cfg`` is any config with ``digest()`` and ``to_dict()`` (a RunConfig, or a protect/ run config); a directory
    holding a different (or unreadable) config of that kind is refused rather than overwritten.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out '{out_dir}' is a file, not a run directory; choose another --out")
    config_path = out_dir / CONFIG
    if not config_path.is_file():
        return None
    try:
        existing = parse_yaml(config_path.read_text(encoding="utf-8"), str(config_path)) or {}
        same = type(cfg).model_validate(existing).digest() == cfg.digest()
    except (OSError, ValueError, TypeError, yaml.YAMLError):
        same = False
    if not same:
        raise ConfigError(f"--out '{out_dir}' already holds a run with a different config ({config_path}); "
                          "choose another --out (or delete that directory to start over)")
    summary = out_dir / SUMMARY
    if not summary.is_file():
        return None
    try:
        return json.loads(summary.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"'{summary}' is unreadable ({exc}); delete the run directory '{out_dir}' to train the run "
                          "again") from None


def claim_run_dir(out_dir: Path, cfg: Any, *, wait: bool = False) -> tuple[RunLock | None, dict[str, Any] | None]:
    """Lock ``out_dir`` and, under the lock, return ``(None, summary)`` if this run finished there, else write the
    config and return ``(lock, None)`` with the lock held (release it when the run ends).

    On any failure the lock is released and, when this call created the directory, the directory is removed again,
    so a failed claim leaves nothing behind.
    """
    try:
        lock = acquire_run_lock(out_dir, wait=wait)
    except OSError as exc:
        raise ConfigError(f"--out '{out_dir}' cannot be claimed: {describe_os_error(exc)}") from None
    try:
        finished = finished_summary(out_dir, cfg)
        if finished is None and not (out_dir / CONFIG).is_file():
            atomic_write_text(out_dir / CONFIG, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    except BaseException:
        lock.abandon()
        raise
    if finished is not None:
        lock.release()
        return None, finished
    return lock, None


def init_from(model: nn.Module, source: str) -> None:
    """Start ``model`` from the weights in ``source`` (a .safetensors file or a run directory)."""
    path = resolve_weights_file(source)
    if not path.is_file():
        raise ConfigError(f"init='{source}' is neither a .safetensors file nor a finished kdlab run directory")
    try:
        load_model_weights(path, model)
    except RuntimeError as exc:
        raise ConfigError(f"init='{source}' does not fit model ({state_dict_mismatch(exc)}); start from weights of "
                          "the same architecture") from None
    except ConfigError as exc:
        raise ConfigError(f"init='{source}': {exc}") from None
