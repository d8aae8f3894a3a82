"""The experiment report: one self-contained HTML file (inline CSS, PNG data URIs, inline SVG).

Nothing is fetched when the page opens (no server, no network, no script), so it can be mailed,
archived with the run, or opened straight from disk.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from lidplug.report.svg import Series, line_plot

__all__ = ["ARM_LABELS", "Example", "Report", "render_report", "write_report"]

#: Display names of the arms (unknown arms are shown by key).
ARM_LABELS = {
    "low_dose": "Low-dose input",
    "baseline": "Baseline (pixel loss)",
    "lidnet": "LIDnet (lesion-aware)",
    "normal_dose": "Normal dose",
}
_IMAGE_METRICS = (("psnr", "PSNR (dB)", 2), ("ssim", "SSIM", 4), ("rmse_hu", "RMSE (HU)", 1))
_DETECTION_METRICS = (("map50", "mAP@0.5", 3), ("cpm", "CPM", 3))

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td small { color: #666; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; text-align: center; } figcaption { font-size: 0.85em; }
.note { color: #555; font-size: 0.9em; } code { background: #f4f4f4; padding: 0 3px; }
.swatch { display: inline-block; width: 12px; height: 12px; vertical-align: middle; }
"""


@dataclass
class Example:
    """One example slice across arms: ``panels`` are ``(caption, PNG data URI)``."""

    title: str
    panels: Sequence[tuple[str, str]]


@dataclass
class Report:
    """Everything the page shows.

    Attributes:
        title: page heading.
        summary: paragraphs (plain text) under the heading.
        metrics: arm -> metrics (``metrics.json`` structure: each ``{"mean", "low", "high"}``).
        froc_curves: arm -> ``(fp_per_image, sensitivity)`` points.
        losses: plot title -> the series to draw (log-scale y).
        examples: example slices.
        config: the run's configuration (shown as JSON).
        notes: extra paragraphs at the end.
    """

    title: str
    summary: Sequence[str] = ()
    metrics: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    froc_curves: Mapping[str, tuple[Sequence[float], Sequence[float]]] = field(
        default_factory=dict)
    losses: Mapping[str, Sequence[Series]] = field(default_factory=dict)
    examples: Sequence[Example] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    notes: Sequence[str] = ()


def _label(arm: str) -> str:
    return ARM_LABELS.get(arm, arm)


def _cell(value: Mapping[str, float] | None, digits: int) -> str:
    if not value:
        return "<td>&ndash;</td>"
    return (f"<td>{value['mean']:.{digits}f}<br><small>[{value['low']:.{digits}f}, "
            f"{value['high']:.{digits}f}]</small></td>")


def _metrics_table(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    rates = []
    for m in metrics.values():
        for rate in m.get("froc_sensitivity", {}):
            if rate not in rates:
                rates.append(rate)
    columns = ([(k, label, d, None) for k, label, d in _IMAGE_METRICS]
               + [(k, label, d, None) for k, label, d in _DETECTION_METRICS]
               + [("froc_sensitivity", f"Sens. @{r} FP", 3, r) for r in rates])
    head = "".join(f"<th>{escape(label)}</th>" for _, label, _, _ in columns)
    rows = []
    for arm, m in metrics.items():
        cells = "".join(_cell(m.get(k, {}).get(r) if r else m.get(k), d)
                        for k, _, d, r in columns)
        rows.append(f"<tr><td>{escape(_label(arm))}</td>{cells}</tr>")
    return (f"<table><thead><tr><th>Arm</th>{head}</tr></thead><tbody>{''.join(rows)}"
            f"</tbody></table><p class='note'>Mean over held-out slices, 95% bootstrap interval "
            f"in brackets. Image metrics against the normal-dose slice (HU window -1024..3072); "
            f"detection: the same detector on each arm's images.</p>")


def render_report(report: Report) -> str:
    """The report as an HTML string."""
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             f"<title>{escape(report.title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{escape(report.title)}</h1>"]
    parts += [f"<p>{escape(p)}</p>" for p in report.summary]
    if report.metrics:
        parts += ["<h2>Metrics</h2>", _metrics_table(report.metrics)]
    if report.examples:
        parts.append("<h2>Example slices</h2><p class='note'>Soft-tissue window (W400/L40). "
                     "<span class='swatch' style='background:#00c800'></span> ground-truth "
                     "lesion boxes, <span class='swatch' style='background:#ff3c3c'></span> "
                     "detections with score &ge; 0.5.</p>")
        for ex in report.examples:
            figs = "".join(f"<figure><img src='{uri}' alt='{escape(cap)}'>"
                           f"<figcaption>{escape(cap)}</figcaption></figure>"
                           for cap, uri in ex.panels)
            parts.append(f"<h3>{escape(ex.title)}</h3><div class='figures'>{figs}</div>")
    plots = []
    if report.froc_curves:
        series = [Series(_label(arm), xs, ys, step=True)
                  for arm, (xs, ys) in report.froc_curves.items()]
        plots.append(line_plot(series, title="FROC", xlabel="false positives per image",
                               ylabel="sensitivity", xlog2=True, xlim=(0.125, 8.0),
                               ylim=(0.0, 1.0)))
    for title, series in report.losses.items():
        plots.append(line_plot(series, title=title, xlabel="step", ylabel="loss", ylog=True))
    if plots:
        parts += ["<h2>Curves</h2>", f"<div class='figures'>{''.join(plots)}</div>"]
    parts += [f"<p class='note'>{escape(p)}</p>" for p in report.notes]
    if report.config:
        parts += ["<h2>Configuration</h2>",
                  f"<pre>{escape(json.dumps(report.config, indent=1, default=str))}</pre>"]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(report: Report, path: str | os.PathLike) -> Path:
    """Write :func:`render_report` to ``path`` (UTF-8); returns the path."""
    path = Path(path)
    path.write_text(render_report(report), encoding="utf-8")
    return path
