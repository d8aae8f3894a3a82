"""Box-based FROC for lesion detection, DeepLesion style, with CPM.

Why ours: MONAI's FROC scores points against masks, and torchmetrics/pycocotools have no FROC; the
DeepLesion evaluation (Yan et al., "DeepLesion: automated mining of large-scale lesion annotations
and universal lesion detection with deep learning", J. Med. Imaging 5(3), 2018; code in NIH's
CADLab repository) is box-based, like lesion annotations. The rules:

* **Pooling.** Detections of all images are pooled and sorted by score, highest first; each
  threshold gives an operating point (false positives per image, sensitivity). Sensitivity is
  found lesions / all lesions; FP per image divides by *all* images, including those without
  lesions, whose detections are all false positives.
* **Hits.** A detection hits a lesion of its own image when their overlap reaches the threshold
  (``>=``, 0.5 by default). ``criterion="iou"``: intersection over union (what the released
  DeepLesion detector code, 3DCE and MULAN, scores with). ``criterion="iobb"``: intersection over
  the *detected* box's area (IoBB, as named in the DeepLesion paper and NIH's ChestX-ray8 paper;
  it forgives a box drawn tighter than the loose RECIST-derived ground truth, not a loose one).
  ``criterion="center"``: the detected box's centre lies inside the lesion's box (overlap 1 or
  0, so any threshold in ``(0, 1]`` gives the same hits). For lesions a few pixels wide a
  one-pixel offset already drops the IoU below 0.5; the centre rule, the box form of LUNA16's
  "detection within the nodule's radius", scores where the detector points, not how tightly it
  draws, and a huge box does not hit everything (its centre must still fall on the lesion).
  Walking an image's detections by score, a detection that hits any not-yet-found lesion finds
  all of them (all count as true positives, as in the DeepLesion code); one whose hits were all
  found before is **ignored** (neither TP nor FP); one that hits nothing is a false positive.
* **Ties.** Detections with equal scores form one operating point (an order among them would be
  arbitrary); within an image, tied detections are walked in input order.
* **Interpolation.** Sensitivity at an FP rate is read off the curve through the operating points,
  starting at (0, 0), with linear interpolation between consecutive points and the higher value
  at a vertical step. With distinct scores the curve is a staircase (each point adds either a
  TP or an FP), so this is the best sensitivity reachable without exceeding the rate; ties make
  sloped segments. Past the last operating point the sensitivity stays at its final value (the
  detector produced no more boxes), as in the DeepLesion code of MULAN (the older 3DCE code
  extrapolates the last segment instead). One difference from that code: it
  interpolates over one point per detection with ``scipy.interpolate.interp1d``, which at a rate
  that is an exact multiple of ``1 / n_images`` returns the sensitivity *before* the TPs that
  follow the last allowed FP; here those TPs count.
* **CPM** (competition performance metric, LUNA16) = mean sensitivity over the FP rates, by
  default 0.125, 0.25, 0.5, 1, 2, 4, 8 per image.

Boxes follow :mod:`lidplug.data.boxes` (``xyxy``, continuous pixel-edge coordinates), so areas are
``(x2 - x1) * (y2 - y1)`` with no ``+1`` (the DeepLesion code's ``+1`` is for inclusive
integer-pixel boxes). Labels are ignored: lesion detection is scored class-agnostic.

For bootstrap intervals, match once with :func:`match_detections` and re-pool resampled images
with :func:`froc_from_matches`; matching is per image, so the resampled FROC is exact and cheap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from lidplug.metrics._detections import check_detections

__all__ = [
    "DEFAULT_FP_RATES",
    "FROCResult",
    "ImageMatches",
    "box_overlap",
    "froc",
    "froc_from_matches",
    "match_detections",
]

DEFAULT_FP_RATES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""The FP-per-image rates of DeepLesion and LUNA16 (CPM averages over them)."""

_CRITERIA = ("iou", "iobb", "center")


