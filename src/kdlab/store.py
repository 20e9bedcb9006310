"""Content-addressed run store: every trained model lives under a key of its full config.

``RunStore(root).run(job)`` returns the summary of the run with that exact identity: reused when it finished before,
resumed when it was interrupted, trained otherwise. Studies share teachers and baselines through it for free.

A *job* is a :class:`~kdlab.config.RunConfig` (trained by :func:`kdlab.recipe.run`) or any :class:`Job`: a config
for a model that a RunConfig cannot describe (a compressed model fine-tuned, a network fitted on synthetic data, a
skeptical student), which trains itself in the directory it is given. Both kinds are keyed, locked, reused and
resumed the same way, so the executors work the same for every trained thing.

Several studies (processes, or machines on a shared filesystem) may use one store at once. Each run directory is
locked while a process trains it (:mod:`kdlab.runlock`, an ``fcntl.flock`` held for the run's life and released by the
kernel when the process dies). A second user of the same run waits for the lock instead of training the run again,
then finds it finished and reuses it; a run whose trainer died is resumed by the next user from its last checkpoint.

On a local filesystem this is exact: a run is trained once, whatever the number of concurrent studies. On NFS it
holds when ``flock`` reaches the server: Linux clients since 2.6.12 turn it into a whole-file POSIX lock (NLM for
NFSv2/v3, built into NFSv4), unless the export is mounted with ``nolock`` or ``local_lock=flock|all``, where locks are
per machine: two machines can then train the same run at once (no torn files, since every file is renamed into
place, but duplicated work, and the files of whichever writer renamed last). See :mod:`kdlab.runlock` for the details.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, ClassVar

from .config import Component, RunConfig, Section
from .recipe import SUMMARY, check_loss_revision, claim_run_dir, run_or_reuse
from .train.checkpoint import remove_stale_temp_files

log = logging.getLogger("kdlab")


class Job(Section):
    """A trained thing that is not a plain RunConfig: its fields are its identity; :meth:`train` trains it.

    Subclasses set ``kind`` (part of the digest, so two job types never share a directory) and implement
    ``train(out_dir, progress=..., teacher_cache_dir=...)``; :meth:`run_or_reuse` gives it what every run gets from
    :func:`kdlab.recipe.run`: the directory locked for the run's life (another user waits, then reuses it), a
    finished run returned as it is, a directory holding another job refused, a killed attempt's temp files removed,
    and, for a job that trains a response loss (:meth:`trained_loss`), a finished run of another revision of that
    loss's arithmetic refused (its summary records ``loss_revision``, as :func:`kdlab.compress.finetune.finetune`
    writes it). ``train`` must resume an interrupted run from the checkpoints it finds. Jobs travel to executor workers
    pickled, so their class must be importable by module path.
    """

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """The job as plain JSON-able data."""
        return self.model_dump(mode="json")

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of ``{"job": kind, **fields}``: the job's identity."""
        if not self.kind:
            raise TypeError(f"{type(self).__name__} must set the class attribute 'kind'")
        payload = {"job": self.kind, **self.to_dict()}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def check(self) -> None:
        """Raise ConfigError (naming the key, the value and what is allowed) when the job cannot run; called on every
        planned job before anything trains. Fields are already validated by their types."""

    def trained_loss(self) -> Component | None:
        """The response loss this job trains with, whose revision its summary records; None (the default) for a job
        that trains none."""
        return None

    def run_or_reuse(self, out_dir: Path, *, progress: bool | None = None,
                     teacher_cache_dir: str | Path | None = None) -> tuple[dict[str, Any], bool]:
        """The job's summary in ``out_dir`` and whether this call trained it (False: it was finished there)."""
        out_dir = Path(out_dir)
        lock, finished = claim_run_dir(out_dir, self, wait=True)
        if finished is not None:
            loss = self.trained_loss()
            if loss is not None:
                check_loss_revision(finished, loss, out_dir)
            return finished, False
        try:
            remove_stale_temp_files(out_dir)  # of a killed earlier attempt
            return self.train(out_dir, progress=progress, teacher_cache_dir=teacher_cache_dir), True
        finally:
            lock.release()

    def train(self, out_dir: Path, *, progress: bool | None = None,
              teacher_cache_dir: str | Path | None = None) -> dict[str, Any]:
        """Train the job in ``out_dir`` (resuming what is there) and return its summary; subclasses implement it."""
        raise NotImplementedError


class RunStore:
    """Runs keyed by their digest (``RunConfig.digest()`` or ``Job.digest()``) under ``root/<digest[:16]>``."""

    def __init__(self, root: str | Path, teacher_cache_dir: str | Path | None = None) -> None:
        self.root = Path(root)
        self.teacher_cache_dir = teacher_cache_dir
        self.trained = 0
        self.reused = 0

    def path(self, job: Any) -> Path:
        """The directory of ``job`` in the store: ``root/<digest[:16]>``."""
        return self.root / job.digest()[:16]

    def is_finished(self, job: Any) -> bool:
        """Whether ``job`` has a summary in the store."""
        return (self.path(job) / SUMMARY).is_file()

    def run(self, job: Any, progress: bool | None = None) -> dict[str, Any]:
        """The summary (plus ``run_dir``) of ``job``, a RunConfig or a :class:`Job` (anything with ``digest``,
        ``to_dict`` and ``run_or_reuse``): reused, resumed or trained; waits while another process trains it.

        ``trained`` / ``reused`` count what this call did: a run another process finished while this one waited
        counts as reused.
        """
        if isinstance(job, RunConfig):
            summary, trained = run_or_reuse(job, self.path(job), progress=progress,
                                            teacher_cache_dir=self.teacher_cache_dir, wait=True)
        else:
            summary, trained = job.run_or_reuse(self.path(job), progress=progress,
                                                teacher_cache_dir=self.teacher_cache_dir)
        if trained:
            self.trained += 1
        else:
            self.reused += 1
        return {**summary, "run_dir": str(self.path(job))}
