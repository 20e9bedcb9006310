"""The one place a model's output becomes logits, and the one place a model is called on a batch's inputs.

Models from other libraries return more than a tensor: a Hugging Face model returns a ``ModelOutput`` (an ordered
dict that also has attributes: ``.logits``), torchvision's Inception a named tuple, many research models
``(logits, features)``. The Distiller, the schemes, the teacher-output cache, evaluation, feature-tap set-up and the
analysis passes all call :func:`model_logits`, so any of them works with any such model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from ..batch import Inputs


def logits_of(output: Any) -> Tensor:
    """The logits in a model's output.

    A tensor is the logits; a mapping gives its ``"logits"`` entry (a Hugging Face ``ModelOutput`` is one); a tuple or
    list gives its first item; any other object its ``.logits`` attribute. Raises TypeError naming the type otherwise.
    """
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping):
        if "logits" in output:
            return logits_of(output["logits"])
        raise TypeError(f"the model returned a {type(output).__name__} without a 'logits' entry (keys: "
                        f"{', '.join(map(str, output))}); return logits, or a mapping/object with 'logits'")
    if isinstance(output, (tuple, list)) and output:
        return logits_of(output[0])
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    raise TypeError(f"the model returned {type(output).__name__}, which holds no logits: return a tensor, a tuple "
                    "whose first item is the logits, or an object or mapping with 'logits'")


def model_logits(model: nn.Module, inputs: Inputs) -> Tensor:
    """``model``'s logits for a batch: ``model(inputs)`` for a tensor, ``model(**inputs)`` for a mapping of named
    inputs (attention masks, token types), through :func:`logits_of`."""
    output = model(**inputs) if isinstance(inputs, Mapping) else model(inputs)
    return logits_of(output)
