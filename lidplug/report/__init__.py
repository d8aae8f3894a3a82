"""The run's report: one self-contained HTML page (no server, no network, no script).

* :func:`build_report`: the :class:`Report` of an evaluated run (what ``lidplug evaluate``
  writes as ``report.html``); :func:`write_report` / :func:`render_report`: the page.
* :func:`findings` / :func:`headroom`: what was shown and what was not, in sentences.
* :func:`slice_png`, :func:`panel_png`, :func:`diverging`: slices, crops and difference maps as
  PNG data URIs; :func:`line_plot` / :class:`Series`, :func:`colour_bar`: inline SVG.
"""

from lidplug.report.build import build_report
from lidplug.report.html import Report, Section, render_report, write_report
from lidplug.report.images import Box, crop_origin, diverging, gray, panel_png, slice_png
from lidplug.report.summary import MIN_HEADROOM, Finding, Headroom, findings, headroom
from lidplug.report.svg import Series, colour_bar, line_plot

__all__ = ["MIN_HEADROOM", "Box", "Finding", "Headroom", "Report", "Section", "Series",
           "build_report", "colour_bar", "crop_origin", "diverging", "findings", "gray",
           "headroom", "line_plot", "panel_png", "render_report", "slice_png", "write_report"]
