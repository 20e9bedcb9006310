"""Feature taps: read the output of any submodule of any ``nn.Module`` with forward hooks.

A *tap* is either the name of a kdlab model's tap (``model.feature_taps``, e.g. ``"stage2"``, ``"pre_logits"``) or
a raw module path as ``named_modules`` spells it (``"layer3.1.conv2"``, ``"0"``, ``"features.3"``), so feature and
relation distillation work on kdlab models and on a user's own networks alike.

>>> with FeatureTaps(model, ["stage2", "pre_logits"]) as taps:     # doctest: +SKIP
...     logits = model(x)
...     hint = taps.features["stage2"]                             # [N, C, H, W], still attached to the graph
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from ..errors import ConfigError
from ..registry import did_you_mean

# an error message lists at most this many module paths; a ResNet has hundreds
_MAX_LISTED = 25


def _named_taps(model: nn.Module) -> dict[str, str]:
    """tap name -> module path for a kdlab model (or anything with a ``feature_taps`` dict), else {}."""
    taps = getattr(model, "feature_taps", None)
    return dict(taps) if isinstance(taps, dict) else {}


def resolve_tap(model: nn.Module, tap: str) -> str:
    """The module path of ``tap`` inside ``model``.

    A name in ``model.feature_taps`` (kdlab models) wins and maps to its path; anything else must be an existing module
    path (``model.get_submodule(tap)`` succeeds). Otherwise ConfigError, with a did-you-mean over the tap names and the
    module paths, and the allowed names.
    """
    named = _named_taps(model)
    if not isinstance(tap, str) or not tap:
        raise ConfigError(f"feature tap={tap!r} is not allowed; must be a non-empty string: a tap name "
                          f"({', '.join(named) or 'this model has none'}) or a module path")
    if tap in named:
        return named[tap]
    paths = [path for path, _ in model.named_modules() if path]
    if tap in paths:
        return tap
    listed = paths[:_MAX_LISTED] + ([f"... ({len(paths) - _MAX_LISTED} more, see model.named_modules())"]
                                    if len(paths) > _MAX_LISTED else [])
    allowed = (f"tap names: {', '.join(named)}; or module paths: " if named else "module paths: ")
    raise ConfigError(
        f"unknown feature tap '{tap}' for {type(model).__name__}.{did_you_mean(tap, list(named) + paths)} "
        f"Allowed {allowed}{', '.join(listed) or '(none: the model has no submodules)'}"
    )


def first_tensor(output: Any) -> Tensor | None:
    """``output`` if it is a tensor; the first tensor of a tuple/list (depth first) or of a dict's values; else None.

    Modules such as ``nn.LSTM`` or ``nn.MultiheadAttention`` return tuples whose first element is the main output,
    which is the feature worth distilling.
    """
    if isinstance(output, Tensor):
        return output
    items = output.values() if isinstance(output, dict) else output if isinstance(output, (tuple, list)) else ()
    for item in items:
        found = first_tensor(item)
        if found is not None:
            return found
    return None


class FeatureTaps:
    """Capture the outputs of the modules behind ``taps`` during every forward pass of ``model``.

    ``features[tap]`` holds the output of the tap's module from the *last* forward pass (a module called twice per
    forward, e.g. a shared block, keeps its second output). For modules returning a tuple, list or dict the first
    tensor is kept (see :func:`first_tensor`).

    Captured tensors are not detached: a student's features keep their autograd graph, so a feature loss trains the
    student through them. Under ``torch.inference_mode()`` (how a frozen teacher runs) they are inference tensors; the
    kdlab feature losses clone such a teacher feature before use, because inference tensors cannot be saved for
    backward. A module whose output is later modified in place (``nn.ReLU(inplace=True)`` right after it) would change
    the captured tensor too: tap the in-place module itself in that case (kdlab models use no in-place ops at taps).

    Every tap is resolved (:func:`resolve_tap`) before any hook is added, so a bad tap leaves the model untouched.
    ``remove()`` (also run on leaving a ``with`` block, even on an exception) removes every hook this object added and
    nothing else; it is idempotent.
    """

    def __init__(self, model: nn.Module, taps: Sequence[str]) -> None:
        if isinstance(taps, str) or not isinstance(taps, Sequence):
            raise ConfigError(f"taps={taps!r} is not allowed; must be a list of tap names or module paths")
        duplicates = sorted({tap for tap in taps if list(taps).count(tap) > 1})
        if duplicates:
            raise ConfigError(f"taps={list(taps)!r} is not allowed; each tap at most once (repeated: "
                              f"{', '.join(duplicates)})")
        self.model = model
        self.paths: dict[str, str] = {tap: resolve_tap(model, tap) for tap in taps}
        self.features: dict[str, Tensor] = {}
        self._handles: list[RemovableHandle] = []
        for tap, path in self.paths.items():
            module = model.get_submodule(path)
            self._handles.append(module.register_forward_hook(self._hook(tap, path)))

    def _hook(self, tap: str, path: str):  # noqa: ANN202  (a closure per tap: it must know which tap fired)
        def capture(module: nn.Module, args: Any, output: Any) -> None:
            tensor = first_tensor(output)
            if tensor is None:
                raise ValueError(f"feature tap '{tap}' (module '{path}', {type(module).__name__}) returned "
                                 f"{type(output).__name__}, which holds no tensor; pick another tap")
            self.features[tap] = tensor

        return capture

    def __getitem__(self, tap: str) -> Tensor:
        try:
            return self.features[tap]
        except KeyError:
            if tap not in self.paths:
                raise KeyError(f"'{tap}' is not one of these taps: {', '.join(self.paths)}") from None
            raise KeyError(f"tap '{tap}' (module '{self.paths[tap]}') has no output yet: run a forward pass "
                           f"that goes through it") from None

    def clear(self) -> None:
        """Forget the captured features (the hooks stay); frees the graph they keep alive between steps."""
        self.features.clear()

    def remove(self) -> None:
        """Remove every hook this object added; calling it again does nothing."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @property
    def active(self) -> bool:
        """True while the hooks are installed."""
        return bool(self._handles)

    def __enter__(self) -> FeatureTaps:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        # never swallows the exception: returning None lets it propagate after the hooks are gone
        self.remove()

    def __repr__(self) -> str:
        return f"FeatureTaps({type(self.model).__name__}, {self.paths}, active={self.active})"
