"""mAP@0.5 through torchmetrics/pycocotools: hand-computable COCO cases."""

import math

import pytest
import torch

from lidplug.metrics import mean_average_precision


def det(rows, labels=None):
    t = torch.tensor(rows, dtype=torch.float32).reshape(-1, 5)
    out = {"boxes": t[:, :4], "scores": t[:, 4]}
    if labels is not None:
        out["labels"] = torch.tensor(labels)
    return out


def tgt(boxes, labels=None):
    out = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)}
    if labels is not None:
        out["labels"] = torch.tensor(labels)
    return out


def test_perfect_detections():
    detections = [det([[0, 0, 10, 10, 0.9]]), det([[5, 5, 25, 25, 0.8]])]
    targets = [tgt([[0, 0, 10, 10]]), tgt([[5, 5, 25, 25]])]
    assert mean_average_precision(detections, targets) == pytest.approx(1.0)


def test_false_positive_ranked_first_halves_precision():
    detections = [det([[0, 0, 10, 10, 0.9], [50, 50, 60, 60, 0.95]])]
    assert mean_average_precision(detections, [tgt([[0, 0, 10, 10]])]) == pytest.approx(0.5)


def test_duplicates_are_false_positives():
    # Ranked TP, duplicate, TP over two lesions: precision 1 up to recall .5, then 2/3. COCO's
    # 101-point interpolation: 51 recall points at 1, 50 at 2/3.
    detections = [det([[0, 0, 10, 10, 0.9], [1, 0, 11, 10, 0.8]]), det([[0, 0, 8, 8, 0.7]])]
    targets = [tgt([[0, 0, 10, 10]]), tgt([[0, 0, 8, 8]])]
    assert mean_average_precision(detections, targets) == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_iou_threshold():
    # IoU 100 / 200 = 0.5: a match at 0.5, not at 0.6.
    detections, targets = [det([[0, 0, 10, 20, 0.9]])], [tgt([[0, 0, 10, 10]])]
    assert mean_average_precision(detections, targets) == pytest.approx(1.0)
    assert mean_average_precision(detections, targets, iou_threshold=0.6) == 0.0


def test_empty_cases():
    no_det = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)}
    assert mean_average_precision([no_det], [tgt([[0, 0, 10, 10]])]) == 0.0
    assert math.isnan(mean_average_precision([det([[0, 0, 1, 1, 0.5]])], [tgt([])]))


def test_lesion_free_images_add_false_positives():
    detections = [det([[0, 0, 10, 10, 0.5]]), det([[0, 0, 10, 10, 0.9]])]
    targets = [tgt([[0, 0, 10, 10]]), tgt([])]
    assert mean_average_precision(detections, targets) == pytest.approx(0.5)


def test_class_agnostic_by_default():
    detections = [det([[0, 0, 10, 10, 0.9]], labels=[2])]
    targets = [tgt([[0, 0, 10, 10]], labels=[1])]
    assert mean_average_precision(detections, targets) == pytest.approx(1.0)
    assert mean_average_precision(detections, targets, class_agnostic=False) == 0.0
    with pytest.raises(ValueError, match="expected a 'labels' entry"):
        mean_average_precision([det([[0, 0, 1, 1, 0.5]])], targets, class_agnostic=False)


def test_max_detections_keeps_the_highest_scores():
    detections = [det([[50, 50, 60, 60, 0.95], [0, 0, 10, 10, 0.9]])]
    targets = [tgt([[0, 0, 10, 10]])]
    assert mean_average_precision(detections, targets, max_detections=1) == 0.0
    assert mean_average_precision(detections, targets, max_detections=500) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"iou_threshold": 1.5}, "0 < iou_threshold <= 1"),
        ({"max_detections": 0}, "max_detections >= 1"),
    ],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mean_average_precision([det([[0, 0, 1, 1, 0.5]])], [tgt([[0, 0, 1, 1]])], **kwargs)
