"""What a chain of runs (born-again generations, a TAKD chain) needs from a run store.

``kdlab.store.RunStore`` implements it. distill sits below the store in kdlab's layers, so a chain names this
interface and is handed a store; it never imports one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from ..config import RunConfig


class RunStoreProtocol(Protocol):
    """Where a config's run lives, and its summary: trained, resumed or reused, keyed by the config."""

    def path(self, cfg: RunConfig) -> Path:
        """The run directory of ``cfg`` (known before the run exists, so a chain can name its teachers)."""
        ...

    def run(self, cfg: RunConfig, progress: bool | None = None) -> dict[str, Any]:
        """The summary of the finished run of ``cfg``, training or resuming it first when needed."""
        ...
