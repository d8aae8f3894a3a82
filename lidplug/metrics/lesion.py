"""Lesion-level image metrics from lesion masks: contrast recovery, lesion RMSE and CNR.

Generic over masks: any dataset with an integer lesion map (0 outside lesions, ``k`` inside lesion
``k``) works, the phantoms' ``Phantom.lesions`` among them. Two steps, so that the geometry is
found once and every method is scored on the same pixels:

1. :func:`lesion_regions` turns lesion maps into regions (:class:`LesionRegion`): the lesion's
   mask, a ring of background around it, and its tight box.
2. :func:`lesion_metrics` scores images against a reference on those regions, one value per
   region; :func:`lidplug.metrics.lesion_mean_statistic` feeds them to
   :func:`lidplug.metrics.bootstrap`.

**The ring.** Pixels at **chessboard** distance ``d`` (``max(|drow|, |dcol|)``) from the mask with
``gap < d <= gap + width``, inside ``allowed``, inside the lesion's host organ when an
``organ_map`` is given (the label under most of the mask: pass the phantom's ``tissue`` so the
ring measures the lesion's own organ, not a neighbouring one of another HU), and farther than
``gap`` from every lesion pixel of the image (its own or another's) and from the host organ's
border (organ edges are soft too: on the phantoms, rings touching the border pick up the
partial-volume fringe of the fat around the organ, and their median noise-free spread grows
from about 4 to 11 HU). Chessboard rather than Euclidean: the gap then clears the whole
8-neighbourhood, so with ``gap=1`` no ring pixel touches the lesion even diagonally (a Euclidean
gap of 1 keeps the diagonal neighbours, at distance sqrt 2). That skips the phantom's soft lesion
edge, whose ramp reaches about one pixel beyond the mask: on 300 phantoms, 2.5% of the rings
kept a pixel or two of it, moving their mean by at most 3% of the lesion's contrast (``gap=2``
clears it all but leaves out more lesions). **Small rings**: a lesion whose ring
has fewer than ``min_ring`` pixels (default 2, the fewest a standard deviation needs; e.g. a
lesion filling its organ) is left out, with one ``RuntimeWarning`` naming it. The rule depends on
the masks only, never on the images scored, so every method is scored on the same lesions and
paired differences stay paired.

**The metrics** (all accumulated in float64; ``img`` the image scored, ``ref`` the reference, the
noise-free phantom where there is one, means over the region's pixels):

* ``contrast_recovery = (mean img[mask] - mean img[ring]) / (mean ref[mask] - mean ref[ring])``:
  the contrast recovery coefficient of emission-tomography phantom studies (measured over true
  contrast, NEMA NU 2), in its difference form for HU (whose 0 is water, not the absence of
  signal), with the reference's *measured* contrast as the true one. So the reference scores
  exactly 1 and the phantom's soft edge and texture cancel; a denoiser that blurs a lesion away
  drives it to 0. NaN where the reference contrast is 0. For faint lesions the ratio is noisy:
  :func:`lidplug.metrics.lesion_mean_statistic` with ``weights=abs(contrast_hu)`` gives the
  pooled mean.
* ``contrast_hu = mean ref[mask] - mean ref[ring]``, the reference contrast (signed).
* ``lesion_rmse_hu = sqrt(mean (img - ref)**2)`` over the lesion's box dilated by ``box_margin``
  pixels and clipped to the image (the evaluation protocol's lesion RMSE).
* ``cnr = |mean img[mask] - mean img[ring]| / std(img[ring])``, the sample standard deviation
  (``ddof=1``): the contrast-to-noise ratio of CT image-quality phantoms (e.g. the ACR CT
  phantom's low-contrast module, ``|A - B| / SD_B`` with ``B`` the background). ``inf`` where the
  ring is perfectly flat (a noise-free image without texture).
* ``diameter_px = 2 sqrt(area / pi)``, the mask's equivalent diameter; ``image`` and ``label``.

Written here, with scipy.ndimage for the distance transforms: no maintained library measures
lesions against a ring of their own background, and the few lines are the conventions above.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from lidplug.data.boxes import mask_to_box
from lidplug.metrics.image import _as_batch

__all__ = ["LesionRegion", "lesion_metrics", "lesion_regions"]


@dataclass(frozen=True, eq=False)
class LesionRegion:
    """One lesion's pixels, its background ring and its box.

    Attributes:
        image: index of the lesion's image in the batch.
        label: the lesion's value ``k`` in the lesion map.
        mask: ``Tensor[H, W]`` bool, the lesion's pixels.
        ring: ``Tensor[H, W]`` bool, its background ring (see the module docstring).
        box: ``Tensor[4]`` float32 tight ``xyxy`` box of ``mask`` (pixel-edge coordinates, as
            :mod:`lidplug.data.boxes`).
    """

    image: int
    label: int
    mask: Tensor
    ring: Tensor
    box: Tensor


def _int_arg(value: object, low: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"lesion_regions: expected an int {name} >= {low}, got {value!r}")
    return int(value)


def _check_map(
    value: Tensor, shape: torch.Size | None, integer: bool, name: str
) -> np.ndarray:
    """``value`` (an integer or a bool map, ``[N, H, W]`` or ``shape``) as a numpy array."""
    kind = "an integer" if integer else "a bool"
    if not isinstance(value, Tensor):
        raise TypeError(f"lesion_regions: expected {name} as {kind} Tensor, got "
                        f"{type(value).__name__}")
    is_bool = value.dtype == torch.bool
    is_int = not (is_bool or value.dtype.is_floating_point or value.is_complex())
    if not (is_int if integer else is_bool):
        raise TypeError(f"lesion_regions: expected {name} as {kind} Tensor, got {value.dtype}")
    if (shape is None and value.dim() != 3) or (shape is not None and value.shape != shape):
        want = "[N, H, W]" if shape is None else f"lesion_map's shape {tuple(shape)}"
        raise ValueError(f"lesion_regions: expected {name} of {want}, got {tuple(value.shape)}")
    return value.detach().cpu().numpy()


def _organ_core(
    organs: np.ndarray, label: int, gap: int, cache: dict[int, np.ndarray]
) -> np.ndarray:
    """Pixels of organ ``label`` farther than ``gap`` (chessboard) from any other organ."""
    if label not in cache:
        organ = organs == label
        cache[label] = organ if gap == 0 else (
            ndimage.distance_transform_cdt(organ, metric="chessboard") > gap)
    return cache[label]


def lesion_regions(
    lesion_map: Tensor,
    allowed: Tensor | None = None,
    *,
    organ_map: Tensor | None = None,
    gap: int = 1,
    width: int = 3,
    min_ring: int = 2,
) -> list[LesionRegion]:
    """Mask, background ring and box of every lesion of every image.

    Args:
        lesion_map: ``Tensor[N, H, W]`` integer, 0 outside lesions and ``k`` inside lesion ``k``
            (e.g. ``torch.stack([p.lesions for p in phantoms])``).
        allowed: ``Tensor[N, H, W]`` bool where a ring may lie (e.g. the body, or the host
            organ of an image's lesions); None for anywhere.
        organ_map: ``Tensor[N, H, W]`` integer organ labels (e.g. the phantom's ``tissue``): each
            ring stays within the label under most of its lesion, its host organ, so lesions of
            one image in different organs each get their own background. Combines with
            ``allowed``.
        gap: chessboard distance, in pixels, the ring keeps from every lesion and from the host
            organ's border.
        width: the ring's thickness in pixels.
        min_ring: lesions whose ring has fewer pixels are left out, with a warning.

    Returns:
        One :class:`LesionRegion` per kept lesion, by image then label.

    Raises:
        TypeError, ValueError: on a non-integer or mis-shaped lesion map, a mis-shaped or
            mistyped ``allowed`` or ``organ_map``, negative labels or bad parameters.
    """
    lm = _check_map(lesion_map, None, True, "lesion_map").astype(np.int64)
    if (lm < 0).any():
        raise ValueError(f"lesion_regions: expected labels >= 0, got minimum {int(lm.min())}")
    ok = None if allowed is None else _check_map(allowed, lesion_map.shape, False, "allowed")
    organs = None if organ_map is None else _check_map(
        organ_map, lesion_map.shape, True, "organ_map")
    gap, width = _int_arg(gap, 0, "gap"), _int_arg(width, 1, "width")
    min_ring = _int_arg(min_ring, 2, "min_ring")
    reach = gap + width
    regions: list[LesionRegion] = []
    skipped: list[tuple[int, int]] = []
    _, h, w = lm.shape
    for n, labels in enumerate(lm):
        cores: dict[int, np.ndarray] = {}  # this image's organs, eroded by the gap
        ks = np.unique(labels[labels > 0])
        if ks.size == 0:
            continue
        # Chessboard distance of every pixel to the nearest lesion pixel of the image.
        near = ndimage.distance_transform_cdt(labels == 0, metric="chessboard") <= gap
        for k in ks.tolist():
            mask = labels == k
            rows, cols = np.nonzero(mask)
            win = (slice(max(rows.min() - reach, 0), min(rows.max() + reach + 1, h)),
                   slice(max(cols.min() - reach, 0), min(cols.max() + reach + 1, w)))
            # The whole mask lies in the window, so distances inside it are exact.
            d = ndimage.distance_transform_cdt(~mask[win], metric="chessboard")
            ring = np.zeros_like(mask)
            ring[win] = (d > gap) & (d <= reach) & ~near[win]
            if ok is not None:
                ring &= ok[n]
            if organs is not None:
                values, counts = np.unique(organs[n][mask], return_counts=True)
                ring &= _organ_core(organs[n], int(values[np.argmax(counts)]), gap, cores)
            if ring.sum() < min_ring:
                skipped.append((n, k))
                continue
            m = torch.from_numpy(mask)
            regions.append(LesionRegion(image=n, label=k, mask=m, ring=torch.from_numpy(ring),
                                        box=mask_to_box(m)))
    if skipped:
        warnings.warn(
            f"lesion_regions: left out {len(skipped)} lesion(s) whose ring has fewer than "
            f"{min_ring} pixels, as (image, label): {skipped}",
            RuntimeWarning,
            stacklevel=2,
        )
    return regions


def lesion_metrics(
    images_hu: Tensor,
    reference_hu: Tensor,
    regions: Sequence[LesionRegion],
    *,
    box_margin: int = 2,
) -> dict[str, np.ndarray]:
    """Contrast recovery, lesion RMSE and CNR of every region (formulas in the module docstring).

    Args:
        images_hu: ``Tensor[N, 1, H, W]`` images scored, in HU.
        reference_hu: ``Tensor[N, 1, H, W]`` their references (the noise-free phantoms).
        regions: from :func:`lesion_regions` on the same ``N`` images.
        box_margin: pixels the box of the lesion RMSE is dilated by on every side.

    Returns:
        ``float64[R]`` arrays ``contrast_recovery``, ``lesion_rmse_hu``, ``cnr``, ``contrast_hu``,
        ``diameter_px``, and ``int64[R]`` ``image`` and ``label``, one entry per region.

    Raises:
        TypeError, ValueError: on bad images (as :func:`lidplug.metrics.rmse_hu`), regions that
            do not fit them, or a negative ``box_margin``.
    """
    img, ref = _as_batch(images_hu, reference_hu, "lesion_metrics")
    if isinstance(box_margin, bool) or not isinstance(box_margin, int) or box_margin < 0:
        raise ValueError(f"lesion_metrics: expected an int box_margin >= 0, got {box_margin!r}")
    n, _, h, w = img.shape
    keys = ("contrast_recovery", "lesion_rmse_hu", "cnr", "contrast_hu", "diameter_px")
    out = {k: np.empty(len(regions), dtype=np.float64) for k in keys}
    out["image"] = np.empty(len(regions), dtype=np.int64)
    out["label"] = np.empty(len(regions), dtype=np.int64)
    for i, r in enumerate(regions):
        if not isinstance(r, LesionRegion):
            raise TypeError(
                f"lesion_metrics: expected LesionRegion objects, got {type(r).__name__}"
            )
        if not (0 <= r.image < n and r.mask.shape == (h, w) and r.ring.shape == (h, w)):
            raise ValueError(
                f"lesion_metrics: expected regions of {n} images of {(h, w)}, got region {i} of "
                f"image {r.image} with a mask of {tuple(r.mask.shape)}"
            )
        mask, ring = r.mask.to(img.device), r.ring.to(img.device)
        if not mask.any() or int(ring.sum()) < 2:
            raise ValueError(
                f"lesion_metrics: expected a non-empty mask and a ring of >= 2 pixels, got "
                f"{int(mask.sum())} and {int(ring.sum())} in region {i}"
            )
        x, y = img[r.image, 0], ref[r.image, 0]
        signal = x[mask].mean() - x[ring].mean()
        truth = y[mask].mean() - y[ring].mean()
        x1, y1, x2, y2 = r.box.tolist()
        box = (slice(max(math.floor(y1) - box_margin, 0), min(math.ceil(y2) + box_margin, h)),
               slice(max(math.floor(x1) - box_margin, 0), min(math.ceil(x2) + box_margin, w)))
        signal, truth = float(signal), float(truth)
        noise = float(x[ring].std())  # sample std (ddof=1)
        out["contrast_recovery"][i] = signal / truth if truth != 0 else math.nan
        out["lesion_rmse_hu"][i] = float((x[box] - y[box]).square().mean().sqrt())
        out["cnr"][i] = abs(signal) / noise if noise > 0 else (math.inf if signal else math.nan)
        out["contrast_hu"][i] = truth
        out["diameter_px"][i] = 2.0 * math.sqrt(float(mask.sum()) / math.pi)
        out["image"][i], out["label"][i] = r.image, r.label
    return out
