"""Loss settings that depend on the student's schedule: given as a fraction of training or as epochs, never both.

A paper's "20 epochs of warm-up" was tuned for its 240-epoch recipe; on a 30-epoch student the same 20 epochs
are two thirds of training. kdlab therefore states such settings as ``<name>_fraction`` (of the student's
``train.epochs``, the default) and accepts ``<name>_epochs`` when a user wants the paper's literal count. The
fraction becomes epochs once the loss knows the run's length (``ResponseLoss.set_schedule``).
"""

from __future__ import annotations

from ..errors import ConfigError
from .checks import check_int, check_unit_interval


def check_span(loss: str, name: str, fraction: float | None, epochs: int | None,
               default_fraction: float) -> tuple[float | None, int | None]:
    """Validate a schedule setting: ``(<name>_fraction, <name>_epochs)`` with exactly one of them set.

    Neither given -> ``(default_fraction, None)``; both given -> ConfigError. A fraction lies in [0, 1], epochs
    are an integer >= 0.
    """
    if fraction is not None and epochs is not None:
        raise ConfigError(f"loss '{loss}': give {name}_fraction (of the student's epochs) or {name}_epochs, "
                          f"not both (got {name}_fraction={fraction!r}, {name}_epochs={epochs!r})")
    if epochs is not None:
        return None, check_int(loss, f"{name}_epochs", epochs, minimum=0)
    if fraction is None:
        return default_fraction, None
    return check_unit_interval(loss, f"{name}_fraction", fraction), None


def span_in_epochs(loss: str, name: str, fraction: float | None, epochs: int | None,
                   total_epochs: int | None) -> float:
    """The setting's length in (possibly fractional) epochs: ``epochs``, or ``fraction * total_epochs``.

    Raises RuntimeError when only a fraction is known and the loss was never told the run's length.
    """
    if epochs is not None:
        return float(epochs)
    assert fraction is not None
    if total_epochs is None:
        raise RuntimeError(f"loss '{loss}': {name}_fraction={fraction!r} is a fraction of the student's epochs, "
                           "but the loss was never told how many: call set_schedule(epochs) before set_epoch "
                           "(kdlab.recipe.run does)")
    return fraction * total_epochs
