"""Self-contained HTML reports of experiments: metrics table, example slices, FROC and loss curves.

* :class:`Report` / :func:`write_report`: the page (no server, no network, no script).
* :func:`slice_png`: a CT slice with lesion boxes as a PNG data URI.
* :func:`line_plot` / :class:`Series`: inline SVG line plots.
"""

from lidplug.report.html import ARM_LABELS, Example, Report, render_report, write_report
from lidplug.report.images import slice_png
from lidplug.report.svg import Series, line_plot

__all__ = ["ARM_LABELS", "Example", "Report", "Series", "line_plot", "render_report",
           "slice_png", "write_report"]
