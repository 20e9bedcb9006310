"""Where a run's per-epoch metrics go besides ``metrics.jsonl``: ``train.log: [jsonl, csv, tensorboard]``.

``metrics.jsonl`` is always written (a resumed run reads its history back from it); ``jsonl`` in the list says so
explicitly. Every sink gets the same record per epoch (:func:`kdlab.train.loop.epoch_record`): the learning rate,
training loss and accuracy, each named loss part, validation loss and accuracy, and the epoch's training seconds.

- ``csv``: ``metrics.csv``, one row per epoch, columns in order of first appearance; rewritten atomically with
  ``metrics.jsonl`` at every checkpoint, so both always hold the same epochs.
- ``tensorboard``: event files in ``<run>/tensorboard`` through ``torch.utils.tensorboard`` (needs the optional
  ``tensorboard`` package: ``pip install 'kdlab[tensorboard]'``), one scalar per key and epoch, written as each
  epoch ends (tags ``train/loss``, ``train/<part>``, ``val/accuracy``, ``lr``, ``epoch_seconds``). A resumed run
  purges events after its last checkpoint, so an epoch that was logged but not checkpointed before a crash is not
  shown twice.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Protocol, Sequence

from ..extras import require
from ..io import atomic_write_text

CSV_FILE = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"


class MetricLog(Protocol):
    """A sink for per-epoch records."""

    def epoch_end(self, record: dict[str, Any]) -> None:
        """One epoch's record, as the epoch ends (before it is checkpointed)."""

    def checkpoint(self, history: list[dict[str, Any]]) -> None:
        """Every record up to the checkpoint just written."""

    def close(self) -> None:
        """Flush and release files."""


class CsvLog:
    """``metrics.csv`` beside ``metrics.jsonl``, rewritten from the history at each checkpoint."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / CSV_FILE

    def epoch_end(self, record: dict[str, Any]) -> None:
        """Nothing until the checkpoint: the file always holds checkpointed epochs only."""

    def checkpoint(self, history: list[dict[str, Any]]) -> None:
        columns = list(dict.fromkeys(key for record in history for key in record))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows({key: "" if value is None else value for key, value in record.items()}
                         for record in history)
        atomic_write_text(self.path, buffer.getvalue())

    def close(self) -> None:
        """Nothing held open."""


def tensorboard_tag(key: str) -> str:
    """``train_loss`` -> ``train/loss``, ``val_accuracy`` -> ``val/accuracy``; other keys unchanged."""
    for prefix in ("train_", "val_"):
        if key.startswith(prefix):
            return f"{prefix[:-1]}/{key[len(prefix):]}"
    return key


class TensorBoardLog:
    """Scalars per epoch in ``<run>/tensorboard`` (the global step is the 1-based epoch)."""

    def __init__(self, run_dir: Path, epochs_done: int) -> None:
        # lazily, on purpose: tensorboard is an optional extra, and only runs that ask for it import it
        writer_module = require("torch.utils.tensorboard", "train.log: [tensorboard]", package="tensorboard")
        self.writer = writer_module.SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR),
                                                  purge_step=epochs_done + 1 if epochs_done else None)

    def epoch_end(self, record: dict[str, Any]) -> None:
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(tensorboard_tag(key), value, global_step=record["epoch"])
        self.writer.flush()

    def checkpoint(self, history: list[dict[str, Any]]) -> None:
        """Scalars were written as each epoch ended."""

    def close(self) -> None:
        self.writer.close()



def open_metric_logs(kinds: Sequence[str], run_dir: Path, epochs_done: int) -> list[MetricLog]:
    """The sinks ``kinds`` asks for besides ``metrics.jsonl`` (always written by the loop itself)."""
    logs: list[MetricLog] = []
    if "csv" in kinds:
        logs.append(CsvLog(run_dir))
    if "tensorboard" in kinds:
        logs.append(TensorBoardLog(run_dir, epochs_done))
    return logs
