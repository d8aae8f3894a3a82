"""The report's pieces: SVG plots, slice PNGs, the page (self-contained, escaped)."""

import base64
import io
import math

import torch
from PIL import Image

from lidplug.report import Example, Report, Series, line_plot, render_report, slice_png


def test_line_plot_skips_bad_points_and_escapes_labels():
    svg = line_plot([Series("a<b", [0.125, 1, 8, float("nan")], [0.1, 0.5, 0.9, 1.0]),
                     Series("empty", [], [])],
                    title="FROC & co", xlabel="FP", ylabel="s", xlog2=True,
                    xlim=(0.125, 8), ylim=(0, 1))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "a&lt;b" in svg and "FROC &amp; co" in svg
    assert svg.count("<polyline") == 1  # the empty series draws no line
    assert ">0.125<" in svg and ">8<" in svg


def test_line_plot_log_axis_ignores_non_positive_values():
    svg = line_plot([Series("loss", [1, 2, 3], [1e-3, 0.0, 1e-4])], title="t", xlabel="x",
                    ylabel="y", ylog=True)
    points = svg.split('points="')[1].split('"')[0].split()
    assert len(points) == 2


def test_slice_png_is_a_decodable_png_with_boxes():
    hu = torch.full((32, 32), 40.0)
    uri = slice_png(hu, truth=torch.tensor([[4.0, 4.0, 12.0, 12.0]]),
                    detected=torch.tensor([[16.0, 16.0, 24.0, 24.0], [1.0, 1.0, 3.0, 3.0]]),
                    scores=torch.tensor([0.9, 0.1]), scale=2)
    assert uri.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")
    assert image.size == (64, 64)
    assert image.getpixel((7, 12)) == (0, 200, 0)          # truth box edge, green
    assert image.getpixel((32, 40)) == (255, 60, 60)       # the 0.9 detection, red
    assert image.getpixel((3, 3)) == image.getpixel((50, 5))  # the 0.1 one is not drawn


def test_render_report_is_self_contained():
    metric = {"mean": 1.0, "low": 0.5, "high": 1.5}
    metrics = {"baseline": {"psnr": metric, "ssim": metric, "rmse_hu": metric,
                            "map50": metric, "cpm": metric,
                            "froc_sensitivity": {"0.125": metric, "8": metric}}}
    png = slice_png(torch.zeros(8, 8))
    html = render_report(Report(
        title="t <x>", summary=["s & s"], metrics=metrics,
        froc_curves={"baseline": ([0.0, 1.0], [0.0, math.nan])},
        losses={"loss": [Series("pixel", [1, 2], [0.1, 0.05])]},
        examples=[Example("slice 0", [("low", png)])], config={"a": 1}))
    assert html.startswith("<!DOCTYPE html>") and "t &lt;x&gt;" in html and "s &amp; s" in html
    assert "Sens. @0.125 FP" in html and "1.000<br><small>[0.500, 1.500]" in html
    assert "<script" not in html and "src='http" not in html
    assert html.count("<svg") == 2
