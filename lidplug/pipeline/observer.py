"""The evaluation's model observer: a channelized Hotelling observer on lesion ROIs.

Task (signal-known-exactly in location): for each test lesion, a ``roi`` x ``roi`` crop centred
on it, from the image set's slice (lesion present) and from the same set's processing of the
slice without its lesions (absent; same dose: phantoms simulate it with independent noise,
hybrid slices remove the inserted signal and keep the same noise, which changes neither class's
distribution, so no expected figure of merit, only the estimate's spread). Both crops have the
lesion-free background subtracted (the noise-free phantom without lesions; for hybrid slices the
real normal-dose slice before insertion): the background is known exactly, so organ edges do
not enter the channel covariance; it is the same offset for a pair, so it moves nothing
between present and absent) and are multiplied by the sign of the lesion's contrast (hypo- and
hyperdense lesions would otherwise cancel in the mean signal). Lesions differ in size and
contrast, so the template is that of the mean signal. The CHO itself, its Laguerre-Gauss
channels and its finite-sample handling (two-fold holdout) are :mod:`lidplug.metrics.observer`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lidplug.metrics import laguerre_gauss_channels, observer_statistic

__all__ = ["MIN_LESIONS", "ROI_SIZE", "ModelObserver", "lesion_rois"]

ROI_SIZE = 32
CHANNELS = 10
#: Lesions the two-fold holdout needs: more ROIs per class than channels in each half.
MIN_LESIONS = 2 * (CHANNELS + 1)


def lesion_rois(images_hu: Tensor, background_hu: Tensor, regions, signs: np.ndarray,
                size: int = ROI_SIZE) -> Tensor:
    """``Tensor[R, size, size]``: each region's crop of ``images_hu - background_hu``, centred on
    the lesion's mask centroid (zero outside the slice), times the lesion's contrast sign."""
    diff = (images_hu - background_hu).double()[:, 0]
    half = size // 2
    padded = F.pad(diff, (half, half, half, half))
    rois = []
    for region, sign in zip(regions, signs, strict=True):
        rows, cols = torch.nonzero(region.mask, as_tuple=True)
        r = int(rows.double().mean().round()) + half
        c = int(cols.double().mean().round()) + half
        rois.append(float(sign) * padded[region.image, r - half:r - half + size,
                                         c - half:c - half + size])
    return torch.stack(rois)


class ModelObserver:
    """Per image set, the CHO's ``d'`` and AUC on the lesions of a draw of slices.

    Args:
        held: the held-out set (its ``regions``, ``truth`` and ``background``).
        images: image set name -> ``Tensor[N, 1, H, W]`` window units (lesions present).
        absent: image set name -> the same set's lesion-free twins (window units).
    """

    def __init__(self, held, images: dict[str, Tensor], absent: dict[str, Tensor]) -> None:
        regions = held.regions
        background = held.background[:, 0]
        # The lesion's sign of contrast: from the inserted signal where it is known, else from
        # the noise-free truth minus its lesion-free background.
        signal = (held.signal[:, 0] if held.signal is not None
                  else held.truth[:, 0] - background)
        signs = np.array([math.copysign(1.0, float(signal[r.image][r.mask].mean()))
                          for r in regions])
        self.image_of = np.array([r.image for r in regions])
        channels = laguerre_gauss_channels(ROI_SIZE, CHANNELS)
        self.sets = {}
        for name, twin in absent.items():
            present = lesion_rois(held.window.inverse(images[name]), held.background, regions,
                                  signs)
            missing = lesion_rois(held.window.inverse(twin), held.background, regions, signs)
            self.sets[name] = observer_statistic(present, missing, channels)

    def describe(self) -> str:
        """The task in one line, for the protocol record."""
        return (f"channelized Hotelling, {CHANNELS} Laguerre-Gauss channels (width 6 px), "
                f"{ROI_SIZE}x{ROI_SIZE} ROIs on {self.image_of.size} lesions vs their "
                "lesion-free twins, background known exactly, two-fold holdout")

    def __call__(self, name: str, counts: np.ndarray) -> dict[str, float]:
        # Slices are the resampling unit: each lesion of a drawn slice, as often as it was drawn.
        rois = np.repeat(np.arange(self.image_of.size), counts[self.image_of])
        if rois.size == 0:
            return {"model_observer_dprime": math.nan, "model_observer_auc": math.nan}
        result = self.sets[name](rois)
        return {"model_observer_dprime": result["d_prime"], "model_observer_auc": result["auc"]}
