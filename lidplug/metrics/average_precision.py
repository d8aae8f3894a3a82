"""Mean average precision at one IoU threshold (mAP@0.5 by default), COCO style.

Computed by torchmetrics' ``MeanAveragePrecision`` with its default ``pycocotools`` backend (the
COCO reference evaluator): per image, detections are matched greedily by score to the unmatched
ground truth of highest IoU >= the threshold (duplicates are false positives, unlike the FROC's
ignored duplicates); precision is then accumulated over all images and averaged at the 101 COCO
recall points. Only IoU is offered: pycocotools has no IoBB. Lesion detection is scored
class-agnostic by default (all boxes one class), as DeepLesion does.

Cost: one pycocotools evaluation (tens of milliseconds for ~50 images of 20 boxes), so a 1000-
resample bootstrap takes tens of seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torchmetrics.detection import MeanAveragePrecision

from lidplug.metrics._detections import check_detections

__all__ = ["mean_average_precision"]


def _labels(item: Mapping[str, Tensor], n: int, class_agnostic: bool, name: str) -> Tensor:
    if class_agnostic:
        return torch.zeros(n, dtype=torch.int64)
    if "labels" not in item:
        raise ValueError(f"{name}: expected a 'labels' entry with class_agnostic=False")
    labels = torch.as_tensor(item["labels"]).detach().to("cpu", torch.int64).reshape(-1)
    if labels.numel() != n:
        raise ValueError(f"{name}: expected one label per box ({n}), got {labels.numel()}")
    return labels


def mean_average_precision(
    detections: Sequence[Mapping[str, Tensor]],
    targets: Sequence[Mapping[str, Tensor]],
    *,
    iou_threshold: float = 0.5,
    class_agnostic: bool = True,
    max_detections: int = 100,
) -> float:
    """COCO-style mAP at one IoU threshold (mAP@0.5 by default).

    Args:
        detections: per image ``dict(boxes=Tensor[N, 4] xyxy, scores=Tensor[N])`` (plus
            ``labels=Tensor[N]`` when ``class_agnostic=False``).
        targets: per image ``dict(boxes=Tensor[L, 4] xyxy)`` (plus ``labels`` when not
            class-agnostic); ``L`` may be 0.
        iou_threshold: IoU a detection needs to match a lesion, in ``(0, 1]``.
        class_agnostic: treat every box as one class (lesion); otherwise average over classes.
        max_detections: highest-scoring detections kept per image (COCO's ``maxDets``).

    Returns:
        mAP in ``[0, 1]``; NaN when the targets hold no box (precision-recall is undefined).

    Raises:
        TypeError, ValueError: on malformed inputs or parameters.
    """
    if not (isinstance(iou_threshold, int | float) and 0 < iou_threshold <= 1):
        raise ValueError(
            f"mean_average_precision: expected 0 < iou_threshold <= 1, got {iou_threshold!r}"
        )
    if isinstance(max_detections, bool) or not isinstance(max_detections, int) or (
        max_detections < 1
    ):
        raise ValueError(
            f"mean_average_precision: expected an int max_detections >= 1, got {max_detections!r}"
        )
    dets, gts = check_detections(detections, targets, "mean_average_precision")
    if sum(g.shape[0] for g in gts) == 0:
        return math.nan
    preds, tgts = [], []
    for i, ((boxes, scores), lesions) in enumerate(zip(dets, gts, strict=True)):
        preds.append({
            "boxes": boxes.float(),
            "scores": scores.float(),
            "labels": _labels(detections[i], boxes.shape[0], class_agnostic,
                              f"mean_average_precision: detections[{i}]"),
        })
        tgts.append({
            "boxes": lesions.float(),
            "labels": _labels(targets[i], lesions.shape[0], class_agnostic,
                              f"mean_average_precision: targets[{i}]"),
        })
    # torchmetrics wants exactly three maxDets values. Its "map" comes from pycocotools'
    # summarize(), which reads maxDets=100 whatever was asked (-1 otherwise), so the mean is
    # taken here from the accumulated precision table instead: [IoU, recall, class, area, maxDets].
    metric = MeanAveragePrecision(
        box_format="xyxy",
        iou_type="bbox",
        iou_thresholds=[float(iou_threshold)],
        max_detection_thresholds=[1, min(10, max_detections), max_detections],
        extended_summary=True,
        backend="pycocotools",
    )
    metric.warn_on_many_detections = False  # keeping the top max_detections is documented
    metric.update(preds, tgts)
    precision = metric.compute()["precision"][0, :, :, 0, -1]  # all areas, last maxDets
    # Classes without ground truth are -1 in the table; pycocotools' mean skips them too.
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.numel() else math.nan
