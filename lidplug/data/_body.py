"""Noise-free synthetic abdominal CT cross-sections in HU, painted from soft-edged ellipses.

Numpy, not a phantom library: the anatomy needs random per-slice variation and a tissue label map
(the lesion inserter places lesions inside organs with it), and painting ~40 ellipses onto a
256x256 grid in float32 takes a few milliseconds, which a CPU training loop can afford per sample.

Geometry is in millimetres (image centre at 0, ``x`` to the image right = patient left, ``y`` down =
posterior). Each shape's edge is a linear partial-volume ramp about one pixel wide, computed from a
first-order signed distance ``f / |grad f|`` of the implicit ellipse ``f = (u/a)^2 + (v/b)^2 - 1``.
Tissue texture is a smooth Gaussian-correlated noise field scaled per tissue (a few HU in soft
tissue, more in lung and bone), so a denoiser cannot learn that organs are flat.
"""

from __future__ import annotations

import enum

import numpy as np

__all__ = ["Tissue", "paint_body"]


class Tissue(enum.IntEnum):
    """Tissue labels of the phantom's label map."""

    AIR = 0
    SKIN = 1
    FAT = 2
    MUSCLE = 3
    LIVER = 4
    SPLEEN = 5
    KIDNEY = 6
    VESSEL = 7
    BOWEL = 8
    GAS = 9
    LUNG = 10
    BONE = 11
    MARROW = 12
    CSF = 13


class _Canvas:
    """HU image, texture-amplitude image and tissue map, painted shape by shape."""

    def __init__(self, shape: tuple[int, int], spacing: float) -> None:
        h, w = shape
        self.spacing = spacing
        self.x = ((np.arange(w, dtype=np.float32) + 0.5 - w / 2) * spacing)[None, :]
        self.y = ((np.arange(h, dtype=np.float32) + 0.5 - h / 2) * spacing)[:, None]
        self.hu = np.full(shape, -1000.0, dtype=np.float32)
        self.amp = np.full(shape, 2.0, dtype=np.float32)
        self.tissue = np.zeros(shape, dtype=np.uint8)

    def ellipse(self, cx, cy, a, b, theta=0.0):
        """Soft mask of an ellipse restricted to its bounding window: ``(window, mask)``."""
        reach = max(a, b) + 2 * self.spacing
        cols = np.flatnonzero(np.abs(self.x[0] - cx) <= reach)
        rows = np.flatnonzero(np.abs(self.y[:, 0] - cy) <= reach)
        if cols.size == 0 or rows.size == 0:
            return None, None
        win = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        dx, dy = self.x[:, win[1]] - cx, self.y[win[0], :] - cy
        c, s = np.cos(theta), np.sin(theta)
        u, v = c * dx + s * dy, c * dy - s * dx
        f = (u / a) ** 2 + (v / b) ** 2 - 1.0
        grad = 2.0 * np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2) + 1e-6
        # Signed distance in pixels; the ramp spans one pixel, half-value on the boundary.
        return win, np.clip(0.5 - f / grad / self.spacing, 0.0, 1.0)

    def paint(self, tissue, value, amp, cx, cy, a, b, theta=0.0, within=None):
        """Blend a tissue ellipse over the canvas; ``within`` (full-size soft mask) clips it."""
        win, m = self.ellipse(cx, cy, a, b, theta)
        if win is None:
            return
        if within is not None:
            m = np.minimum(m, within[win])
        self.hu[win] += m * (value - self.hu[win])
        self.amp[win] += m * (amp - self.amp[win])
        self.tissue[win][m >= 0.5] = tissue

    def mask(self, cx, cy, a, b, theta=0.0):
        """Full-size soft mask of an ellipse (used to keep organs inside the abdominal wall)."""
        full = np.zeros(self.hu.shape, dtype=np.float32)
        win, m = self.ellipse(cx, cy, a, b, theta)
        if win is not None:
            full[win] = m
        return full


