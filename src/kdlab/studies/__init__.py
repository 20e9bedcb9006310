"""Studies: recipes that compose data, models, distillation and analysis into one experiment grid each."""

from ..registry import Registry
from .baseline import run_baseline
from .capacity import run_capacity

STUDIES = Registry("study")
STUDIES.register("baseline")(run_baseline)
STUDIES.register("capacity")(run_capacity)

__all__ = ["STUDIES", "run_baseline", "run_capacity"]
