"""Difference maps: where each image set departs from the truth, and where the arms differ.

Error maps (set minus the noise-free phantom) share one fixed scale (:data:`ERROR_LIMIT_HU`),
so the low-dose noise and each arm's residual compare at a glance. The arm-vs-plain-arm map
gets a scale of its own, read from its largest differences and printed on its colour bar: the
arms usually differ by far less than either differs from the truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lidplug.data.transforms import SOFT_TISSUE_HU
from lidplug.report.html import figure
from lidplug.report.images import DIVERGING, TRUTH_COLOR, diverging, gray, panel_png
from lidplug.report.labels import image_sets, number, set_label, short_label
from lidplug.report.svg import colour_bar

__all__ = ["ERROR_LIMIT_HU", "example_slices", "maps_html", "nice_limit"]

#: The error maps' scale: +-100 HU at the ends.
ERROR_LIMIT_HU = 100.0
#: Largest slice side drawn unreduced; larger slices are averaged down to fit.
_MAX_PX = 320
_SHOWN_PX = 200
#: Outside the body (not scored): neutral grey, not the white of a zero error.
_OUTSIDE = (200, 200, 200)


def example_slices(held, count: int = 2) -> list[int]:
    """The first ``count`` test slices holding a lesion (then the first others): a rule that
    does not look at any result."""
    with_lesion = [i for i, t in enumerate(held.targets) if len(t["boxes"])]
    rest = [i for i in range(len(held)) if i not in with_lesion]
    return (with_lesion + rest)[:count]


def nice_limit(values: Tensor | np.ndarray, *, floor: float = 5.0, cap: float = 100.0,
               quantile: float = 0.995) -> float:
    """A colour-scale end: the ``quantile`` of ``|values|`` rounded up to 1, 2 or 5 times a
    power of ten, kept within ``[floor, cap]``."""
    if not 0 < floor <= cap:
        raise ValueError(f"nice_limit: expected 0 < floor <= cap, got {floor} and {cap}")
    a = np.abs(np.asarray(values, dtype=np.float64))
    a = a[np.isfinite(a)]
    top = float(np.quantile(a, quantile)) if a.size else 0.0
    if top <= floor:
        return float(floor)
    mag = 10 ** math.floor(math.log10(top))
    nice = next(m * mag for m in (1, 2, 5, 10) if m * mag >= top - 1e-12)
    return float(min(nice, cap))


def _reduce(x: Tensor) -> tuple[Tensor, int]:
    """``x`` (``[H, W]``) averaged down by a whole factor to at most :data:`_MAX_PX`, and the
    display scale that brings it near :data:`_SHOWN_PX`."""
    factor = max(1, math.ceil(max(x.shape) / _MAX_PX))
    if factor > 1:
        x = F.avg_pool2d(x[None, None].float(), factor)[0, 0]
    return x, max(1, round(_SHOWN_PX / max(x.shape)))


def _mask_of(held, image: int) -> np.ndarray | None:
    masks = [r.mask for r in held.regions if r.image == image]
    if not masks:
        return None
    union = torch.stack(masks).any(0).float()
    reduced, _ = _reduce(union)
    return (reduced > 0.5).numpy()


def _coloured(diff: Tensor, limit: float, outside: np.ndarray | None) -> np.ndarray:
    rgb = diverging(diff, limit)
    if outside is not None:
        rgb[outside] = _OUTSIDE
    return rgb


def _rmse(diff: Tensor, body: Tensor | None) -> float:
    d = diff if body is None else diff[body]
    return float(d.double().square().mean().sqrt())


def maps_html(evaluation, held, arms: Sequence[str], comparator: str | None = None,
              *, count: int = 2) -> str:
    """The difference-map section for ``count`` example slices (:func:`example_slices`).

    Args:
        evaluation: the :class:`~lidplug.pipeline.Evaluation` (its images).
        held: the held-out set (the truth, or for real data the normal dose, as reference).
        arms: the run's arm names.
        comparator: the plain arm; each other arm also gets an (arm - plain arm) map.
        count: example slices.
    """
    phantom = held.truth is not None
    reference = held.reference
    split = held.split
    ref_name = "noise-free phantom" if phantom else "normal dose (itself noisy)"
    sets = [n for n in image_sets(list(evaluation.images), arms)
            if phantom or n != "normal_dose"]
    hu = {n: held.window.inverse(evaluation.images[n]) for n in sets}
    pairs = [(a, comparator) for a in arms if comparator and a != comparator and a in hu]
    blocks, pair_limits = [], {}
    for pair in pairs:
        pair_limits[pair] = nice_limit((hu[pair[0]] - hu[pair[1]])[held.body]
                                       if held.body is not None else hu[pair[0]] - hu[pair[1]])
    for i in example_slices(held, count):
        body = None if held.body is None else held.body[i, 0]
        ref, scale = _reduce(reference[i, 0])
        mask = _mask_of(held, i)
        outlines = [(mask, TRUTH_COLOR)] if mask is not None else []
        panels = [figure(panel_png(gray(ref, SOFT_TISSUE_HU), scale, outlines=outlines),
                         f"Reference ({ref_name}), {split} slice {i}, soft-tissue window",
                         f"<b>Reference</b><br>{escape(ref_name)}")]
        outside = None if body is None else ~(_reduce(body.float())[0] > 0.5).numpy()
        for name in sets:
            diff = hu[name][i, 0] - reference[i, 0]
            small, _ = _reduce(diff)
            panels.append(figure(
                panel_png(_coloured(small, ERROR_LIMIT_HU, outside), scale, outlines=outlines),
                f"{set_label(name)} minus the {ref_name}, {split} slice {i}, "
                f"+-{ERROR_LIMIT_HU:g} HU colour scale",
                f"<b>{escape(short_label(name))}</b> \u2212 reference<br>RMSE in body "
                f"{number(_rmse(diff, body), 1)} HU"))
        for pair in pairs:
            diff = hu[pair[0]][i, 0] - hu[pair[1]][i, 0]
            small, _ = _reduce(diff)
            limit = pair_limits[pair]
            panels.append(figure(
                panel_png(_coloured(small, limit, outside), scale, outlines=outlines),
                f"{set_label(pair[0])} minus {set_label(pair[1])}, {split} slice {i}, "
                f"+-{limit:g} HU colour scale",
                f"<b>{escape(short_label(pair[0]))} \u2212 {escape(short_label(pair[1]))}</b>"
                f"<br>scale \u00b1{limit:g} HU; RMS {number(_rmse(diff, body), 1)} HU"))
        blocks.append(f"<h3>{split.capitalize()} slice {i}</h3><div class='figures'>{''.join(panels)}</div>")
    bars = [colour_bar(DIVERGING, ERROR_LIMIT_HU, f"HU, image set minus the {ref_name}")]
    bars += [colour_bar(DIVERGING, limit, f"HU, {short_label(a)} minus {short_label(b)}")
             for (a, b), limit in pair_limits.items()]
    intro = (f"<p>Each map is an image set minus the {escape(ref_name)}, in HU: red where it "
             "is brighter than the truth, blue where darker, white where equal; ends of the "
             f"scale at \u00b1{ERROR_LIMIT_HU:g} HU (beyond: the end colour). Fine grain is "
             "noise; a structure that follows an organ or lesion edge is blur or bias. "
             + ("The last maps show where the arms differ, on their own scale. " if pairs else "")
             + "Green: the true lesion outlines; grey: outside the body (not scored). "
             f"Slices: the first {split} slices holding a lesion.</p>")
    return intro + f"<div class='figures'>{''.join(bars)}</div>" + "".join(blocks)
