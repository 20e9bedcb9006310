"""An epoch's training statistics, summed on the device and read on the host only when asked.

A step only appends its detached values to lists (no arithmetic, no host read). :meth:`EpochTotals.running_loss`
folds the pending steps into device sums with a few kernels and reads one number; :meth:`EpochTotals.read` reads
everything once, at the end of the epoch. On a GPU a host read waits for every queued kernel, so a loop that reads
per step cannot run ahead of the device; this one reads once per refresh.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import Tensor

from ..distill.objective import StepOutput


@dataclass
class EpochStats:
    """Sample means over an epoch: the training loss, the training accuracy and each named loss part."""

    loss: float
    accuracy: float
    parts: dict[str, float]
    seen: int


class EpochTotals:
    """Running sums of the loss, the correct predictions and the loss parts, each weighted by its batch's size."""

    def __init__(self) -> None:
        self.seen = 0  # batch sizes are known on the host: no read needed
        # pending steps, grouped by batch size (one size but the last batch's), folded in by _flush
        self._losses: dict[int, list[Tensor]] = defaultdict(list)
        self._parts: dict[str, dict[int, list[Tensor]]] = defaultdict(lambda: defaultdict(list))
        self._logits: list[Tensor] = []
        self._targets: list[Tensor] = []
        self._loss_sum: Tensor | None = None
        self._correct: Tensor | None = None
        self._part_sums: dict[str, Tensor] = {}

    def add(self, out: StepOutput, y: Tensor) -> None:
        """Record one step's (detached) output for a batch with labels ``y``."""
        n = len(y)
        self.seen += n
        self._losses[n].append(out.loss)
        for key, value in out.parts.items():
            self._parts[key][n].append(value)
        self._logits.append(out.logits)
        self._targets.append(y)

    def running_loss(self) -> float:
        """Sample-mean training loss of the epoch so far (one host read)."""
        self._flush()
        assert self._loss_sum is not None, "no step recorded"
        return self._loss_sum.item() / self.seen

    def read(self) -> EpochStats:
        """Every statistic of the epoch, read from the device in one transfer."""
        self._flush()
        assert self._loss_sum is not None and self._correct is not None, "no step recorded"
        keys = sorted(self._part_sums)
        values = torch.stack([self._loss_sum, self._correct.double(), *(self._part_sums[k] for k in keys)]).tolist()
        return EpochStats(loss=values[0] / self.seen, accuracy=values[1] / self.seen,
                          parts={k: v / self.seen for k, v in zip(keys, values[2:])}, seen=self.seen)

    def _flush(self) -> None:
        if not self._logits:
            return
        self._loss_sum = _add(self._loss_sum, _weighted_sum(self._losses))
        correct = (torch.cat(self._logits).argmax(1) == torch.cat(self._targets)).sum()
        self._correct = _add(self._correct, correct)
        for key, by_size in self._parts.items():
            self._part_sums[key] = _add(self._part_sums.get(key), _weighted_sum(by_size))
        self._losses.clear()
        self._parts.clear()
        self._logits.clear()
        self._targets.clear()


def _weighted_sum(by_size: dict[int, list[Tensor]]) -> Tensor:
    """sum_steps n_step * value_step in float64, from values grouped by their batch size n."""
    return sum(torch.stack(values).double().sum() * n for n, values in by_size.items())  # type: ignore[return-value]


def _add(total: Tensor | None, value: Tensor) -> Tensor:
    return value if total is None else total + value
