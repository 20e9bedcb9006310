"""Studies: recipes that compose data, models, distillation and analysis into one experiment grid each."""

from ..registry import Registry
from .baseline import run_baseline

STUDIES = Registry("study")
STUDIES.register("baseline")(run_baseline)

__all__ = ["STUDIES", "run_baseline"]
