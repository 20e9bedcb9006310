"""The study registry: ``@STUDIES.register("name")`` on a study's entry point.

The entry point has the signature ``run(config=None, out=..., preset=None, overrides=None, progress=None) -> dict``
and writes ``results.json`` (docs/results_schema.md), ``report.md`` and ``report.html`` into ``out``.
"""

from ..registry import Registry

STUDIES = Registry("study")
