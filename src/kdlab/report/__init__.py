"""Reports: results as data first (JSON), then PNG figures drawn from declared specs, then report.md / report.html.

``Report`` is the document (headings, paragraphs, tables, figures, claims); ``draw_figure`` draws a figure spec
(:mod:`kdlab.report.figures`); ``format`` writes statistics and model names as text.
"""

from .document import Report
from .figures import draw_figure
from .plots import save_figure

__all__ = ["Report", "draw_figure", "save_figure"]
