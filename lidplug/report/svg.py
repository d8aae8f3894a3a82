"""Inline SVG plots for the HTML report (no plotting library: a few lines of SVG suffice).

Why hand-written: the report needs lines (FROC, losses), points (per-lesion scatter) and a colour
bar, as text inside one HTML file; matplotlib would be a large dependency for that.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["PALETTE", "Series", "colour_bar", "line_plot"]

#: Colours of successive series (colour-blind safe, Okabe-Ito).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 12, 30, 46
_CHAR = 6.3  # mean glyph width of 11 px text, to size the legend


@dataclass
class Series:
    """One series: its legend label, points, colour (None: next of :data:`PALETTE`) and style.

    Attributes:
        step: draw a staircase (a FROC curve) rather than straight segments.
        markers: draw the points (a scatter), not a line; each series gets its own shape.
        dashed: a dashed line.
    """

    label: str
    x: Sequence[float]
    y: Sequence[float]
    color: str | None = None
    step: bool = False
    markers: bool = False
    dashed: bool = False


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + k * step, 12) for k in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.0e}"


def _axis_ticks(lo: float, hi: float, log_base: float | None) -> list[tuple[float, str]]:
    """Tick positions in axis units and their labels; on a log axis, one per power of the base."""
    if log_base is None:
        return [(t, _fmt(t).replace("-", "\u2212")) for t in _ticks(lo, hi)]
    return [(float(k), _fmt(log_base**k)) for k in range(math.ceil(lo), math.floor(hi) + 1)]


def _simplify(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Drop points a polyline does not need: repeats and the middle of straight horizontal or
    vertical runs (a FROC staircase over thousands of detections keeps only its corners)."""
    out: list[tuple[float, float]] = []
    for p in points:
        if out and p == out[-1]:
            continue
        if len(out) >= 2 and ((out[-2][0] == out[-1][0] == p[0])
                              or (out[-2][1] == out[-1][1] == p[1])):
            out[-1] = p
        else:
            out.append(p)
    return out


def _marker(shape: int, x: float, y: float, color: str, r: float = 3.2) -> str:
    style = f'fill="{color}" fill-opacity="0.45" stroke="{color}" stroke-width="1"'
    shape %= 5
    if shape == 0:
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" {style}/>'
    if shape == 1:
        return (f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r}" height="{2 * r}" '
                f'{style}/>')
    corners = {2: ((0, -1.2), (1.1, 0.8), (-1.1, 0.8)),
               3: ((0, -1.3), (1.3, 0), (0, 1.3), (-1.3, 0)),
               4: ((0, 1.2), (1.1, -0.8), (-1.1, -0.8))}[shape]
    pts = " ".join(f"{x + dx * r:.1f},{y + dy * r:.1f}" for dx, dy in corners)
    return f'<polygon points="{pts}" {style}/>'


