"""The page: one self-contained HTML file (inline CSS, PNG data URIs, inline SVG).

Nothing is fetched when the page opens (no server, no network, no script), so it can be mailed,
archived with the run, or opened straight from disk. :class:`Report` holds finished sections;
the modules that build them (:mod:`lidplug.report.build`) use the small helpers here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

__all__ = ["Report", "Section", "badge", "details", "figure", "render_report", "write_report"]

_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1180px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.55em; margin-bottom: 0.2em; } .subtitle { color: #555; margin-top: 0; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; font-size: 1.25em; }
h3 { font-size: 1.02em; margin: 1.1em 0 0.4em; }
nav { font-size: 0.9em; color: #555; } nav a { margin-right: 0.9em; color: #0b5394; }
.overview { font-size: 1.05em; margin: 0.6em 0 0.2em; }
ul.findings { margin: 0.2em 0 0.8em; padding-left: 1.2em; } ul.findings li { margin: 0.25em 0; }
.badge { display: inline-block; padding: 0 0.45em; border-radius: 3px; font-size: 0.8em;
         font-weight: 600; white-space: nowrap; }
.better { background: #d7efd9; color: #135e1c; } .worse { background: #f7d7d5; color: #8a1c14; }
.ns { background: #ececec; color: #444; } .na { background: #fff; color: #666;
                                              border: 1px solid #ccc; }
.warn { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.4em 0.7em; }
.headroom { border-left: 4px solid #7aa6d8; padding: 0.4em 0.7em; background: #f1f6fc; }
.headroom.warn { border-left-color: #e0a800; background: #fff4d6; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #d4d4d4; padding: 3px 7px; text-align: right; vertical-align: top; }
th { background: #f5f5f5; font-weight: 600; vertical-align: bottom; }
th:first-child, td:first-child { text-align: left; }
td small { color: #666; white-space: nowrap; } tr.diff td { background: #fafafa; }
tr.sep td { border-top: 2px solid #999; }
td.secondary, th.secondary { color: #777; background: #fbfbfb; font-style: italic; }
.figures { display: flex; flex-wrap: wrap; gap: 10px 12px; align-items: flex-start; }
.row { display: flex; gap: 8px; align-items: flex-start; }
figure { margin: 0; text-align: center; } figure img { display: block; margin: 0 auto; }
figcaption { font-size: 0.8em; line-height: 1.3; margin-top: 2px; }
.note { color: #555; font-size: 0.88em; } code, pre { background: #f4f4f4; }
code { padding: 0 3px; } pre { padding: 0.6em; overflow-x: auto; font-size: 0.82em; }
.swatch { display: inline-block; width: 11px; height: 11px; vertical-align: -1px;
          margin: 0 3px 0 8px; border: 1px solid #888; }
.outline { border-radius: 50%; background: none; border: 2px solid; }
details { margin: 0.6em 0; } summary { cursor: pointer; font-weight: 600; }
img { image-rendering: pixelated; }
"""


@dataclass
class Section:
    """One ``<h2>`` section of the page.

    Attributes:
        id: its anchor (``#id``), also listed in the page's table of contents.
        title: its heading (plain text).
        body: its content (HTML, already escaped where it holds user text).
    """

    id: str
    title: str
    body: str


@dataclass
class Report:
    """Everything the page shows, in order.

    Attributes:
        title: page heading (plain text).
        subtitle: one line under the heading (plain text).
        sections: the sections, in page order.
    """

    title: str
    subtitle: str = ""
    sections: Sequence[Section] = field(default_factory=list)


_BADGES = {"better": ("better", "better, shown"), "worse": ("worse", "worse, shown"),
           "not shown": ("ns", "not shown"), "too few to tell": ("na", "too few to tell"),
           "not computed": ("na", "not computed")}


def badge(verdict: str, text: str | None = None) -> str:
    """A coloured tag for a verdict (``"better"``, ``"worse"``, ``"not shown"``, ...)."""
    cls, default = _BADGES.get(verdict, ("na", verdict))
    return f"<span class='badge {cls}'>{escape(text or default)}</span>"


def figure(src: str, alt: str, caption: str = "", *, width: int | None = None) -> str:
    """An ``<img>`` with alt text (plain) and a caption (HTML) in a ``<figure>``."""
    size = f" width='{width}'" if width else ""
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f"<figure><img src='{src}' alt='{escape(alt, quote=True)}'{size}>{cap}</figure>"


def details(summary: str, body: str) -> str:
    """A collapsed block: ``summary`` (plain text) opens ``body`` (HTML)."""
    return f"<details><summary>{escape(summary)}</summary>{body}</details>"


def render_report(report: Report) -> str:
    """The report as an HTML string."""
    nav = "".join(f"<a href='#{escape(s.id)}'>{escape(s.title)}</a>" for s in report.sections)
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             f"<title>{escape(report.title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{escape(report.title)}</h1>"]
    if report.subtitle:
        parts.append(f"<p class='subtitle'>{escape(report.subtitle)}</p>")
    if nav:
        parts.append(f"<nav>{nav}</nav>")
    for s in report.sections:
        parts.append(f"<section id='{escape(s.id)}'><h2>{escape(s.title)}</h2>\n{s.body}"
                     "</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(report: Report, path: str | os.PathLike) -> Path:
    """Write :func:`render_report` to ``path`` (UTF-8); returns the path."""
    path = Path(path)
    path.write_text(render_report(report), encoding="utf-8")
    return path
