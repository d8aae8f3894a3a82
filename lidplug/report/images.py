"""CT slices, crops and difference maps as PNG data URIs (for a self-contained HTML page).

Pixels are upscaled by whole factors with nearest neighbour, so every CT pixel stays a visible
square and nothing is smoothed that the reader should judge. Overlays are drawn after
upscaling: lesion outlines just *outside* the lesion's pixels (the lesion itself stays
unpainted), detections as rectangles in one colour per observer.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import Tensor

from lidplug.data.transforms import SOFT_TISSUE_HU

__all__ = ["DETECTED_COLOR", "DIVERGING", "OBSERVER_COLORS", "TRUTH_COLOR", "Box",
           "crop_origin", "diverging", "gray", "outline", "overview_png", "panel_png",
           "slice_png"]

TRUTH_COLOR = (0, 200, 0)
DETECTED_COLOR = (255, 60, 60)
#: One colour per observer (Okabe-Ito orange, reddish purple, sky blue, yellow): none of them
#: is the truth's green, and the truth is an outline while detections are rectangles.
OBSERVER_COLORS = ((230, 159, 0), (204, 121, 167), (86, 180, 233), (240, 228, 66))
#: Diverging scale from -1 (blue) through 0 (near white) to +1 (red): ColorBrewer RdBu, reversed.
DIVERGING = ((5, 48, 97), (33, 102, 172), (67, 147, 195), (146, 197, 222), (209, 229, 240),
             (247, 247, 247), (253, 219, 199), (244, 165, 130), (214, 96, 77), (178, 24, 43),
             (103, 0, 31))


def _array(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(x.shape[-2:])


def gray(hu: Tensor | np.ndarray, window: tuple[float, float] = SOFT_TISSUE_HU) -> np.ndarray:
    """``uint8[H, W, 3]``: a slice (``[H, W]`` or ``[1, H, W]`` HU) on a display window."""
    lo, hi = window
    if not hi > lo:
        raise ValueError(f"gray: expected a window (lo, hi) with hi > lo, got {window!r}")
    level = np.clip((_array(hu) - lo) / (hi - lo), 0.0, 1.0)
    g = np.round(level * 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def diverging(values: Tensor | np.ndarray, limit: float) -> np.ndarray:
    """``uint8[H, W, 3]``: ``values`` on the :data:`DIVERGING` scale, ``+-limit`` at its ends.

    Values beyond ``+-limit`` take the end colours; NaN is drawn as 0.
    """
    if not limit > 0:
        raise ValueError(f"diverging: expected limit > 0, got {limit!r}")
    t = np.clip(np.nan_to_num(_array(values)) / limit, -1.0, 1.0)
    # Piecewise linear between the anchors, evenly spaced on [-1, 1].
    pos = (t + 1.0) / 2.0 * (len(DIVERGING) - 1)
    k = np.minimum(np.floor(pos).astype(np.int64), len(DIVERGING) - 2)
    frac = (pos - k)[..., None]
    anchors = np.asarray(DIVERGING, dtype=np.float64)
    rgb = anchors[k] * (1.0 - frac) + anchors[k + 1] * frac
    return np.round(rgb).astype(np.uint8)


def outline(mask: Tensor | np.ndarray, scale: int, width: int = 2) -> np.ndarray:
    """``bool[H*scale, W*scale]``: a band ``width`` pixels wide just outside the upscaled mask."""
    m = torch.as_tensor(np.asarray(mask, dtype=bool))
    up = m.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    grown = F.max_pool2d(up[None, None].float(), 2 * width + 1, stride=1, padding=width)[0, 0]
    return (grown.bool() & ~up).numpy()


def crop_origin(centre: tuple[float, float], size: int, shape: tuple[int, int]
                ) -> tuple[int, int]:
    """``(top, left)`` of a ``size`` x ``size`` crop centred on ``(row, col)``, kept inside an
    image of ``shape`` (shifted at the borders, never padded)."""
    h, w = shape
    if size > min(h, w) or size < 1:
        raise ValueError(f"crop_origin: expected 1 <= size <= {min(h, w)}, got {size}")
    top = round(centre[0] - size / 2)
    left = round(centre[1] - size / 2)
    return min(max(top, 0), h - size), min(max(left, 0), w - size)


@dataclass(frozen=True)
class Box:
    """A rectangle on a panel: ``xyxy`` in the panel's source pixels (pixel-edge coordinates)."""

    xyxy: Sequence[float]
    color: tuple[int, int, int]
    width: int = 2