def line_plot(series: Sequence[Series], *, title: str, xlabel: str, ylabel: str,
              xlog2: bool = False, xlim: tuple[float, float] | None = None,
              ylim: tuple[float, float] | None = None, ylog: bool = False,
              width: int = 440, height: int = 300,
              hlines: Sequence[tuple[float, str]] = ()) -> str:
    """An ``<svg>`` element with axes, ticks, the series and a legend to the right of the plot.

    Args:
        series: lines or point sets (one without a label has no legend entry); non-finite points (and non-positive ones on a log axis)
            are skipped; points outside ``xlim``/``ylim`` are drawn on the border.
        title, xlabel, ylabel: text (also the SVG's accessible name: the title).
        xlog2: base-2 logarithmic x axis (FROC's 1/8 .. 8 FP per image).
        xlim, ylim: axis ranges; default the data's.
        ylog: base-10 logarithmic y axis (losses).
        width, height: size of the plot area with its axes, without the legend.
        hlines: ``(y, label)`` dashed reference lines (``(1.0, "perfect")``).
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
    if not xlim and any(s.markers for s in series):
        # Markers on the frame would hide half of themselves: a margin of 4% each side.
        pad = 0.04 * (x1 - x0)
        x0, x1 = x0 - pad, x1 + pad
    if ylog and not ylim:
        # Whole decades, so a log axis always carries at least two labelled ticks.
        y0, y1 = math.floor(y0), max(math.ceil(y1), math.floor(y0) + 1)
    if x1 <= x0:
        x0, x1 = x0 - 0.5, x0 + 0.5
    if y1 <= y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pw, ph = width - _LEFT - _RIGHT, height - _TOP - _BOTTOM
    legend_w = int(max((len(s.label) for s in series), default=0) * _CHAR) + 34

    def px(v: float) -> float:
        return _LEFT + (min(max(v, x0), x1) - x0) / (x1 - x0) * pw

    def py(v: float) -> float:
        return _TOP + ph - (min(max(v, y0), y1) - y0) / (y1 - y0) * ph

    total = width + legend_w
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {total} {height}" '
           f'width="{total}" height="{height}" role="img" aria-label="{escape(title)}" '
           'class="plot" font-family="system-ui, sans-serif">',
           f'<title>{escape(title)}</title>',
           f'<text x="{_LEFT + pw / 2}" y="18" text-anchor="middle" font-size="13" '
           f'font-weight="600">{escape(title)}</text>',
           f'<rect x="{_LEFT}" y="{_TOP}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for t, label in _axis_ticks(x0, x1, 2.0 if xlog2 else None):
        out.append(f'<line x1="{px(t):.1f}" y1="{_TOP + ph}" x2="{px(t):.1f}" y2="{_TOP}" '
                   f'stroke="#eee"/><text x="{px(t):.1f}" y="{_TOP + ph + 15}" font-size="11" '
                   f'text-anchor="middle">{label}</text>')
    for t, label in _axis_ticks(y0, y1, 10.0 if ylog else None):
        out.append(f'<line x1="{_LEFT}" y1="{py(t):.1f}" x2="{_LEFT + pw}" y2="{py(t):.1f}" '
                   f'stroke="#eee"/><text x="{_LEFT - 5}" y="{py(t) + 4:.1f}" font-size="11" '
                   f'text-anchor="end">{label}</text>')
    for value, label in hlines:
        if ok(1.0, value) and y0 <= fy(value) <= y1:
            y = py(fy(value))
            out.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_LEFT + pw}" y2="{y:.1f}" '
                       f'stroke="#555" stroke-dasharray="5 3"/><text x="{_LEFT + pw - 4}" '
                       f'y="{y - 4:.1f}" font-size="10" text-anchor="end" fill="#555">'
                       f'{escape(label)}</text>')
    out.append(f'<text x="{_LEFT + pw / 2}" y="{height - 8}" text-anchor="middle" '
               f'font-size="12">{escape(xlabel)}</text>')
    out.append(f'<text x="14" y="{_TOP + ph / 2}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 14 {_TOP + ph / 2})">{escape(ylabel)}</text>')
    lx, row = width + 4, 0
    for k, (s, pts) in enumerate(zip(series, points, strict=True)):
        color = s.color or PALETTE[k % len(PALETTE)]
        ly = _TOP + 8 + 17 * row
        row += bool(s.label)
        if s.markers:
            out += [_marker(k, px(x), py(y), color) for x, y in pts]
            if s.label:
                out.append(_marker(k, lx + 10, ly - 4, color, r=4))
        else:
            drawn = []
            for i, (x, y) in enumerate(pts):
                if s.step and i:
                    drawn.append((round(px(x), 1), round(py(pts[i - 1][1]), 1)))
                drawn.append((round(px(x), 1), round(py(y), 1)))
            coords = [f"{x:.1f},{y:.1f}" for x, y in _simplify(drawn)]
            dash = ' stroke-dasharray="6 3"' if s.dashed else ""
            if len(pts) == 1:  # a line of one point would not show
                out.append(f'<circle cx="{px(pts[0][0]):.1f}" cy="{py(pts[0][1]):.1f}" r="2.5" '
                           f'fill="{color}"/>')
            elif coords:
                out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8"{dash} '
                           f'points="{" ".join(coords)}"/>')
            if s.label:
                out.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 20}" y2="{ly - 4}" '
                           f'stroke="{color}" stroke-width="2.5"{dash}/>')
        if s.label:
            out.append(f'<text x="{lx + 25}" y="{ly}" font-size="11">{escape(s.label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def colour_bar(colors: Sequence[tuple[int, int, int]], limit: float, label: str, *,
               width: int = 260) -> str:
    """A horizontal colour bar from ``-limit`` to ``+limit`` (``colors`` evenly spaced), at
    least as wide as its label (11 px text: about 6 px per character)."""
    width = max(width, 6 * len(label) + 20)
    # A stable id (the page must not change between runs of the same data): the bar's content.
    grad = f"cb{zlib.crc32(repr((tuple(colors), limit, label)).encode()):08x}"
    stops = "".join(f'<stop offset="{k / (len(colors) - 1):.3f}" stop-color="rgb{tuple(c)}"/>'
                    for k, c in enumerate(colors))
    bar_w, left = width - 40, 20
    ticks = []
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        value = -limit + 2 * limit * frac
        x = left + frac * bar_w
        text = _fmt(round(value, 6)).replace("-", "\u2212")
        ticks.append(f'<line x1="{x:.1f}" y1="30" x2="{x:.1f}" y2="34" stroke="#333"/>'
                     f'<text x="{x:.1f}" y="46" font-size="11" text-anchor="middle">'
                     f'{"+" if value > 0 else ""}{text}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} 66" width="{width}" '
            f'height="66" role="img" aria-label="{escape(label)}" class="colourbar" '
            'font-family="system-ui, sans-serif">'
            f'<title>{escape(label)}</title>'
            f'<defs><linearGradient id="{grad}">{stops}</linearGradient></defs>'
            f'<text x="{width / 2}" y="12" font-size="11" text-anchor="middle">'
            f'{escape(label)}</text>'
            f'<rect x="{left}" y="16" width="{bar_w}" height="14" fill="url(#{grad})" '
            f'stroke="#999"/>{"".join(ticks)}</svg>')
