"""Content-addressed run store: every trained model lives under a key of its full config.

``RunStore(root).run(cfg)`` returns the summary of the run with that exact config: reused when it finished before,
resumed when it was interrupted, trained otherwise. Studies share teachers and baselines through it for free.

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

import logging
from pathlib import Path
from typing import Any

from .config import RunConfig
from .recipe import SUMMARY, run_or_reuse

log = logging.getLogger("kdlab")


class RunStore:
    """Runs keyed by ``RunConfig.digest()`` under ``root/<digest[:16]>``."""

    def __init__(self, root: str | Path, teacher_cache_dir: str | Path | None = None) -> None:
        self.root = Path(root)
        self.teacher_cache_dir = teacher_cache_dir
        self.trained = 0
        self.reused = 0

    def path(self, cfg: RunConfig) -> Path:
        return self.root / cfg.digest()[:16]

    def is_finished(self, cfg: RunConfig) -> bool:
        return (self.path(cfg) / SUMMARY).is_file()

    def run(self, cfg: RunConfig, progress: bool | None = None) -> dict[str, Any]:
        """The run's summary (plus ``run_dir``): reused, resumed or trained; waits while another process trains it.

        ``trained`` / ``reused`` count what this call did: a run another process finished while this one waited
        counts as reused.
        """
        summary, trained = run_or_reuse(cfg, self.path(cfg), progress=progress,
                                        teacher_cache_dir=self.teacher_cache_dir, wait=True)
        if trained:
            self.trained += 1
        else:
            self.reused += 1
        return {**summary, "run_dir": str(self.path(cfg))}
