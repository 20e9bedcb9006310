"""Reports: results as data first (JSON), then PNG plots, then report.md / report.html."""

from .document import Report
from .plots import bar_chart, line_chart, save_figure

__all__ = ["Report", "bar_chart", "line_chart", "save_figure"]
