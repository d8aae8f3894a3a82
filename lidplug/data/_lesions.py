"""Insert lesions into a noise-free phantom slice, with exact boxes from their masks.

A lesion is an ellipse whose radius is modulated by a few low harmonics (a lobulated, irregular
boundary). Its contrast is added to the local background with a soft edge: a linear ramp of
``edge`` pixels centred on the boundary, so the lesion's *mask* (where the ramp is at least one
half, i.e. inside the boundary) carries at least half of the contrast and the box is the tight box
of that mask. The soft fringe outside the mask never touches another lesion nor leaves the host
organ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lidplug.data._body import Tissue, texture

__all__ = ["HOST_TISSUES", "LesionSpec", "insert_lesions"]

# Host organs a lesion may grow in, with sampling weights and DeepLesion coarse types.
HOST_TISSUES: dict[Tissue, tuple[float, int]] = {
    Tissue.LIVER: (0.5, 4),  # liver
    Tissue.KIDNEY: (0.2, 6),  # kidney
    Tissue.SPLEEN: (0.15, 2),  # abdomen
    Tissue.MUSCLE: (0.15, 7),  # soft tissue
}
_ATTEMPTS = 40
_HARMONICS = np.arange(2, 6)


@dataclass(frozen=True)
class LesionSpec:
    """Ranges lesions are drawn from.

    Attributes:
        diameter_mm: ``(min, max)`` mean diameter in mm, drawn log-uniformly (small lesions are
            the common, hard case); never below 2 pixels, so every lesion covers a pixel. The
            mask's equivalent diameter (of a disc of the same area) is never below the minimum:
            a lesion that fits nowhere at an allowed size is left out.
        contrast_hu: ``(min, max)`` contrast against the local background in HU.
        min_abs_contrast_hu: contrasts closer to 0 are redrawn (an invisible lesion is no label).
    """

    diameter_mm: tuple[float, float] = (3.0, 30.0)
    contrast_hu: tuple[float, float] = (-60.0, 80.0)
    min_abs_contrast_hu: float = 10.0

    def __post_init__(self) -> None:
        (d0, d1), (c0, c1) = self.diameter_mm, self.contrast_hu
        if not 0 < d0 <= d1:
            raise ValueError(f"diameter_mm: expected 0 < min <= max, got {self.diameter_mm}")
        if not (c0 <= c1 and max(abs(c0), abs(c1)) > self.min_abs_contrast_hu >= 0):
            raise ValueError(
                f"contrast_hu: expected min <= max with some |contrast| > min_abs_contrast_hu="
                f"{self.min_abs_contrast_hu}, got {self.contrast_hu}"
            )


def insert_lesions(
    rng: np.random.Generator,
    hu: np.ndarray,
    tissue: np.ndarray,
    count: int,
    spacing: float,
    spec: LesionSpec,
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, float]]]:
    """Add up to ``count`` lesions to ``hu`` in place.

    Args:
        rng: random source.
        hu: ``[H, W]`` float32 HU image, modified in place.
        tissue: ``[H, W]`` :class:`Tissue` map of ``hu``.
        count: number of lesions wanted; fewer are placed only if the organs are too small.
        spacing: pixel size in mm.
        spec: size and contrast ranges.

    Returns:
        ``(lesion_map, boxes, info)``: ``[H, W]`` int16 map (0 = none, ``k`` = lesion ``k``),
        ``[L, 4]`` float32 tight ``xyxy`` boxes of the masks, and ``(host tissue, contrast)`` per
        lesion.
    """
    lesion_map = np.zeros(hu.shape, dtype=np.int16)
    taken = np.zeros(hu.shape, dtype=bool)  # soft supports placed so far
    hosts = [t for t in HOST_TISSUES if (tissue == t).any()]
    boxes, info = [], []
    if not hosts:
        return lesion_map, np.zeros((0, 4), np.float32), info
    weights = np.array([HOST_TISSUES[t][0] for t in hosts])
    lesion_tex = texture(rng, hu.shape, 1.5)
    for _ in range(count):
        for attempt in range(_ATTEMPTS):
            host = hosts[rng.choice(len(hosts), p=weights / weights.sum())]
            # Late attempts shrink the lesion: a big one may not fit in any organ of this slice.
            shrink = 1.0 if attempt < _ATTEMPTS // 2 else 0.5 ** (attempt - _ATTEMPTS // 2 + 1)
            placed = _try_place(rng, tissue, host, spacing, spec, shrink, taken)
            if placed is None:
                continue
            win, soft, mask = placed
            contrast = _draw_contrast(rng, spec)
            # Mild own texture, so the lesion is not a flat offset of its host.
            hu[win] += soft * (contrast + rng.uniform(1.0, 4.0) * lesion_tex[win])
            taken[win] |= soft > 0
            lesion_map[win][mask] = len(boxes) + 1
            rows, cols = np.nonzero(mask)
            r0, c0 = win[0].start, win[1].start
            boxes.append(
                [c0 + cols.min(), r0 + rows.min(), c0 + cols.max() + 1, r0 + rows.max() + 1]
            )
            info.append((int(host), float(contrast)))
            break
    return lesion_map, np.asarray(boxes, np.float32).reshape(-1, 4), info


def _draw_contrast(rng: np.random.Generator, spec: LesionSpec) -> float:
    while True:
        c = rng.uniform(*spec.contrast_hu)
        if abs(c) >= spec.min_abs_contrast_hu:
            return float(c)


def _try_place(rng, tissue, host, spacing, spec, shrink, taken):
    """One placement attempt: ``(window, soft, mask)`` or None if it does not fit."""
    h, w = tissue.shape
    d0, d1 = spec.diameter_mm
    # Shrinking never goes below the spec's minimum: a lesion that fits at no allowed size is
    # left out (fewer lesions) rather than drawn smaller than asked.
    diameter_mm = max(np.exp(rng.uniform(np.log(d0), np.log(d1))) * shrink, d0)
    diameter_px = max(diameter_mm / spacing, 2.0)
    aspect = rng.uniform(0.6, 1.0)
    # The mean diameter is the geometric mean of the two axes.
    a, b = diameter_px / 2 / np.sqrt(aspect), diameter_px / 2 * np.sqrt(aspect)
    theta = rng.uniform(0, np.pi)
    lobes = rng.uniform(0, 0.1, _HARMONICS.size) * (rng.uniform() < 0.7)
    phases = rng.uniform(0, 2 * np.pi, _HARMONICS.size)
    edge = rng.uniform(0.6, 2.0)  # boundary ramp width in pixels: sharp to ill-defined
    rows, cols = np.nonzero(tissue == host)
    pick = rng.integers(rows.size)
    cy, cx = rows[pick] + rng.uniform(), cols[pick] + rng.uniform()  # continuous centre
    reach = a * (1 + lobes.sum()) + edge + 1
    r0, r1 = int(cy - reach), int(np.ceil(cy + reach))
    c0, c1 = int(cx - reach), int(np.ceil(cx + reach))
    if r0 < 0 or c0 < 0 or r1 > h or c1 > w:
        return None
    win = (slice(r0, r1), slice(c0, c1))
    dy = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5 - cy  # pixel centres
    dx = np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5 - cx
    c, s = np.cos(theta), np.sin(theta)
    u, v = c * dx + s * dy, c * dy - s * dx
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    angle = np.arctan2(v / b, u / a)
    boundary = 1 + (lobes[:, None, None] * np.cos(
        _HARMONICS[:, None, None] * angle + phases[:, None, None])).sum(0)
    dist = (rho - boundary) * np.sqrt(a * b)  # ~ signed distance to the boundary in pixels
    mask = dist <= 0
    soft = np.clip(0.5 - dist / edge, 0.0, 1.0).astype(np.float32)
    support = soft > 0
    if not mask.any() or (tissue[win][support] != host).any() or taken[win][support].any():
        return None
    # The drawn diameter is continuous; the mask is pixels. Near the minimum the mask can come
    # out smaller (a 3-mm lesion on 1.5-mm pixels may cover 2 pixels), so its own equivalent
    # diameter is checked and a lesion under the minimum is redrawn.
    if 2 * np.sqrt(mask.sum() / np.pi) * spacing < d0:
        return None
    return win, soft, mask
