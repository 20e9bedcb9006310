"""Studies: recipes that compose data, models, distillation and analysis into one experiment grid each.

Each study module registers its entry point into :data:`kdlab.studies.base.STUDIES`; importing this package
registers them all (adding a study is one file plus its line below).
"""

from . import audit, baseline, capacity, capacity_map, compress, fit, kinds, multiview, nasty, theory, undistillable  # noqa: F401
from .base import STUDIES
from .driver import Study, rerender, run_study

__all__ = ["STUDIES", "Study", "rerender", "run_study"]
