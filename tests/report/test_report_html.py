"""The report's plots and page shell: SVG plots and colour bar, a self-contained page."""

import torch

from lidplug.report import Report, Section, Series, colour_bar, line_plot, render_report, slice_png
from lidplug.report.html import badge, details, figure
from lidplug.report.images import DIVERGING


def test_line_plot_skips_bad_points_and_escapes_labels():
    svg = line_plot([Series("a<b", [0.125, 1, 8, float("nan")], [0.1, 0.5, 0.9, 1.0]),
                     Series("empty", [], [])],
                    title="FROC & co", xlabel="FP", ylabel="s", xlog2=True,
                    xlim=(0.125, 8), ylim=(0, 1))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "a&lt;b" in svg and "FROC &amp; co" in svg and "<title>FROC &amp; co</title>" in svg
    assert svg.count("<polyline") == 1  # the empty series draws no line
    assert ">0.125<" in svg and ">8<" in svg


def test_line_plot_log_axis_ignores_non_positive_values_and_spans_a_decade():
    svg = line_plot([Series("loss", [1, 2, 3], [3e-3, 0.0, 2e-3])], title="t", xlabel="x",
                    ylabel="y", ylog=True)
    points = svg.split('points="')[1].split('"')[0].split()
    assert len(points) == 2
    assert ">0.001<" in svg and ">0.01<" in svg  # whole decades: labelled ticks


def test_markers_have_a_shape_per_series_and_unlabelled_series_no_legend():
    svg = line_plot([Series("low", [1, 2], [0.5, 0.7], markers=True),
                     Series("arm", [1, 2], [0.6, 0.8], markers=True),
                     Series("", [1, 2], [0.55, 0.75])],
                    title="t", xlabel="x", ylabel="y", hlines=[(1.0, "perfect")],
                    ylim=(0.0, 1.5))
    assert svg.count("<circle") == 3 and svg.count("<rect") == 1 + 3  # frame + 2 + legend
    assert svg.count('font-size="11">low<') == 1 and "perfect" in svg
    assert svg.count("<polyline") == 1 and 'stroke-dasharray="5 3"' in svg


def test_a_line_of_one_point_is_drawn_as_a_dot():
    svg = line_plot([Series("detector step", [3], [1.2])], title="t", xlabel="x", ylabel="y")
    assert "<circle" in svg and "<polyline" not in svg


def test_colour_bar_labels_both_ends_and_is_stable():
    bar = colour_bar(DIVERGING, 100.0, "HU, arm minus truth")
    assert "\u2212100" in bar and "+100" in bar and ">0<" in bar
    assert bar.count("<stop") == len(DIVERGING) and 'role="img"' in bar
    assert bar == colour_bar(DIVERGING, 100.0, "HU, arm minus truth")


def test_render_report_is_self_contained_and_escaped():
    png = slice_png(torch.zeros(8, 8))
    body = (figure(png, "a 'slice' <0>", "cap") + badge("better") + badge("not shown")
            + details("Run <1>", "<pre>x</pre>"))
    html = render_report(Report("t <x>", "sub & sub", [Section("one", "First & only", body)]))
    assert html.startswith("<!DOCTYPE html>") and "t &lt;x&gt;" in html
    assert "sub &amp; sub" in html and "<a href='#one'>First &amp; only</a>" in html
    assert "alt='a &#x27;slice&#x27; &lt;0&gt;'" in html
    assert "badge better'>better, shown" in html and "badge ns'>not shown" in html
    assert "<details><summary>Run &lt;1&gt;</summary>" in html
    assert "<script" not in html and "http" not in html.replace("http-equiv", "")


def test_a_long_staircase_keeps_only_its_corners():
    xs = [k / 100 for k in range(2001)]  # 2000 false positives at one sensitivity, then a hit
    ys = [0.5] * 2000 + [0.6]
    svg = line_plot([Series("froc", xs, ys, step=True)], title="t", xlabel="x", ylabel="y",
                    xlog2=True, xlim=(0.125, 8), ylim=(0, 1))
    points = svg.split('points="')[1].split('"')[0].split()
    assert len(points) <= 4
