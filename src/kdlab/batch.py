"""The batch contract: what every loader yields and every model is called with.

A batch is ``(inputs, targets, index)``:

- ``inputs``: a tensor ``[N, ...]``, or a mapping of names to tensors ``[N, ...]`` that is passed to the model as
  keyword arguments (``model(**inputs)``: a Hugging Face model's ``input_ids``, ``attention_mask``,
  ``token_type_ids``, ``pixel_values``);
- ``targets``: int64 class labels ``[N]``;
- ``index``: int64 positions of the samples in their dataset ``[N]`` (the key of the teacher-output cache), or absent.

:func:`split_batch` also reads the shapes other libraries produce: a ``(inputs, targets)`` pair (a ``TensorDataset``
through a ``DataLoader``) and a mapping with a ``labels`` (or ``label``) entry and optional ``index`` entry (a
Hugging Face ``datasets`` row collated by a ``DataLoader``), whose other entries are the inputs.

Everything that touches inputs goes through this module (moving to a device, batch size, row selection), so a dict of
tensors works wherever a tensor does: in the loop, the teacher-output cache, evaluation and DDP sharding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union

import torch
from torch import Tensor

Inputs = Union[Tensor, Mapping[str, Tensor]]

LABEL_KEYS = ("labels", "label")


def split_batch(batch: Any) -> tuple[Inputs, Tensor, Tensor | None]:
    """``(inputs, targets, index or None)`` of one batch in any of the shapes of the module docstring.

    Raises TypeError naming what was received when the batch has none of those shapes.
    """
    if isinstance(batch, Mapping):
        label_key = next((key for key in LABEL_KEYS if key in batch), None)
        if label_key is None:
            raise TypeError(f"a batch given as a mapping needs a 'labels' (or 'label') entry with the class labels; "
                            f"got keys {sorted(batch)}")
        inputs = {key: value for key, value in batch.items() if key not in (label_key, "index")}
        return inputs, batch[label_key], batch.get("index")
    if isinstance(batch, Sequence) and not isinstance(batch, (str, bytes)) and len(batch) in (2, 3):
        return batch[0], batch[1], batch[2] if len(batch) == 3 else None
    raise TypeError(f"a batch must be (inputs, targets[, index]) or a mapping with 'labels'; got "
                    f"{type(batch).__name__}{f' of length {len(batch)}' if isinstance(batch, Sequence) else ''}")


def batch_len(inputs: Inputs) -> int:
    """The number of samples N of a batch's inputs (the first dimension; every entry of a mapping shares it)."""
    if isinstance(inputs, Tensor):
        return int(inputs.shape[0])
    sizes = {name: int(value.shape[0]) for name, value in inputs.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"the entries of a batch's inputs have different batch sizes: {sizes}")
    return next(iter(sizes.values()), 0)


def inputs_to(inputs: Inputs, device: torch.device | str, non_blocking: bool = False) -> Inputs:
    """``inputs`` on ``device`` (each entry of a mapping)."""
    if isinstance(inputs, Tensor):
        return inputs.to(device, non_blocking=non_blocking)
    return {name: value.to(device, non_blocking=non_blocking) for name, value in inputs.items()}


def take_rows(inputs: Inputs, index: Tensor) -> Inputs:
    """Rows ``index`` (positions along the first dimension) of the inputs."""
    if isinstance(inputs, Tensor):
        return inputs.index_select(0, index)
    return {name: value.index_select(0, index) for name, value in inputs.items()}


def slice_rows(inputs: Inputs, start: int, stop: int) -> Inputs:
    """Rows ``start:stop`` of the inputs (views, no copy)."""
    if isinstance(inputs, Tensor):
        return inputs[start:stop]
    return {name: value[start:stop] for name, value in inputs.items()}


def stack_samples(samples: Sequence[Inputs]) -> Inputs:
    """One batch from single samples (tensors without the batch dimension, or mappings of them)."""
    first = samples[0]
    if isinstance(first, Tensor):
        return torch.stack(list(samples))  # type: ignore[arg-type]
    return {name: torch.stack([sample[name] for sample in samples]) for name in first}  # type: ignore[index]
