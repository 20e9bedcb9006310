"""Studies: recipes that compose data, models, distillation and analysis into one experiment grid each.

Each module in this package registers its entry point with ``@STUDIES.register("name")``; the entry point has the
signature ``run(config=None, out=..., preset=None, overrides=None, progress=None) -> dict`` and writes
``results.json`` (docs/results_schema.md), ``report.md`` and ``report.html`` into ``out``. Modules are discovered
here, so adding a study is adding one file.
"""

import importlib
import pkgutil

from ..registry import Registry

STUDIES = Registry("study")

_HELPERS = {"common", "stats", "store"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _HELPERS and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

from .baseline import run_baseline  # noqa: E402
from .capacity import run_capacity  # noqa: E402

__all__ = ["STUDIES", "run_baseline", "run_capacity"]
