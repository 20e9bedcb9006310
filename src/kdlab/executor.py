"""Executors: run a batch of independent RunConfigs through a RunStore, here, on local processes or on a Ray cluster.

A study is a grid of independent runs, so it scales by handing each run to a worker. The store is what makes this
safe: a run's directory is its config digest, a finished run is returned as it is, and an interrupted one resumes
from its last checkpoint. An executor therefore only has to schedule, collect in order and resubmit failures:

- ``local``: one run after another in this process (what studies always did);
- ``pool``: a ``concurrent.futures.ProcessPoolExecutor`` ("spawn" context, so no forked torch/OpenMP state);
- ``ray``: Ray tasks, on an existing cluster given by ``address`` or a local one started for the study.

Jobs (RunConfigs, or :class:`kdlab.store.Job` s) travel pickled, so a worker rebuilds exactly the validated object.
Every worker must see the store at the same path (one machine, or a shared filesystem mounted alike on every node).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Literal

import torch
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from .config import Section
from .errors import ConfigError, KdlabError
from .store import RunStore

log = logging.getLogger("kdlab")

EXECUTORS = ("local", "pool", "ray")


class ExecutorConfig(Section):
    """The ``executor`` key of a study config: where its runs train (see ``make_executor``)."""

    name: Literal["local", "pool", "ray"] = "local"
    workers: int = Field(1, ge=1)
    # a running Ray cluster, e.g. "ray://head:10001" or "auto"; None starts a local one (ray only)
    address: str | None = None

    @model_validator(mode="after")
    def _address_needs_ray(self) -> "ExecutorConfig":
        if self.address is not None and self.name != "ray":
            raise ValueError(f"address='{self.address}' is only used by name=ray, not '{self.name}'")
        return self


def run_task(root: str, teacher_cache_dir: str | None, job: Any, threads: int | None,
             cwd: str | None = None) -> tuple[dict[str, Any], bool]:
    """One run in a worker: run ``job`` (a RunConfig or a store Job) through the store; return (summary, trained here).

    ``threads`` caps torch's intra-op threads so that concurrent workers do not oversubscribe the cores.
    ``cwd`` is the driver's working directory: the store root and teachers' run paths may be relative to it.
    """
    if cwd is not None and os.path.isdir(cwd):
        os.chdir(cwd)
    if threads:
        torch.set_num_threads(threads)
    store = RunStore(root, teacher_cache_dir)
    summary = store.run(job, progress=False)
    return summary, store.trained == 1


class Executor:
    """Runs RunConfigs through a RunStore and returns their summaries in the order given.

    Duplicate configs (same digest) in one batch run once. A failed run is resubmitted up to ``retries`` times; it
    resumes from its last checkpoint because the recipe does. A ``KdlabError`` (bad config, missing data, diverged
    training) is a verdict on the config, not a crash, so it is raised at once. Use as a context manager (or call
    ``close``) so that worker processes or a Ray cluster started here are shut down.
    """

    name = "local"

    def __init__(self, workers: int = 1, retries: int = 1) -> None:
        if workers < 1 or retries < 0:
            raise ConfigError(f"executor workers={workers}, retries={retries} are not allowed; "
                              "allowed: workers >= 1, retries >= 0")
        self.workers = workers
        self.retries = retries

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release workers (nothing to release when running in-process)."""

    def run(self, store: RunStore, cfgs: list[Any], progress: bool | None = None,
            bar: tqdm | None = None, desc: str = "runs") -> list[dict[str, Any]]:
        """Summaries of ``cfgs`` (trained, resumed or reused by ``store``), in order; updates store's counters.

        ``bar``: an existing tqdm bar to advance per finished config, else one is made (off when progress is False).
        """
        digests = [cfg.digest() for cfg in cfgs]
        unique: dict[str, Any] = {}
        for digest, cfg in zip(digests, cfgs):
            unique.setdefault(digest, cfg)
        counts = Counter(digests)
        own_bar = bar is None
        if own_bar:
            bar = tqdm(total=len(cfgs), desc=desc, unit="run", disable=progress is False)

        def done(digest: str) -> None:
            bar.update(counts[digest])

        try:
            results = self._run_unique(store, unique, progress, done)
        finally:
            if own_bar:
                bar.close()
        for digest in unique:
            # counted as the sequential loop would: a duplicate's later occurrences are reuses
            trained = results[digest][1]
            store.trained += int(trained)
            store.reused += counts[digest] - int(trained)
        return [results[digest][0] for digest in digests]

    def _run_unique(self, store: RunStore, cfgs: dict[str, Any], progress: bool | None,
                    done: Callable[[str], None]) -> dict[str, tuple[dict[str, Any], bool]]:
        results = {}
        for digest, cfg in cfgs.items():
            trained_before, reused_before = store.trained, store.reused
            for attempt in range(self.retries + 1):
                try:
                    summary = store.run(cfg, progress=progress)
                    break
                except KdlabError:
                    raise
                except Exception as exc:
                    if attempt == self.retries:
                        raise
                    log.warning("run %s failed (%s: %s); retrying, it resumes from its last checkpoint",
                                store.path(cfg), type(exc).__name__, exc)
            # RunStore.run counted the run already (as trained here, or reused when another process had finished
            # it); undo so that run() counts every executor the same way
            trained = store.trained > trained_before
            store.trained, store.reused = trained_before, reused_before
            results[digest] = (summary, trained)
            done(digest)
        return results


