"""Slices, crops and difference maps as PNGs: crop placement, outlines, the diverging scale."""

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from lidplug.report.images import (
    DIVERGING,
    TRUTH_COLOR,
    Box,
    crop_origin,
    diverging,
    gray,
    outline,
    panel_png,
    slice_png,
)


def _decode(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")


def test_crop_origin_centres_and_stays_inside_the_slice():
    assert crop_origin((32.0, 32.0), 24, (64, 64)) == (20, 20)
    assert crop_origin((2.0, 63.0), 24, (64, 64)) == (0, 40)    # shifted, never padded
    assert crop_origin((10.0, 10.0), 64, (64, 64)) == (0, 0)
    with pytest.raises(ValueError, match="expected 1 <= size <= 64, got 65"):
        crop_origin((10.0, 10.0), 65, (64, 64))


def test_diverging_scale_ends_and_zero():
    rgb = diverging(np.array([[0.0, 100.0, -250.0, np.nan]]), limit=100.0)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 4, 3)
    assert tuple(rgb[0, 0]) == DIVERGING[5]      # 0: the near-white middle
    assert tuple(rgb[0, 1]) == DIVERGING[-1]     # +limit: dark red
    assert tuple(rgb[0, 2]) == DIVERGING[0]      # beyond -limit: the blue end
    assert tuple(rgb[0, 3]) == DIVERGING[5]      # NaN: drawn as 0
    half = diverging(np.array([[50.0]]), 100.0)[0, 0]
    assert half[0] > half[2]                     # positive is red
    with pytest.raises(ValueError, match="limit > 0, got 0"):
        diverging(np.zeros((2, 2)), 0)


def test_gray_windows_hu_and_checks_the_window():
    g = gray(torch.tensor([[-1000.0, 40.0, 1000.0]]), (-160.0, 240.0))
    assert g.shape == (1, 3, 3) and list(g[0, :, 0]) == [0, 128, 255]
    with pytest.raises(ValueError, match="hi > lo"):
        gray(torch.zeros(2, 2), (10.0, 10.0))


def test_outline_lies_just_outside_the_mask():
    mask = np.zeros((4, 4), dtype=bool)
    mask[1:3, 1:3] = True
    band = outline(mask, scale=3, width=1)
    up = np.kron(mask, np.ones((3, 3), dtype=bool))
    assert band.shape == (12, 12) and not (band & up).any()
    assert band[2, 3:9].all() and not band[0].any()


def test_panel_png_draws_outline_and_boxes_after_upscaling():
    rgb = gray(torch.full((8, 8), 40.0))
    mask = np.zeros((8, 8), dtype=bool)
    mask[3:5, 3:5] = True
    image = _decode(panel_png(rgb, 6, outlines=[(mask, TRUTH_COLOR)],
                              boxes=[Box((0, 0, 2, 2), (230, 159, 0), 2)]))
    assert image.size == (48, 48)
    assert image.getpixel((17, 20)) == TRUTH_COLOR          # just left of the lesion
    assert image.getpixel((20, 20)) == (128, 128, 128)      # the lesion itself stays unpainted
    assert image.getpixel((0, 5)) == (230, 159, 0)          # the box's edge
    assert image.getpixel((6, 6)) == (128, 128, 128)        # inside the box


def test_slice_png_is_a_decodable_png_with_boxes():
    hu = torch.full((32, 32), 40.0)
    uri = slice_png(hu, truth=torch.tensor([[4.0, 4.0, 12.0, 12.0]]),
                    detected=torch.tensor([[16.0, 16.0, 24.0, 24.0], [1.0, 1.0, 3.0, 3.0]]),
                    scores=torch.tensor([0.9, 0.1]), scale=2)
    image = _decode(uri)
    assert image.size == (64, 64)
    assert image.getpixel((7, 12)) == (0, 200, 0)          # truth box edge, green
    assert image.getpixel((32, 40)) == (255, 60, 60)       # the 0.9 detection, red
    assert image.getpixel((3, 3)) == image.getpixel((50, 5))  # the 0.1 one is not drawn
