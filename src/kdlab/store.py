"""Content-addressed run store: every trained model lives under a key of its full config.

``RunStore(root).run(cfg)`` returns the summary of the run with that exact config: reused when it finished before,
resumed when it was interrupted, trained otherwise. Studies share teachers and baselines through it for free.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .config import RunConfig
from .recipe import SUMMARY, run

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
        finished = self.is_finished(cfg)
        summary = run(cfg, self.path(cfg), progress=progress, teacher_cache_dir=self.teacher_cache_dir)
        if finished:
            self.reused += 1
        else:
            self.trained += 1
        return {**summary, "run_dir": str(self.path(cfg))}