class _RemoteExecutor(Executor):
    """Shared driver of the pool and Ray executors: submit every run, collect as they finish, resubmit failures."""

    def _threads(self) -> int | None:
        return None

    def _submit(self, args: tuple) -> Any:
        raise NotImplementedError

    def _wait(self, handles: list[Any]) -> list[Any]:
        raise NotImplementedError

    def _result(self, handle: Any) -> tuple[dict[str, Any], bool]:
        raise NotImplementedError

    def _run_unique(self, store: RunStore, cfgs: dict[str, Any], progress: bool | None,
                    done: Callable[[str], None]) -> dict[str, tuple[dict[str, Any], bool]]:
        results: dict[str, tuple[dict[str, Any], bool]] = {}
        # finished runs are only read back: no need to start (or wait for) a worker for them
        for digest, cfg in cfgs.items():
            if store.is_finished(cfg):
                results[digest] = (RunStore(store.root, store.teacher_cache_dir).run(cfg, progress=False), False)
                done(digest)
        cache = str(store.teacher_cache_dir) if store.teacher_cache_dir is not None else None
        args = {d: (str(store.root), cache, cfg, self._threads(), os.getcwd())
                for d, cfg in cfgs.items() if d not in results}
        attempts = dict.fromkeys(args, 0)
        pending = {self._submit(a): d for d, a in args.items()}
        while pending:
            for handle in self._wait(list(pending)):
                digest = pending.pop(handle)
                try:
                    results[digest] = self._result(handle)
                except KdlabError:
                    raise
                except Exception as exc:
                    if attempts[digest] >= self.retries:
                        raise
                    attempts[digest] += 1
                    log.warning("run %s failed on a worker (%s: %s); resubmitting, it resumes from its last "
                                "checkpoint", store.path(cfgs[digest]), type(exc).__name__, exc)
                    pending[self._submit(args[digest])] = digest
                    continue
                done(digest)
        return results


class PoolExecutor(_RemoteExecutor):
    """Runs on ``workers`` local processes; each caps torch at cpu_count // workers threads."""

    name = "pool"

    def __init__(self, workers: int = 1, retries: int = 1) -> None:
        super().__init__(workers, retries)
        self._pool: ProcessPoolExecutor | None = None

    def _threads(self) -> int:
        return max(1, (os.cpu_count() or 1) // self.workers)

    def _executor(self) -> ProcessPoolExecutor:
        # made on first use and kept across batches: spawning a worker (and importing torch) costs seconds
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def _submit(self, args: tuple) -> Any:
        try:
            return self._executor().submit(run_task, *args)
        except BrokenProcessPool:
            # a worker died (OOM kill, segfault): that pool takes no more work, so start a fresh one
            self.close()
            return self._executor().submit(run_task, *args)

    def _wait(self, handles: list[Any]) -> list[Any]:
        return list(wait(handles, return_when=FIRST_COMPLETED).done)

    def _result(self, handle: Any) -> tuple[dict[str, Any], bool]:
        return handle.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class RayExecutor(_RemoteExecutor):
    """Runs as Ray tasks of one CPU each, on the cluster at ``address`` or on a local one of ``workers`` CPUs."""

    name = "ray"

    def __init__(self, workers: int = 1, retries: int = 1, address: str | None = None) -> None:
        super().__init__(workers, retries)
        self.address = address
        self._ray: Any = None
        self._task: Any = None
        self._started = False

    def _connect(self) -> Any:
        if self._ray is None:
            try:
                import ray  # lazily: an optional dependency (the 'ray' extra)
            except ImportError:
                raise ConfigError("executor.name=ray needs Ray, which is not installed; "
                                  "install it with: pip install 'kdlab[ray]'") from None
            if not ray.is_initialized():
                if self.address is None:
                    ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False)
                else:
                    ray.init(address=self.address, log_to_driver=False)
                self._started = True
            # max_retries=0: resubmission is this executor's, so every executor retries the same way
            self._task = ray.remote(num_cpus=1, max_retries=0)(run_task)
            self._ray = ray
        return self._ray

    def _threads(self) -> int:
        return 1  # each task reserves one CPU of the cluster

    def _submit(self, args: tuple) -> Any:
        self._connect()
        return self._task.remote(*args)

    def _wait(self, handles: list[Any]) -> list[Any]:
        ready, _ = self._ray.wait(handles, num_returns=1)
        return ready

    def _result(self, handle: Any) -> tuple[dict[str, Any], bool]:
        return self._ray.get(handle)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
        self._ray, self._task, self._started = None, None, False


def make_executor(name: str = "local", workers: int = 1, address: str | None = None, retries: int = 1) -> Executor:
    """An executor by name: ``local`` (in-process, sequential), ``pool`` (local processes) or ``ray``."""
    if name == "local":
        return Executor(workers, retries)
    if name == "pool":
        return PoolExecutor(workers, retries)
    if name == "ray":
        return RayExecutor(workers, retries, address)
    raise ConfigError(f"executor '{name}' is not allowed. Allowed: {', '.join(EXECUTORS)}")


def executor_from_config(cfg: ExecutorConfig) -> Executor:
    """The executor a study config's ``executor`` section asks for."""
    return make_executor(cfg.name, cfg.workers, cfg.address)
