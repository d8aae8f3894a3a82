"""Inline SVG line plots for the HTML report (no plotting library: a few lines of SVG suffice).

Why hand-written: the report needs two kinds of plot (FROC curves, loss curves) as text that
lives inside one HTML file; matplotlib would be a large dependency for that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["PALETTE", "Series", "line_plot"]

#: Colours of successive series (colour-blind safe, Okabe-Ito).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")

_W, _H = 440, 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 16, 30, 46


@dataclass
class Series:
    """One line: its legend label, points and colour (None: next of :data:`PALETTE`)."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    color: str | None = None
    step: bool = False


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.0e}"


def _axis_ticks(lo: float, hi: float, log_base: float | None) -> list[tuple[float, str]]:
    """Tick positions in axis units and their labels; on a log axis, one per power of the base."""
    if log_base is None:
        return [(t, _fmt(t)) for t in _ticks(lo, hi)]
    return [(float(k), _fmt(log_base**k)) for k in range(math.ceil(lo), math.floor(hi) + 1)]


def line_plot(series: Sequence[Series], *, title: str, xlabel: str, ylabel: str,
              xlog2: bool = False, xlim: tuple[float, float] | None = None,
              ylim: tuple[float, float] | None = None, ylog: bool = False) -> str:
    """An ``<svg>`` element with axes, ticks, one polyline per series and a legend.

    Args:
        series: the lines; non-finite points (and non-positive ones on a log axis) are skipped.
        title, xlabel, ylabel: text.
        xlog2: base-2 logarithmic x axis (FROC's 1/8 .. 8 FP per image).
        xlim, ylim: axis ranges; default the data's.
        ylog: base-10 logarithmic y axis (losses).
    """
    def fx(v: float) -> float:
        return math.log2(v) if xlog2 else v

    def fy(v: float) -> float:
        return math.log10(v) if ylog else v

    def ok(x: float, y: float) -> bool:
        return (math.isfinite(x) and math.isfinite(y) and (x > 0 or not xlog2)
                and (y > 0 or not ylog))

    points = [[(fx(x), fy(y)) for x, y in zip(s.x, s.y, strict=True) if ok(x, y)]
              for s in series]
    xs = [p[0] for pts in points for p in pts] or [0.0, 1.0]
    ys = [p[1] for pts in points for p in pts] or [0.0, 1.0]
    x0, x1 = (fx(xlim[0]), fx(xlim[1])) if xlim else (min(xs), max(xs))
    y0, y1 = (fy(ylim[0]), fy(ylim[1])) if ylim else (min(ys), max(ys))
    if x1 <= x0:
        x1 = x0 + 1.0
    if y1 <= y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pw, ph = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def px(v: float) -> float:
        return _LEFT + (min(max(v, x0), x1) - x0) / (x1 - x0) * pw

    def py(v: float) -> float:
        return _TOP + ph - (min(max(v, y0), y1) - y0) / (y1 - y0) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" width="{_W}" '
           f'height="{_H}" role="img" aria-label="{escape(title)}" class="plot">',
           f'<text x="{_W / 2}" y="18" text-anchor="middle" font-size="14">{escape(title)}</text>',
           f'<rect x="{_LEFT}" y="{_TOP}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for t, label in _axis_ticks(x0, x1, 2.0 if xlog2 else None):
        out.append(f'<line x1="{px(t):.1f}" y1="{_TOP + ph}" x2="{px(t):.1f}" y2="{_TOP}" '
                   f'stroke="#eee"/><text x="{px(t):.1f}" y="{_TOP + ph + 15}" font-size="11" '
                   f'text-anchor="middle">{label}</text>')
    for t, label in _axis_ticks(y0, y1, 10.0 if ylog else None):
        out.append(f'<line x1="{_LEFT}" y1="{py(t):.1f}" x2="{_LEFT + pw}" y2="{py(t):.1f}" '
                   f'stroke="#eee"/><text x="{_LEFT - 5}" y="{py(t) + 4:.1f}" font-size="11" '
                   f'text-anchor="end">{label}</text>')
    out.append(f'<text x="{_LEFT + pw / 2}" y="{_H - 8}" text-anchor="middle" '
               f'font-size="12">{escape(xlabel)}</text>')
    out.append(f'<text x="14" y="{_TOP + ph / 2}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 14 {_TOP + ph / 2})">{escape(ylabel)}</text>')
    for k, (s, pts) in enumerate(zip(series, points, strict=True)):
        color = s.color or PALETTE[k % len(PALETTE)]
        coords = []
        for i, (x, y) in enumerate(pts):
            if s.step and i:
                coords.append(f"{px(x):.1f},{py(pts[i - 1][1]):.1f}")
            coords.append(f"{px(x):.1f},{py(y):.1f}")
        if coords:
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8" '
                       f'points="{" ".join(coords)}"/>')
        ly = _TOP + 14 + 16 * k
        out.append(f'<line x1="{_LEFT + 10}" y1="{ly - 4}" x2="{_LEFT + 30}" y2="{ly - 4}" '
                   f'stroke="{color}" stroke-width="2.5"/><text x="{_LEFT + 35}" y="{ly}" '
                   f'font-size="11">{escape(s.label)}</text>')
    out.append("</svg>")
    return "\n".join(out)