def panel_png(rgb: np.ndarray, scale: int = 1, *,
              outlines: Sequence[tuple[np.ndarray, tuple[int, int, int]]] = (),
              boxes: Sequence[Box] = ()) -> str:
    """Upscale ``rgb`` (``uint8[H, W, 3]``), draw overlays, encode as a PNG data URI.

    Args:
        rgb: the image.
        scale: whole upscaling factor (nearest neighbour).
        outlines: ``(bool[H, W] mask, colour)``: drawn as a band just outside the mask.
        boxes: rectangles in source-pixel coordinates.
    """
    if scale < 1:
        raise ValueError(f"panel_png: expected scale >= 1, got {scale}")
    big = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    for mask, color in outlines:
        band = outline(mask, scale, width=max(1, scale // 3))
        big[band] = color
    pil = Image.fromarray(np.ascontiguousarray(big), mode="RGB")
    draw = ImageDraw.Draw(pil)
    for b in boxes:
        x1, y1, x2, y2 = (float(v) * scale for v in b.xyxy)
        # Pixel-edge boxes end one pixel before x2; a degenerate box still draws as a dot.
        draw.rectangle((x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)), outline=b.color,
                       width=b.width)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def overview_png(hu: Tensor, window: tuple[float, float], box: Sequence[float],
                 size: int = 192) -> str:
    """A whole slice made small (``size`` pixels on its long side, area-averaged) with one
    rectangle (``xyxy`` in the slice's pixels): where a crop lies. The one place pixels are
    shrunk, so the crop beside it is what the reader judges."""
    rgb = gray(hu, window)
    h, w = rgb.shape[:2]
    factor = size / max(h, w)
    small = Image.fromarray(rgb, mode="RGB").resize(
        (max(1, round(w * factor)), max(1, round(h * factor))), Image.Resampling.BOX)
    draw = ImageDraw.Draw(small)
    x1, y1, x2, y2 = (float(v) * factor for v in box)
    draw.rectangle((x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)), outline=TRUTH_COLOR, width=2)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def slice_png(hu: Tensor, *, window: tuple[float, float] = SOFT_TISSUE_HU,
              truth: Tensor | None = None, detected: Tensor | None = None,
              scores: Tensor | None = None, scale: int = 3,
              min_score: float = 0.5) -> str:
    """Encode one slice with lesion boxes as a ``data:image/png;base64,...`` URI.

    Args:
        hu: ``[H, W]`` or ``[1, H, W]`` slice in HU.
        window: display window ``(lo, hi)`` in HU (default soft tissue, W400/L40).
        truth: ``[L, 4]`` xyxy ground-truth boxes, drawn green, one pixel outside the lesion.
        detected: ``[N, 4]`` xyxy detections, drawn red when their score is ``>= min_score``.
        scores: ``[N]`` detection scores.
        scale: integer upscaling (nearest neighbour, so pixels stay visible).
        min_score: detections below this score are not drawn.
    """
    boxes = []
    for x1, y1, x2, y2 in ([] if truth is None else truth.detach().cpu().reshape(-1, 4).tolist()):
        pad = 1.0 / scale
        boxes.append(Box((x1 - pad, y1 - pad, x2 + pad, y2 + pad), TRUTH_COLOR, 2))
    s = [] if scores is None else scores.detach().cpu().tolist()
    dets = [] if detected is None else detected.detach().cpu().reshape(-1, 4).tolist()
    boxes += [Box(b, DETECTED_COLOR, 1) for b, score in zip(dets, s, strict=False)
              if score >= min_score]
    return panel_png(gray(hu, window), scale, boxes=boxes)
