"""Lesion insertion: a real nodule's signal added to real anatomy, where it fits.

The hybrid-image method of task-based CT evaluation (a real lesion inserted into a real
patient image, so that the lesion's signal, and so its truth, is known exactly while the
background is real). Each step is stated here once:

* **Sites** (:func:`site_mask`): ``"lung"``: parenchyma, pixels inside the patient whose 3x3
  mean lies in [-950, -400] HU (the trachea and main bronchi, below -950, and the air around
  the patient, connected to the image border, are left out), in connected regions of at least
  10 cm^2 (a lung, not a bowel gas pocket); ``"soft_tissue"``: pixels whose 5x5 mean lies in
  [-100, 150] HU in regions of at least 10 cm^2.
* **Resampling** (:func:`resample_signal`): a nodule's signal is resampled to the target's pixel
  spacing by linear interpolation, normalised by the interpolated mask (so the rim is not
  darkened by the zeros outside), cut by that mask at 0.5 and cropped to its box. At equal
  spacing nothing is resampled: the signal is the nodule's own, pixel for pixel.
* **Placement** (:func:`placements`): a nodule fits where its mask, dilated by ``margin``
  pixels, lies wholly inside the site and clear of every lesion placed before it and of the
  ``avoid`` mask (e.g. a real tumour). Positions are drawn uniformly among those that fit.
* **Insertion** (:func:`insert`): ``hybrid = background + scale * signal``, inside the mask
  only; every pixel outside the masks keeps the background's value exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

__all__ = ["SITES", "Placement", "insert", "placements", "resample_signal", "site_mask"]

SITES = ("lung", "soft_tissue")
_LUNG_HU = (-950.0, -400.0)
_SOFT_TISSUE_HU = (-100.0, 150.0)
_MIN_REGION_CM2 = 10.0


def _as_numpy(x: Tensor | np.ndarray) -> np.ndarray:
    return np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, dtype=np.float64)


def _large_regions(mask: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    areas = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    keep = np.flatnonzero(areas * spacing[0] * spacing[1] / 100.0 >= _MIN_REGION_CM2) + 1
    return np.isin(labels, keep)


def site_mask(hu: Tensor | np.ndarray, spacing: tuple[float, float], site: str = "lung"
              ) -> Tensor:
    """Where lesions of ``site`` may go on a slice (see the module docstring).

    Args:
        hu: ``[H, W]`` slice in HU.
        spacing: ``(row, col)`` mm.
        site: one of :data:`SITES`.

    Returns:
        ``Tensor[H, W]`` bool.
    """
    if site not in SITES:
        raise ValueError(f"site: expected one of {SITES}, got {site!r}")
    image = _as_numpy(hu).reshape(np.shape(hu)[-2:])
    if site == "lung":
        smooth = ndimage.uniform_filter(image, 3)
        air = smooth < _LUNG_HU[1]
        labels, _ = ndimage.label(air)
        edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        inside = air & ~np.isin(labels, edge[edge > 0])
        mask = inside & (smooth > _LUNG_HU[0])
    else:
        smooth = ndimage.uniform_filter(image, 5)
        mask = (smooth > _SOFT_TISSUE_HU[0]) & (smooth < _SOFT_TISSUE_HU[1])
    return torch.from_numpy(_large_regions(mask, spacing))


def resample_signal(signal: Tensor, mask: Tensor, spacing: tuple[float, float],
                    target_spacing: tuple[float, float]) -> tuple[Tensor, Tensor]:
    """A nodule's signal and mask at another pixel spacing (see the module docstring).

    Returns:
        ``(signal, mask)`` at ``target_spacing``: float32 and bool ``[h', w']``.
    """
    zoom = (spacing[0] / target_spacing[0], spacing[1] / target_spacing[1])
    if all(math.isclose(z, 1.0, rel_tol=1e-6) for z in zoom):
        return signal.clone(), mask.clone()
    s, m = _as_numpy(signal), _as_numpy(mask)
    zs = ndimage.zoom(s * m, zoom, order=1, mode="grid-constant", grid_mode=True)
    zm = ndimage.zoom(m, zoom, order=1, mode="grid-constant", grid_mode=True)
    inside = zm >= 0.5
    if not inside.any():  # smaller than half a target pixel: keep its strongest pixel
        inside = zm == zm.max()
    out = np.where(inside, zs / np.maximum(zm, 1e-6), 0.0)
    rows, cols = np.nonzero(inside)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    return torch.from_numpy(out[box].astype(np.float32)), torch.from_numpy(inside[box])


@dataclass
class Placement:
    """One lesion placed on a slice.

    Attributes:
        signal: ``Tensor[h, w]`` HU to add (already scaled), zero outside ``mask``.
        mask: ``Tensor[h, w]`` bool.
        top, left: where the ``[h, w]`` patch starts on the slice.
    """

    signal: Tensor
    mask: Tensor
    top: int
    left: int

    @property
    def rows(self) -> slice:
        return slice(self.top, self.top + self.mask.shape[0])

    @property
    def cols(self) -> slice:
        return slice(self.left, self.left + self.mask.shape[1])


def placements(shapes: list[tuple[Tensor, Tensor]], site: Tensor, rng: np.random.Generator, *,
               margin: int = 2, avoid: Tensor | None = None) -> list[Placement | None]:
    """Draw a position for each ``(signal, mask)`` where it fits (see the module docstring).

    Args:
        shapes: the lesions to place, in order, each cut to its mask's box (every edge row
            and column of the mask holds a lesion pixel, so a fitting mask lies in the slice).
        site: ``Tensor[H, W]`` bool, where lesions may lie.
        rng: the generator positions are drawn from.
        margin: pixels kept clear around each lesion (from other lesions and the site's edge).
        avoid: ``Tensor[H, W]`` bool pixels no lesion may cover.

    Returns:
        One :class:`Placement` per lesion, or None for a lesion that fits nowhere.
    """
    free = site.numpy().copy()
    if avoid is not None:
        free &= ~avoid.numpy()
    h, w = free.shape
    out: list[Placement | None] = []
    for signal, mask in shapes:
        m = mask.numpy()
        foot = ndimage.binary_dilation(np.pad(m, margin), iterations=margin) if margin else m
        # An odd-sized footprint centred on its middle pixel, so the erosion's origin is exact.
        fh, fw = foot.shape
        foot = np.pad(foot, ((0, 1 - fh % 2), (0, 1 - fw % 2)))
        fits = ndimage.binary_erosion(free, structure=foot, border_value=0)
        centres = np.flatnonzero(fits)
        if centres.size == 0:
            out.append(None)
            continue
        r, c = divmod(int(centres[rng.integers(centres.size)]), w)
        top, left = r - foot.shape[0] // 2 + margin, c - foot.shape[1] // 2 + margin
        placed = Placement(signal, mask, top, left)
        # The erosion (border_value 0) only keeps centres whose whole footprint is inside.
        assert 0 <= top <= h - m.shape[0] and 0 <= left <= w - m.shape[1]
        out.append(placed)
        taken = np.zeros_like(free)
        taken[placed.rows, placed.cols] = m
        free &= ~ndimage.binary_dilation(taken, iterations=2 * margin + 1)
    return out


def insert(background: Tensor, lesions: list[Placement]) -> tuple[Tensor, Tensor, Tensor]:
    """Add placed lesions to a slice.

    Args:
        background: ``Tensor[H, W]`` HU.
        lesions: placements that do not overlap (as :func:`placements` gives).

    Returns:
        ``(hybrid, signal, labels)``: the slice with the lesions (float32 HU), the inserted
        signal alone (HU, zero outside the lesions) and the lesion map (int64, ``k`` inside
        lesion ``k``, from 1, 0 elsewhere).
    """
    signal = torch.zeros_like(background, dtype=torch.float32)
    labels = torch.zeros(background.shape, dtype=torch.int64)
    for k, p in enumerate(lesions, start=1):
        if bool((labels[p.rows, p.cols][p.mask] != 0).any()):
            raise ValueError(f"lesions: expected lesions that do not overlap, got lesion {k} "
                             "over an earlier one")
        signal[p.rows, p.cols] += torch.where(p.mask, p.signal, torch.zeros_like(p.signal))
        labels[p.rows, p.cols][p.mask] = k
    return background.float() + signal, signal, labels
