"""Evaluation metrics: image quality on HU, lesion metrics, detection (FROC, mAP), a model
observer (CHO), bootstrap intervals.

* Image quality (:mod:`lidplug.metrics.image`): :func:`psnr`, :func:`ssim`, :func:`rmse_hu` and
  :func:`image_quality`, one value per image, on HU images clipped to an explicit window
  (default the models' ``[-1024, 3072]``; the module docstring states every convention),
  optionally over a mask such as :func:`body_mask` (the protocol's RMSE inside the body).
* Lesions (:mod:`lidplug.metrics.lesion`): :func:`lesion_regions` (mask, background ring and box
  of every lesion of an integer lesion map) and :func:`lesion_metrics` (contrast recovery, lesion
  RMSE, CNR per lesion).
* Model observer (:mod:`lidplug.metrics.observer`): :func:`channelized_hotelling` with
  :func:`laguerre_gauss_channels` (SKE detectability ``d'`` and AUC, two-fold cross-validated by
  default); :func:`observer_statistic` bootstraps it over ROI pairs; :func:`split_hotelling`
  is one train/test "reader" of the FDA LCD-CT toolbox's protocol (:mod:`lidplug.lcd`).
* Detection: :func:`froc` (DeepLesion-style box FROC: sensitivity at 0.125-8 FP per image and
  CPM, ``criterion="iou"``, ``"iobb"`` or ``"center"``) and :func:`mean_average_precision`
  (COCO mAP@0.5 via torchmetrics/pycocotools). Both take torchvision-style per-image lists:
  ``detections[i] = dict(boxes=Tensor[N, 4] xyxy, scores=Tensor[N])``,
  ``targets[i] = dict(boxes=Tensor[L, 4] xyxy)``.
* Intervals: :func:`bootstrap` (any statistic of a set of images), :func:`bootstrap_mean`
  (per-image values) and :func:`lesion_mean_statistic` (per-lesion values, resampled with their
  images), seeded percentile bootstrap over images (recentred on the estimate where replicates
  are biased, so every interval contains its estimate); :func:`judge`, the verdict on a paired
  difference's interval, and :func:`judge_metric`, the same with an evaluation's minimum counts
  (:data:`MIN_SLICES`, :data:`MIN_LESIONS`: below them, "too few to tell").

Example (one method's row of a report)::

    q = image_quality(denoised_hu, phantom_hu, mask=body_mask(phantom_hu))  # dict of Tensor[B]
    row = {k: bootstrap_mean(v, seed=0).as_dict() for k, v in q.items()}
    regions = lesion_regions(lesion_map, organ_map=tissue)          # once per test set
    m = lesion_metrics(denoised_hu, phantom_hu, regions)            # dict of arrays [R]
    cr_ci = bootstrap(lesion_mean_statistic(m["contrast_recovery"], m["image"], n), n, seed=0)
    cho_ci = bootstrap(observer_statistic(present_rois, absent_rois, laguerre_gauss_channels(32)),
                       len(present_rois), seed=0)                    # {"d_prime": ..., "auc": ...}
    matches = match_detections(detections, targets)                 # match once
    froc_ci = bootstrap(lambda i: froc_from_matches([matches[j] for j in i]).as_dict(),
                        len(matches), seed=0)                        # {"0.125": ..., "cpm": ...}
    map_ci = bootstrap(lambda i: mean_average_precision([detections[j] for j in i],
                                                        [targets[j] for j in i]),
                       len(targets), seed=0)
"""

from lidplug.metrics.average_precision import mean_average_precision
from lidplug.metrics.bootstrap import (
    MIN_LESIONS,
    MIN_SLICES,
    BootstrapInterval,
    bootstrap,
    bootstrap_mean,
    judge,
    judge_metric,
    lesion_mean_statistic,
)
from lidplug.metrics.froc import (
    DEFAULT_FP_RATES,
    FROCResult,
    ImageMatches,
    box_overlap,
    froc,
    froc_from_matches,
    match_detections,
)
from lidplug.metrics.image import (
    FULL_WINDOW,
    SOFT_TISSUE_WINDOW,
    body_mask,
    image_quality,
    psnr,
    rmse_hu,
    ssim,
)
from lidplug.metrics.lesion import LesionRegion, lesion_metrics, lesion_regions
from lidplug.metrics.observer import (
    ObserverResult,
    channelized_hotelling,
    laguerre_gauss_channels,
    observer_statistic,
    split_hotelling,
)

__all__ = [
    "DEFAULT_FP_RATES",
    "FULL_WINDOW",
    "MIN_LESIONS",
    "MIN_SLICES",
    "SOFT_TISSUE_WINDOW",
    "BootstrapInterval",
    "FROCResult",
    "ImageMatches",
    "LesionRegion",
    "ObserverResult",
    "body_mask",
    "bootstrap",
    "bootstrap_mean",
    "box_overlap",
    "channelized_hotelling",
    "froc",
    "froc_from_matches",
    "image_quality",
    "judge",
    "judge_metric",
    "laguerre_gauss_channels",
    "lesion_mean_statistic",
    "lesion_metrics",
    "lesion_regions",
    "match_detections",
    "mean_average_precision",
    "observer_statistic",
    "psnr",
    "rmse_hu",
    "split_hotelling",
    "ssim",
]