def box_overlap(detected: Tensor, lesions: Tensor, criterion: str = "iou") -> Tensor:
    """Overlap of every detected box with every lesion box.

    Args:
        detected: ``Tensor[N, 4]`` xyxy detected boxes.
        lesions: ``Tensor[L, 4]`` xyxy ground-truth boxes.
        criterion: ``"iou"`` (intersection over union), ``"iobb"`` (intersection over the
            detected box's area) or ``"center"`` (1 where the detected box's centre lies inside
            the lesion box, borders included, else 0).

    Returns:
        ``Tensor[N, L]`` in ``[0, 1]`` (for ``"iou"`` and ``"iobb"``, 0 where the denominator
        is 0, i.e. for degenerate boxes).

    Raises:
        ValueError: on an unknown criterion or boxes not shaped ``[*, 4]``.
    """
    if criterion not in _CRITERIA:
        raise ValueError(f"box_overlap: expected criterion in {_CRITERIA}, got {criterion!r}")
    for name, b in (("detected", detected), ("lesions", lesions)):
        if b.dim() != 2 or b.shape[1] != 4:
            raise ValueError(f"box_overlap: expected {name} of shape [N, 4], got {tuple(b.shape)}")
    dtype = torch.promote_types(torch.promote_types(detected.dtype, lesions.dtype), torch.float32)
    detected, lesions = detected.to(dtype), lesions.to(dtype)
    if criterion == "center":
        centre = (detected[:, None, :2] + detected[:, None, 2:]) / 2
        inside = (centre >= lesions[None, :, :2]) & (centre <= lesions[None, :, 2:])
        return inside.all(dim=2).to(dtype)
    # torchvision has box_iou but no IoBB, and its intersection helper is private: one
    # intersection here serves both criteria.
    lt = torch.maximum(detected[:, None, :2], lesions[None, :, :2])
    rb = torch.minimum(detected[:, None, 2:], lesions[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    area_det = (detected[:, 2:] - detected[:, :2]).prod(dim=1)
    if criterion == "iou":
        area_les = (lesions[:, 2:] - lesions[:, :2]).prod(dim=1)
        denom = area_det[:, None] + area_les[None, :] - inter
    else:
        denom = area_det[:, None].expand_as(inter)
    return torch.where(denom > 0, inter / denom.clamp(min=torch.finfo(inter.dtype).tiny), 0.0)


class ImageMatches(NamedTuple):
    """One image's detections after matching, sorted by score (highest first).

    Attributes:
        scores: ``float64[N]`` detection scores.
        new_hits: ``int64[N]`` lesions each detection found first (0 for FPs and duplicates).
        false_positive: ``bool[N]`` detections that hit no lesion.
        n_lesions: number of lesions in the image.
    """

    scores: np.ndarray
    new_hits: np.ndarray
    false_positive: np.ndarray
    n_lesions: int


def _match_image(
    boxes: Tensor, scores: Tensor, lesions: Tensor, criterion: str, threshold: float
) -> ImageMatches:
    order = torch.argsort(scores, descending=True, stable=True)
    boxes, scores = boxes[order], scores[order]
    n, n_lesions = boxes.shape[0], int(lesions.shape[0])
    hits = (box_overlap(boxes, lesions, criterion) >= threshold).numpy()  # [N, L]
    new_hits = np.zeros(n, dtype=np.int64)
    if n:
        # Walking the detections by score, a lesion is found by the first detection that hits
        # it: that detection gets the TP, later hits on the lesion are duplicates.
        covered = hits.any(axis=0)
        new_hits += np.bincount(hits.argmax(axis=0)[covered], minlength=n)
    return ImageMatches(
        scores=scores.numpy(),
        new_hits=new_hits,
        false_positive=~hits.any(axis=1),
        n_lesions=n_lesions,
    )


def match_detections(
    detections: Sequence[Mapping[str, Tensor]],
    targets: Sequence[Mapping[str, Tensor]],
    *,
    criterion: str = "iou",
    threshold: float = 0.5,
) -> list[ImageMatches]:
    """Match each image's detections to its lesions (the per-image half of :func:`froc`).

    Args:
        detections: per image ``dict(boxes=Tensor[N, 4] xyxy, scores=Tensor[N])`` (torchvision
            detector output; other keys ignored).
        targets: per image ``dict(boxes=Tensor[L, 4] xyxy)``; ``L`` may be 0.
        criterion: ``"iou"``, ``"iobb"`` or ``"center"`` (see the module docstring).
        threshold: minimum overlap for a hit, in ``(0, 1]``.

    Returns:
        One :class:`ImageMatches` per image.

    Raises:
        TypeError, ValueError: on malformed inputs, an unknown criterion or a bad threshold.
    """
    if criterion not in _CRITERIA:
        raise ValueError(f"match_detections: expected criterion in {_CRITERIA}, got {criterion!r}")
    if not (isinstance(threshold, int | float) and 0 < threshold <= 1):
        raise ValueError(f"match_detections: expected 0 < threshold <= 1, got {threshold!r}")
    dets, gts = check_detections(detections, targets, "match_detections")
    return [
        _match_image(boxes, scores, lesions, criterion, float(threshold))
        for (boxes, scores), lesions in zip(dets, gts, strict=True)
    ]


@dataclass(frozen=True, eq=False)
class FROCResult:
    """Sensitivities at fixed FP rates, their mean (CPM) and the curve they were read from.

    Attributes:
        sensitivity: FP rate per image -> sensitivity (NaN if there are no lesions).
        cpm: mean of ``sensitivity`` over the rates.
        curve_fp_per_image: ``float64[K]`` operating points' FP per image, from 0.
        curve_sensitivity: ``float64[K]`` operating points' sensitivity, from 0.
        n_images: images evaluated.
        n_lesions: lesions in them.
    """

    sensitivity: dict[float, float]
    cpm: float
    curve_fp_per_image: np.ndarray
    curve_sensitivity: np.ndarray
    n_images: int
    n_lesions: int

    def as_dict(self) -> dict[str, float]:
        """Flat ``{"0.125": s, ..., "8": s, "cpm": c}`` (rates formatted with ``:g``), for JSON
        reports and :func:`lidplug.metrics.bootstrap`."""
        out = {f"{rate:g}": value for rate, value in self.sensitivity.items()}
        out["cpm"] = self.cpm
        return out


def _check_rates(fp_rates: Sequence[float]) -> np.ndarray:
    rates = np.asarray(fp_rates, dtype=np.float64).reshape(-1)
    if rates.size == 0 or not (np.isfinite(rates).all() and (rates > 0).all()):
        raise ValueError(f"froc: expected positive finite FP rates, got {list(fp_rates)!r}")
    return rates


def _read_curve(xs: np.ndarray, ys: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Sensitivity at each rate on the piecewise-linear curve through ``(xs, ys)``.

    ``xs`` and ``ys`` are non-decreasing with ``xs[0] == 0``. At a vertical step (equal ``x``)
    the last, highest point counts; past the last point the curve is flat.
    """
    lo = np.searchsorted(xs, rates, side="right") - 1  # last point with x <= rate
    hi = np.minimum(lo + 1, xs.size - 1)
    dx = xs[hi] - xs[lo]  # > 0 unless lo is the last point (then hi == lo)
    t = np.where(dx > 0, (rates - xs[lo]) / np.where(dx > 0, dx, 1.0), 0.0)
    return ys[lo] + t * (ys[hi] - ys[lo])


def froc_from_matches(
    matches: Sequence[ImageMatches], *, fp_rates: Sequence[float] = DEFAULT_FP_RATES
) -> FROCResult:
    """Pool matched images into the FROC curve and read the sensitivities off it.

    Args:
        matches: from :func:`match_detections`; may repeat images (bootstrap resamples).
        fp_rates: FP-per-image rates to report, each > 0.

    Returns:
        :class:`FROCResult`; sensitivities and CPM are NaN when the images hold no lesion.

    Raises:
        ValueError: on no images or bad rates.
    """
    if len(matches) == 0:
        raise ValueError("froc: expected at least one image, got none")
    rates = _check_rates(fp_rates)
    n_images = len(matches)
    n_lesions = sum(m.n_lesions for m in matches)
    scores = np.concatenate([m.scores for m in matches])
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(np.concatenate([m.new_hits for m in matches])[order])
    fp = np.cumsum(np.concatenate([m.false_positive for m in matches])[order])
    # One operating point per distinct score: the last detection of each run of equal scores.
    sorted_scores = scores[order]
    last = np.append(sorted_scores[1:] != sorted_scores[:-1], True)[: scores.size]
    xs = np.concatenate([[0.0], fp[last] / n_images])
    if n_lesions:
        ys = np.concatenate([[0.0], tp[last] / n_lesions])
        sens = _read_curve(xs, ys, rates)
    else:
        ys = np.full(xs.shape, math.nan)
        sens = np.full(rates.shape, math.nan)
    return FROCResult(
        sensitivity={float(r): float(s) for r, s in zip(rates, sens, strict=True)},
        cpm=float(sens.mean()),
        curve_fp_per_image=xs,
        curve_sensitivity=ys,
        n_images=n_images,
        n_lesions=n_lesions,
    )


def froc(
    detections: Sequence[Mapping[str, Tensor]],
    targets: Sequence[Mapping[str, Tensor]],
    *,
    fp_rates: Sequence[float] = DEFAULT_FP_RATES,
    criterion: str = "iou",
    threshold: float = 0.5,
) -> FROCResult:
    """DeepLesion-style FROC: sensitivity at fixed false positives per image, and CPM.

    Args:
        detections: per image ``dict(boxes=Tensor[N, 4] xyxy, scores=Tensor[N])``.
        targets: per image ``dict(boxes=Tensor[L, 4] xyxy)``; images without lesions count.
        fp_rates: FP-per-image rates (default 0.125 ... 8).
        criterion: ``"iou"``, ``"iobb"`` (intersection over the detected box's area) or
            ``"center"`` (the detected box's centre inside the lesion box).
        threshold: minimum overlap for a hit (0.5).

    Returns:
        :class:`FROCResult`; ``result.as_dict()`` gives ``{"0.125": ..., "8": ..., "cpm": ...}``.

    Raises:
        TypeError, ValueError: on malformed inputs or parameters (messages name the image).
    """
    matches = match_detections(detections, targets, criterion=criterion, threshold=threshold)
    return froc_from_matches(matches, fp_rates=fp_rates)