def texture(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Unit-variance Gaussian-correlated noise ``[H, W]`` (white noise low-passed by FFT)."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    kernel = np.exp(-2.0 * (np.pi * sigma_px) ** 2 * (fx**2 + fy**2))
    field = np.fft.irfft2(np.fft.rfft2(noise) * kernel, s=shape).astype(np.float32)
    return field / max(float(field.std()), 1e-6)


def paint_body(
    rng: np.random.Generator, shape: tuple[int, int], spacing: float
) -> tuple[np.ndarray, np.ndarray]:
    """Paint one random upper-abdominal slice.

    Args:
        rng: source of all randomness (anatomy variation and texture).
        shape: ``(H, W)`` in pixels.
        spacing: pixel size in mm (square pixels).

    Returns:
        ``(hu, tissue)``: ``[H, W]`` float32 textured HU image and ``[H, W]`` uint8 :class:`Tissue`
        map (the label covering each pixel's centre).
    """
    cv = _Canvas(shape, spacing)
    u = rng.uniform
    fov = min(shape) * spacing
    # Body semi-axes (lateral, antero-posterior) of an adult abdomen, shrunk to fit a small FOV.
    A, B = u(140, 175), u(100, 130)
    scale = min(1.0, 0.46 * fov / A)
    A, B = A * scale, B * scale
    ox, oy, rot = u(-10, 10) * scale, u(-8, 8) * scale, u(-0.06, 0.06)
    enh = u()  # contrast phase: 0 native .. 1 portal-venous enhancement

    def at(px, py):  # body-relative point -> image mm, following the body's small rotation
        c, s = np.cos(rot), np.sin(rot)
        return ox + c * px - s * py, oy + s * px + c * py

    def paint(tissue, value, amp, px, py, a, b, theta=0.0, within=None):
        cv.paint(tissue, value, amp, *at(px, py), a, b, rot + theta, within)

    paint(Tissue.SKIN, u(30, 50), 4, 0, 0, A, B)
    fat, wall = u(6, 30) * scale, u(6, 14) * scale
    paint(Tissue.FAT, u(-115, -85), 6, 0, 0, A - 2, B - 2)
    paint(Tissue.MUSCLE, u(45, 60), 5, 0, 0, A - 2 - fat, B - 2 - fat)
    a, b = A - 2 - fat - wall, B - 2 - fat - wall  # abdominal cavity
    paint(Tissue.FAT, u(-110, -80), 6, 0, 0, a, b)
    cavity = cv.mask(*at(0, 0), a, b, rot)
    for _ in range(rng.integers(2, 6)):  # bowel loops, some holding gas
        px, py, r = u(-0.2, 0.5) * a, u(-0.75, -0.15) * b, u(0.07, 0.14) * a
        paint(Tissue.BOWEL, u(15, 45), 6, px, py, r, r * u(0.6, 1), u(0, np.pi), cavity)
        if u() < 0.5:
            paint(Tissue.GAS, u(-980, -900), 10, px, py, r * 0.5, r * 0.4, u(0, np.pi), cavity)
    upper = u() < 0.4  # slice at the lung bases (no kidneys) or at the kidneys
    paint(Tissue.LIVER, 55 + 50 * enh + u(-5, 5), 6, -0.42 * a, -0.05 * b, 0.45 * a, 0.6 * b,
          u(-0.4, -0.2), cavity)
    if upper or u() < 0.6:  # left lobe reaching across the midline
        paint(Tissue.LIVER, 55 + 50 * enh, 6, -0.05 * a, -0.4 * b, 0.3 * a, 0.28 * b, 0, cavity)
    if u() < 0.85:
        paint(Tissue.SPLEEN, 45 + 70 * enh + u(-5, 5), 6, 0.62 * a, 0.15 * b, 0.15 * a, 0.32 * b,
              u(0.4, 0.7), cavity)
    for side in (-1, 1):
        if not upper and u() < 0.9:
            paint(Tissue.KIDNEY, 32 + 150 * enh + u(-5, 5), 7, side * 0.42 * a, 0.4 * b,
                  u(0.1, 0.13) * a, u(0.18, 0.22) * b, side * u(0.3, 0.5), cavity)
    # Vertebra: its posterior elements end inside the back muscles, a few mm before the fat.
    r_vb = u(16, 21) * scale
    y_vb = B - fat - r_vb - 32 * scale
    r_ao = u(9, 13) * scale  # aorta left-anterior of the vertebra, IVC to its right
    paint(Tissue.VESSEL, 40 + 200 * enh, 4, 0.3 * r_vb, y_vb - r_vb - r_ao - 2, r_ao, r_ao)
    paint(Tissue.VESSEL, 40 + 130 * enh, 4, -1.4 * r_vb, y_vb - r_vb - 8 * scale, 12 * scale,
          9 * scale)
    if upper:
        for side in (-1, 1):
            paint(Tissue.LUNG, u(-880, -820), 20, side * 0.56 * a, 0.6 * b, 0.3 * a, 0.33 * b,
                  side * 0.3, cavity)
    _paint_spine(rng, paint, r_vb, y_vb, scale)
    for _ in range(rng.integers(4, 10)):  # ribs cut obliquely, along the muscle wall
        t = u(0.15, 0.85) * np.pi * rng.choice([-1, 1])
        r = u(3.5, 6) * scale
        paint(Tissue.BONE, u(500, 900), 30, np.sin(t) * (a + wall / 2), np.cos(t) * (b + wall / 2),
              r, r)
    if upper:  # lung vessels, only where the dot's centre lands in lung
        for _ in range(rng.integers(6, 16)):
            px, py = u(-0.8, 0.8) * a, u(0.3, 0.9) * b
            if cv.tissue[_pixel(cv, *at(px, py))] == Tissue.LUNG:
                r = u(1, 2.5)
                paint(Tissue.VESSEL, u(0, 60), 10, px, py, r, r)
    hu = cv.hu + cv.amp * (0.6 * texture(rng, shape, 1.0) + 0.8 * texture(rng, shape, 3.0))
    return hu.astype(np.float32), cv.tissue


def _paint_spine(rng: np.random.Generator, paint, r: float, y: float, scale: float) -> None:
    """Paraspinal muscles, vertebral body (cortex + marrow), spinous process and canal."""
    u = rng.uniform
    for side in (-1, 1):
        paint(Tissue.MUSCLE, u(45, 60), 5, side * (r + 12 * scale), y + r + 14 * scale,
              22 * scale, 19 * scale)
    paint(Tissue.BONE, u(700, 1100), 40, 0, y, r, r * 0.9)
    paint(Tissue.MARROW, u(150, 300), 25, 0, y, r - 2.5 * scale, r * 0.9 - 2.5 * scale)
    paint(Tissue.BONE, u(600, 1000), 40, 0, y + r + 16 * scale, 11 * scale, 11 * scale)
    paint(Tissue.CSF, u(0, 20), 4, 0, y + r + 7 * scale, 7 * scale, 6 * scale)


def _pixel(cv: _Canvas, x: float, y: float) -> tuple[int, int]:
    h, w = cv.hu.shape
    col = int(np.clip(x / cv.spacing + w / 2, 0, w - 1))
    row = int(np.clip(y / cv.spacing + h / 2, 0, h - 1))
    return row, col
