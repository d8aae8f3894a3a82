"""CT slices as PNG data URIs (for a self-contained HTML page), with lesion boxes drawn on them."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from lidplug.data.transforms import SOFT_TISSUE_HU, HUWindow

__all__ = ["DETECTED_COLOR", "TRUTH_COLOR", "slice_png"]

TRUTH_COLOR = (0, 200, 0)
DETECTED_COLOR = (255, 60, 60)


def slice_png(hu: Tensor, *, window: tuple[float, float] = SOFT_TISSUE_HU,
              truth: Tensor | None = None, detected: Tensor | None = None,
              scores: Tensor | None = None, scale: int = 3,
              min_score: float = 0.5) -> str:
    """Encode one slice as a ``data:image/png;base64,...`` URI.

    Args:
        hu: ``[H, W]`` or ``[1, H, W]`` slice in HU.
        window: display window ``(lo, hi)`` in HU (default soft tissue, W400/L40).
        truth: ``[L, 4]`` xyxy ground-truth boxes, drawn green.
        detected: ``[N, 4]`` xyxy detections, drawn red with their score when ``>= min_score``.
        scores: ``[N]`` detection scores.
        scale: integer upscaling (nearest neighbour, so pixels stay visible).
        min_score: detections below this score are not drawn.
    """
    image = hu.detach().float().cpu().reshape(hu.shape[-2:])
    gray = (HUWindow(*window, clamp=True)(image) * 255).round().to(torch.uint8).numpy()
    pil = Image.fromarray(np.ascontiguousarray(gray), mode="L").convert("RGB")
    pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(pil)

    def boxes(b: Tensor | None) -> Sequence[Sequence[float]]:
        return [] if b is None else (b.detach().cpu().reshape(-1, 4) * scale).tolist()

    for x1, y1, x2, y2 in boxes(truth):
        draw.rectangle((x1 - 1, y1 - 1, x2 + 1, y2 + 1), outline=TRUTH_COLOR, width=2)
    s = [] if scores is None else scores.detach().cpu().tolist()
    for (x1, y1, x2, y2), score in zip(boxes(detected), s, strict=False):
        if score >= min_score:
            draw.rectangle((x1, y1, x2, y2), outline=DETECTED_COLOR, width=1)
            draw.text((x1, max(y1 - 11, 0)), f"{score:.2f}", fill=DETECTED_COLOR)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
