"""Lesions up close: zoomed crops of a few test lesions across image sets, and the per-lesion
contrast recovery against size and true contrast.

Which lesions are shown is fixed before any result is looked at (:func:`pick_evenly`: evenly
spaced by size, smallest to largest), so the crops cannot be chosen to flatter an arm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

import numpy as np
import torch
from torch import Tensor

from lidplug.data.transforms import SOFT_TISSUE_HU
from lidplug.metrics import box_overlap
from lidplug.report.html import figure
from lidplug.report.images import (
    OBSERVER_COLORS,
    TRUTH_COLOR,
    Box,
    crop_origin,
    gray,
    overview_png,
    panel_png,
)
from lidplug.report.labels import image_sets, number, set_colours, set_label, short_label
from lidplug.report.svg import Series, line_plot

__all__ = ["CROP_PX", "Site", "crop_size", "crops_html", "lesion_sites", "pick_evenly",
           "recovery_html"]

#: The smallest crop side (pixels): a lesion with enough background around it to judge.
CROP_PX = 24
#: Shown side of a crop (pixels on the page), reached by a whole upscaling factor ...
_SHOWN_PX = 168
#: ... unless a row of crops (one per image set) would not fit this width: then smaller.
_ROW_PX = 1140
#: Detections drawn: score at least this (and the best hit on the lesion, when none is).
MIN_SCORE = 0.5


@dataclass(frozen=True)
class Site:
    """One test lesion, where the page finds it.

    Attributes:
        index: its row in ``Evaluation.lesions[set]`` (phantoms) or its running number.
        image: its slice.
        box: ``(x1, y1, x2, y2)`` pixel-edge box.
        mask: ``bool[H, W]`` its pixels, or None (real data: a box only).
        diameter_px: equivalent diameter (of the mask's area, else of the box's).
        contrast_hu: true contrast (phantoms), else None.
        split: the held-out split its slice is of (``"test"``, ``"validation"``).
    """

    index: int
    image: int
    box: tuple[float, float, float, float]
    mask: np.ndarray | None
    diameter_px: float
    contrast_hu: float | None
    split: str = "test"

    @property
    def centre(self) -> tuple[float, float]:
        """``(row, col)``: the mask's centroid, else the box's centre."""
        if self.mask is not None and self.mask.any():
            rows, cols = np.nonzero(self.mask)
            return float(rows.mean()) + 0.5, float(cols.mean()) + 0.5
        x1, y1, x2, y2 = self.box
        return (y1 + y2) / 2, (x1 + x2) / 2


def lesion_sites(held, lesions: Mapping[str, Mapping[str, np.ndarray]]) -> list[Site]:
    """Every test lesion: from the phantom's lesion regions, else from the target boxes.

    Args:
        held: the :class:`~lidplug.pipeline.HeldOut` set.
        lesions: ``Evaluation.lesions`` (its per-lesion ``diameter_px`` and ``contrast_hu``).
    """
    if held.regions:
        table = next(iter(lesions.values()), {})
        return [Site(k, int(r.image), tuple(float(v) for v in r.box.tolist()),
                     r.mask.cpu().numpy().astype(bool),
                     float(table["diameter_px"][k]) if "diameter_px" in table
                     else 2 * math.sqrt(float(r.mask.sum()) / math.pi),
                     float(table["contrast_hu"][k]) if "contrast_hu" in table else None,
                     held.split)
                for k, r in enumerate(held.regions)]
    sites = []
    for image, target in enumerate(held.targets):
        for x1, y1, x2, y2 in target["boxes"].reshape(-1, 4).tolist():
            d = 2 * math.sqrt(max(x2 - x1, 0) * max(y2 - y1, 0) / math.pi)
            sites.append(Site(len(sites), image, (x1, y1, x2, y2), None, d, None, held.split))
    return sites


def pick_evenly(values: Sequence[float], k: int) -> list[int]:
    """Indices of ``k`` entries evenly spaced in rank by value, smallest first (all if fewer).

    Ties keep their input order, so the pick depends on the values alone.
    """
    if k < 1:
        raise ValueError(f"pick_evenly: expected k >= 1, got {k}")
    order = sorted(range(len(values)), key=lambda i: (values[i], i))
    if len(order) <= k:
        return order
    ranks = np.round(np.linspace(0, len(order) - 1, k)).astype(int)
    return [order[r] for r in ranks]


def crop_size(diameter_px: float, shape: tuple[int, int], minimum: int = CROP_PX) -> int:
    """Side of a lesion's crop: ``minimum`` (default :data:`CROP_PX`), or 2.5 diameters for
    large lesions (even), at most the slice."""
    side = max(minimum, 2 * math.ceil(1.25 * diameter_px))
    return min(side, *shape)


def _best_hit(dets: Mapping[str, Tensor], box: Tensor, hit_rule: str) -> tuple[float, int] | None:
    """Score and index of the highest-scoring detection that hits ``box`` (the FROC's rule)."""
    boxes = dets["boxes"].reshape(-1, 4)
    if boxes.shape[0] == 0:
        return None
    hits = box_overlap(boxes, box[None], hit_rule)[:, 0] >= 0.5
    if not hits.any():
        return None
    scores = torch.where(hits, dets["scores"].float(), torch.tensor(-math.inf))
    best = int(scores.argmax())
    return float(scores[best]), best


def _overlaps(xyxy, top: int, left: int, size: int) -> bool:
    x1, y1, x2, y2 = xyxy
    return x2 > left and x1 < left + size and y2 > top and y1 < top + size


def _observers(evaluation) -> list[str]:
    names = evaluation.metrics.get("protocol", {}).get("observers")
    return list(names) if names else [o for o in evaluation.detections if ":" not in o]


def _legend(observers: Sequence[str], masks: bool) -> str:
    truth = ("<span class='swatch outline' style='border-color:rgb{}'></span>true outline"
             if masks else "<span class='swatch' style='border:2px solid rgb{}'></span>true box"
             ).format(TRUTH_COLOR)
    obs = "".join(f"<span class='swatch' style='border:2px solid rgb{OBSERVER_COLORS[k % 4]}'>"
                  f"</span>{escape(name)}" for k, name in enumerate(observers))
    return f"<p class='note'>{truth} {obs}</p>"


def _shift(xyxy: Sequence[float], top: int, left: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = xyxy
    return x1 - left, y1 - top, x2 - left, y2 - top


def _observer_marks(dets: Mapping[str, Tensor], site: Site, origin: tuple[int, int], side: int,
                    color: tuple[int, int, int], hit_rule: str) -> tuple[list[Box], str]:
    """One observer on one crop: the rectangles to draw and its score on the lesion (HTML)."""
    top, left = origin
    drawn = [Box(_shift(b, top, left), color, 2)
             for b, s in zip(dets["boxes"].tolist(), dets["scores"].tolist(), strict=True)
             if s >= MIN_SCORE and _overlaps(b, top, left, side)]
    hit = _best_hit(dets, torch.tensor(site.box), hit_rule)
    if hit is not None and hit[0] < MIN_SCORE:
        drawn.append(Box(_shift(dets["boxes"][hit[1]].tolist(), top, left), color, 1))
    score = number(hit[0], 2) if hit else "&ndash;"
    return drawn, f"<span style='color:rgb{color}'>&#9632;</span>&#8239;{score}"


def _spacing(spacing_mm: float | Sequence[float] | None, image: int) -> float | None:
    if spacing_mm is None or isinstance(spacing_mm, int | float):
        return spacing_mm
    return float(spacing_mm[image])


def _panels(site: Site, columns, evaluation, observers: Sequence[str], hit_rule: str,
            window: tuple[str, tuple[float, float]], origin: tuple[int, int], side: int,
            scale: int) -> list[str]:
    """One crop per image set, on one display window."""
    top, left = origin
    label, (lo, hi) = window
    mask = None if site.mask is None else site.mask[top:top + side, left:left + side]
    outlines = [(mask, TRUTH_COLOR)] if mask is not None else []
    truth_box = [] if mask is not None else [Box(_shift(site.box, top, left), TRUTH_COLOR, 2)]
    panels = []
    for name, hu in columns:
        rgb = gray(hu[site.image, 0, top:top + side, left:left + side], (lo, hi))
        boxes, scores = list(truth_box), []
        for k, obs in enumerate(observers):
            dets = evaluation.detections.get(obs, {}).get(name)
            if dets is not None:
                drawn, score = _observer_marks(dets[site.image], site, (top, left), side,
                                               OBSERVER_COLORS[k % len(OBSERVER_COLORS)],
                                               hit_rule)
                boxes += drawn
                scores.append(score)
        lines = [f"<b>{escape(short_label(name))}</b>"]
        recovery = evaluation.lesions.get(name, {}).get("contrast_recovery")
        if recovery is not None:
            lines.append(f"recovery {number(float(recovery[site.index]), 2)}")
        if scores:
            lines.append(" &nbsp;".join(scores))
        alt = (f"{set_label(name)}: lesion {site.index + 1} on {site.split} slice {site.image}, "
               f"{side}x{side} px crop, {label}")
        panels.append(figure(panel_png(rgb, scale, outlines=outlines, boxes=boxes), alt,
                             "<br>".join(lines)))
    return panels


def _lesion_row(site: Site, columns, evaluation, observers: Sequence[str], hit_rule: str,
                spacing_mm: float | None, shape: tuple[int, int],
                windows: Sequence[tuple[str, tuple[float, float]]], min_crop: int,
                overview: Tensor | None) -> str:
    side = crop_size(site.diameter_px, shape, min_crop)
    slots = len(columns) + (overview is not None)
    fit = (_ROW_PX // slots - 10) // side
    scale = max(1, min(max(2, round(_SHOWN_PX / side)), fit))
    top, left = crop_origin(site.centre, side, shape)
    rows = []
    for window in windows:
        panels = _panels(site, columns, evaluation, observers, hit_rule, window, (top, left),
                         side, scale)
        if overview is not None:
            where = overview_png(overview[site.image, 0], window[1],
                                 (left, top, left + side, top + side), size=side * scale)
            panels.insert(0, figure(where, f"where the crop lies on {site.split} slice {site.image}",
                                    f"<b>where</b><br>{escape(window[0])}"))
        rows.append(f"<div class='scroll'><div class='row'>{''.join(panels)}</div></div>")
    size = (f"{number(site.diameter_px * spacing_mm, 1)} mm ({number(site.diameter_px, 1)} px)"
            if spacing_mm else f"{number(site.diameter_px, 1)} px")
    contrast = ("" if site.contrast_hu is None else
                f", true contrast {number(site.contrast_hu, 0, signed=True)} HU "
                f"({'brighter' if site.contrast_hu > 0 else 'darker'} than its background)")
    return (f"<h3>Lesion {site.index + 1} ({site.split} slice {site.image}): {escape(size)} across"
            f"{escape(contrast)}</h3>{''.join(rows)}")


def crops_html(evaluation, held, arms: Sequence[str], *, hit_rule: str = "center",
               spacing_mm: float | Sequence[float] | None = None, count: int = 6,
               windows: Sequence[tuple[str, tuple[float, float]]] = (
                   ("soft-tissue window W400/L40", SOFT_TISSUE_HU),),
               min_crop: int = CROP_PX, overview: bool = False) -> str:
    """The crops section: a row per picked lesion and window, a crop per image set.

    Args:
        evaluation: the :class:`~lidplug.pipeline.Evaluation` (images, detections, lesions).
        held: the held-out set (truth, masks, boxes).
        arms: the run's arm names (column order).
        hit_rule: the evaluation's hit rule (``"center"`` or ``"iou"``).
        spacing_mm: pixel size, one for all slices or one per slice, to give sizes in mm.
        count: lesions shown.
        windows: ``(label, (lo, hi))`` display windows, a row of crops each.
        min_crop: the smallest crop side in pixels (real CT: enough anatomy to judge).
        overview: put the whole normal-dose slice, small, with the crop marked, first.
    """
    sites = lesion_sites(held, evaluation.lesions)
    if not sites:
        return (f"<p>No lesions in the {held.split} slices: nothing to show up "
                "close.</p>")
    picked = pick_evenly([s.diameter_px for s in sites], count)
    observers = _observers(evaluation)
    columns = ([("truth", held.truth)] if held.truth is not None else []) + [
        (name, held.window.inverse(evaluation.images[name]))
        for name in image_sets(list(evaluation.images), arms)]
    shape = tuple(held.low.shape[-2:])
    whole = held.window.inverse(held.normal) if overview else None
    rows = [_lesion_row(sites[i], columns, evaluation, observers, hit_rule,
                        _spacing(spacing_mm, sites[i].image), shape, windows, min_crop, whole)
            for i in picked]
    shown = " and ".join(f"{label} ({number(lo, 0)} to {number(hi, 0)} HU)"
                         for label, (lo, hi) in windows)
    intro = (f"<p>{len(picked)} of the {len(sites)} test lesions, evenly spaced by size from "
             "the smallest to the largest (a rule fixed before looking at any result). Each "
             f"crop: at least {min_crop}x{min_crop} px around the lesion (wider for large "
             "lesions), enlarged with nearest neighbour so every CT pixel is a square; "
             f"{shown}" + (", the whole slice first with the crop marked" if overview else "")
             + ". Under each crop: "
             + ("the lesion's contrast recovery on that image (1: all its contrast kept, 0: "
                "gone) and " if evaluation.lesions else "")
             + "the score at which each observer finds it (&ndash;: no detection hits it). "
             "Rectangles: each observer's "
             f"detections with score &ge; {MIN_SCORE} (thin: its best detection on the lesion "
             "when that scores lower).</p>")
    return intro + _legend(observers, bool(held.regions)) + "".join(rows)


def _pooled_bins(x: np.ndarray, signal: np.ndarray, truth: np.ndarray, bins: int
                 ) -> tuple[list[float], list[float]]:
    """Recovery pooled per quantile bin of ``x``: sum of kept contrast over sum of true contrast,
    the same pooling as the headline number (faint lesions' noisy ratios do not dominate)."""
    edges = np.quantile(x, np.linspace(0, 1, bins + 1))
    xs, ys = [], []
    for k in range(bins):
        inside = (x >= edges[k]) & ((x <= edges[k + 1]) if k == bins - 1 else (x < edges[k + 1]))
        if inside.any() and np.abs(truth[inside]).sum() > 0:
            xs.append(float(x[inside].mean()))
            ys.append(float((np.sign(truth[inside]) * signal[inside]).sum()
                            / np.abs(truth[inside]).sum()))
    return xs, ys


def recovery_html(evaluation, arms: Sequence[str], *,
                  spacing_mm: float | Sequence[float] | None = None) -> str:
    """Per-lesion contrast recovery against diameter and against true contrast (inline SVG).

    One marker series per image set (low dose, each arm, normal dose); a line per set through
    its recovery pooled over size quartiles. Recoveries beyond the axis sit on its border.
    """
    tables = evaluation.lesions
    names = [n for n in image_sets(list(tables), arms) if n != "noise_free"]
    if not names:
        return "<p>No per-lesion values (they need phantoms with exact lesion masks).</p>"
    first = tables[names[0]]
    per_lesion = ([_spacing(spacing_mm, int(i)) for i in first["image"]]
                  if spacing_mm is not None else 1.0)
    size = first["diameter_px"] * np.asarray(per_lesion, dtype=np.float64)
    contrast = np.abs(first["contrast_hu"])
    ylim = (-0.5, 2.0)
    colours = set_colours(image_sets(list(tables), arms))
    plots = []
    for x, xlabel in ((size, f"lesion diameter ({'mm' if spacing_mm else 'px'})"),
                      (contrast, "true contrast |HU|")):
        series, lines = [], []
        for name in names:
            color = colours[name]
            cr, truth = tables[name]["contrast_recovery"], tables[name]["contrast_hu"]
            series.append(Series(short_label(name), x.tolist(), cr.tolist(), color=color,
                                 markers=True))
            lines.append(Series("", *_pooled_bins(x, cr * truth, truth, 4), color=color))
        series += lines
        plots.append(line_plot(series, title=f"Contrast recovery vs {xlabel.split(' (')[0]}",
                               xlabel=xlabel, ylabel="contrast recovery", ylim=ylim,
                               hlines=((1.0, "all contrast kept"), (0.0, "none")),
                               width=430, height=300))
    outside = sum(int(((tables[n]["contrast_recovery"] < ylim[0])
                       | (tables[n]["contrast_recovery"] > ylim[1])).sum()) for n in names)
    note = (f"<p class='note'>{len(size)} test lesions; one marker per lesion and image set. "
            "Lines (same colour as the markers): recovery pooled over each quarter of the lesions (weighted by true contrast, "
            "as the headline number), so the faint lesions' noisy ratios do not dominate."
            + (f" {outside} points fall outside {number(ylim[0], 1)} to {number(ylim[1], 1)} "
               "and sit on the border." if outside else "") + "</p>")
    return f"<div class='figures'>{''.join(plots)}</div>{note}"
