"""Box FROC on hand-built cases with known answers."""

import math

import numpy as np
import pytest
import torch

from lidplug.metrics import (
    DEFAULT_FP_RATES,
    box_overlap,
    froc,
    froc_from_matches,
    match_detections,
)


def det(*rows):
    """Detections from (x1, y1, x2, y2, score) rows."""
    t = torch.tensor(rows, dtype=torch.float32).reshape(-1, 5)
    return {"boxes": t[:, :4], "scores": t[:, 4], "labels": torch.ones(len(t), dtype=torch.int64)}


def tgt(*boxes):
    b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return {"boxes": b, "labels": torch.ones(len(b), dtype=torch.int64)}


def sens(result):
    return [result.sensitivity[r] for r in DEFAULT_FP_RATES]


def three_images():
    """Image 0: two lesions, one found twice (duplicate) plus an FP; image 1: no lesion, two FPs;
    image 2: one lesion found, plus a poorly overlapping box (FP)."""
    detections = [
        det([10, 10, 20, 20, 0.9], [11, 10, 21, 20, 0.8], [80, 80, 90, 90, 0.3]),
        det([0, 0, 5, 5, 0.7], [40, 40, 50, 50, 0.6]),
        det([30, 30, 40, 40, 0.5], [36, 36, 46, 46, 0.2]),
    ]
    targets = [tgt([10, 10, 20, 20], [50, 50, 60, 60]), tgt(), tgt([30, 30, 40, 40])]
    return detections, targets


def test_pooled_froc_with_duplicates_and_lesion_free_images():
    # Pooled by score: TP .9, duplicate .8 (ignored), FP .7, FP .6, TP .5, FP .3, FP .2, over
    # 3 images and 3 lesions: FP/image 0, 0, 1/3, 2/3, 2/3, 1, 4/3; sensitivity 1/3 ... 2/3.
    result = froc(*three_images())
    third = 1 / 3
    expected = [third, third, third, 2 * third, 2 * third, 2 * third, 2 * third]
    np.testing.assert_allclose(sens(result), expected)
    assert result.cpm == pytest.approx(11 / 21)
    assert result.n_images == 3 and result.n_lesions == 3
    np.testing.assert_allclose(result.curve_fp_per_image, [0, 0, 0, 1 / 3, 2 / 3, 2 / 3, 1, 4 / 3])
    np.testing.assert_allclose(
        result.curve_sensitivity, [0, third, third, third, third, 2 * third, 2 * third, 2 * third]
    )


def test_duplicate_is_not_counted_as_false_positive():
    detections, targets = three_images()
    # Drop the duplicate: the curve keeps the same operating points, so the same sensitivities.
    detections[0] = det([10, 10, 20, 20, 0.9], [80, 80, 90, 90, 0.3])
    assert sens(froc(detections, targets)) == pytest.approx(sens(froc(*three_images())))


def test_false_positives_on_lesion_free_images_count():
    detections, targets = three_images()
    without = froc([detections[0], detections[2]], [targets[0], targets[2]])
    # Two images, no lesion-free FPs: FP/image 0, .5, .5, 1, 1.5 -> sensitivity 2/3 already at 0.5.
    assert without.sensitivity[0.5] == pytest.approx(2 / 3)
    assert froc(detections, targets).sensitivity[0.5] == pytest.approx(1 / 3)


def test_linear_interpolation_across_tied_scores():
    # One TP at .9 in image 0; then a tie at .5: an FP in image 0 and a TP in image 1.
    # Points: (0, 0), (0, .5), (.5, 1): a sloped segment from (0, .5) to (.5, 1).
    detections = [det([0, 0, 10, 10, 0.9], [50, 50, 60, 60, 0.5]), det([20, 20, 30, 30, 0.5])]
    targets = [tgt([0, 0, 10, 10]), tgt([20, 20, 30, 30])]
    result = froc(detections, targets, fp_rates=[0.125, 0.25, 0.5, 1.0])
    assert [result.sensitivity[r] for r in (0.125, 0.25, 0.5, 1.0)] == pytest.approx(
        [0.625, 0.75, 1.0, 1.0]
    )


def test_interpolation_from_the_origin_when_all_scores_tie():
    # A single operating point (1.5 FP/image, sensitivity .5) joined linearly to (0, 0).
    detections = [det([0, 0, 10, 10, 0.5], [50, 50, 60, 60, 0.5]),
                  det([0, 0, 5, 5, 0.5], [40, 40, 45, 45, 0.5])]
    targets = [tgt([0, 0, 10, 10]), tgt([20, 20, 30, 30])]
    result = froc(detections, targets, fp_rates=[0.125, 1.0, 1.5, 2.0])
    assert list(result.sensitivity.values()) == pytest.approx([0.5 / 12, 1 / 3, 0.5, 0.5])


def test_staircase_between_distinct_scores():
    # FP then TP with distinct scores: sensitivity 0 until one FP is allowed, then 1.
    detections = [det([50, 50, 60, 60, 0.9], [0, 0, 10, 10, 0.8])]
    result = froc(detections, [tgt([0, 0, 10, 10])], fp_rates=[0.5, 0.999, 1.0, 2.0])
    assert list(result.sensitivity.values()) == [0.0, 0.0, 1.0, 1.0]


def test_no_detections_at_all():
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)}
    result = froc([empty, empty], [tgt([0, 0, 10, 10]), tgt()])
    assert sens(result) == [0.0] * 7
    assert result.cpm == 0.0
    assert result.curve_fp_per_image.tolist() == [0.0]


def test_all_lesions_found_without_false_positives():
    result = froc([det([0, 0, 10, 10, 0.3])], [tgt([0, 0, 10, 10])])
    assert sens(result) == [1.0] * 7 and result.cpm == 1.0


def test_no_lesions_gives_nan():
    result = froc([det([0, 0, 10, 10, 0.3])], [tgt()])
    assert math.isnan(result.cpm) and all(math.isnan(s) for s in sens(result))


def test_one_detection_can_find_two_lesions():
    # IoU 1 and 0.9 with the two lesions: both are found by it, as in the DeepLesion code.
    detections = [det([0, 0, 10, 10, 0.9])]
    targets = [tgt([0, 0, 10, 10], [0, 0, 10, 9])]
    assert froc(detections, targets, criterion="iou").sensitivity[1.0] == 1.0


def test_iou_threshold_is_inclusive():
    # IoU of [0, 0, 10, 10] and [0, 0, 10, 20] is exactly 100 / 200 = 0.5.
    result = froc([det([0, 0, 10, 20, 0.9])], [tgt([0, 0, 10, 10])])
    assert result.sensitivity[0.125] == 1.0


def test_iobb_divides_by_the_detected_box():
    lesion = tgt([0, 0, 40, 40])
    small_inside = [det([10, 10, 20, 20, 0.9])]  # IoU 100/1600, IoBB 1
    assert froc(small_inside, [lesion], criterion="iou").cpm == 0.0
    assert froc(small_inside, [lesion], criterion="iobb").cpm == 1.0
    big_around = [det([0, 0, 160, 160, 0.9])]  # IoU = IoBB = 1600/25600: a miss either way
    assert froc(big_around, [lesion], criterion="iobb").cpm == 0.0


def test_center_rule_box_overlap():
    lesion = torch.tensor([[10.0, 10, 20, 20]])
    detected = torch.tensor([
        [12.0, 12, 16, 16],    # centre (14, 14): inside
        [16.0, 10, 24, 14],    # centre (20, 12): on the right border, which counts
        [10.0, 0, 30, 20],     # centre (20, 10): on a corner
        [21.0, 12, 25, 16],    # centre (23, 14): outside
        [-40.0, -40, 40, 40],  # huge box covering the lesion, centre (0, 0): a miss
        [5.0, 5, 35, 35],      # big box centred on the lesion (20, 20): its corner, a hit
    ])
    hits = box_overlap(detected, lesion, "center")[:, 0]
    assert hits.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 1.0]


def test_center_rule_froc():
    lesion = tgt([10, 10, 14, 14])  # a 4-pixel lesion
    shifted = [det([11, 11, 15, 15, 0.9])]  # IoU 9/23 < 0.5, centre (13, 13) inside
    assert froc(shifted, [lesion], criterion="iou").cpm == 0.0
    assert froc(shifted, [lesion], criterion="center").cpm == 1.0
    huge = [det([-100, -100, 100, 100, 0.9])]  # covers everything, centre (0, 0) misses
    result = froc(huge, [lesion], criterion="center")
    assert result.cpm == 0.0 and result.curve_fp_per_image[-1] == 1.0
    # The overlap is 1 or 0, so every threshold in (0, 1] gives the same hits.
    assert froc(shifted, [lesion], criterion="center", threshold=1.0).cpm == 1.0
    assert froc(shifted, [lesion], criterion="center", threshold=0.01).cpm == 1.0


def test_box_overlap_values():
    a = torch.tensor([[0.0, 0, 10, 10], [5, 5, 15, 15], [0, 0, 0, 10]])
    b = torch.tensor([[0.0, 0, 10, 10], [0, 0, 20, 20]])
    iou = box_overlap(a, b, "iou")
    iobb = box_overlap(a, b, "iobb")
    np.testing.assert_allclose(iou.numpy(), [[1, 0.25], [25 / 175, 0.25], [0, 0]])
    np.testing.assert_allclose(iobb.numpy(), [[1, 1], [0.25, 1], [0, 0]])


def test_result_does_not_depend_on_detection_order():
    detections, targets = three_images()
    shuffled = [{k: v.flip(0) for k, v in d.items()} for d in detections]
    assert sens(froc(shuffled, targets)) == sens(froc(detections, targets))


def test_matches_resample_like_the_images_they_came_from():
    detections, targets = three_images()
    matches = match_detections(detections, targets)
    idx = [2, 0, 2]
    direct = froc([detections[i] for i in idx], [targets[i] for i in idx])
    pooled = froc_from_matches([matches[i] for i in idx])
    assert sens(pooled) == sens(direct)


def test_as_dict_keys():
    d = froc(*three_images()).as_dict()
    assert list(d) == ["0.125", "0.25", "0.5", "1", "2", "4", "8", "cpm"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"criterion": "giou"}, "expected criterion in"),
        ({"threshold": 0.0}, "expected 0 < threshold <= 1"),
        ({"fp_rates": [0.5, -1]}, "expected positive finite FP rates"),
        ({"fp_rates": []}, "expected positive finite FP rates"),
    ],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        froc(*three_images(), **kwargs)


@pytest.mark.parametrize(
    ("detections", "targets", "error", "message"),
    [
        ([det([0, 0, 1, 1, 0.5])], [], ValueError, "got 1 and 0"),
        ([{"boxes": torch.zeros(2, 4), "scores": torch.zeros(3)}], [tgt()], ValueError,
         r"detections\[0\]: expected one score per box \(2\), got 3"),
        ([{"boxes": torch.zeros(2, 5), "scores": torch.zeros(2)}], [tgt()], ValueError,
         r"expected boxes of shape \[N, 4\]"),
        ([{"scores": torch.zeros(0)}], [tgt()], ValueError, "expected a 'boxes' entry"),
        ([det([0, 0, 1, 1, 0.5])], [tgt([5, 5, 1, 1])], ValueError, r"targets\[0\]: expected xyxy"),
        ([det([0, 0, 1, 1, 0.5])], [torch.zeros(1, 4)], TypeError, "expected a dict"),
        ({"boxes": torch.zeros(0, 4)}, [tgt()], TypeError, "expected detections as a list"),
        ([det([0, 0, 1, float("nan"), 0.5])], [tgt()], ValueError, "expected finite"),
    ],
)
def test_malformed_inputs(detections, targets, error, message):
    with pytest.raises(error, match=message):
        froc(detections, targets)


def test_no_images():
    with pytest.raises(ValueError, match="expected at least one image"):
        froc([], [])


def test_box_overlap_accepts_integer_boxes_and_checks_shapes():
    a = torch.tensor([[0, 0, 10, 10]])
    assert box_overlap(a, a.double(), "iobb").item() == 1.0
    with pytest.raises(ValueError, match=r"expected lesions of shape \[N, 4\], got \(4,\)"):
        box_overlap(a, a[0])


def _naive_froc(detections, targets, rates, threshold=0.5):
    """The rules by hand, one detection at a time (distinct scores): pooled by score, per-image
    found flags, duplicates ignored; sensitivity at a rate = best over score thresholds whose
    FP per image stays within it."""
    pooled = sorted(
        ((float(s), i, b) for i, d in enumerate(detections)
         for b, s in zip(d["boxes"], d["scores"], strict=True)),
        key=lambda item: -item[0],
    )
    found = [torch.zeros(len(t["boxes"]), dtype=torch.bool) for t in targets]
    n_lesions = sum(len(t["boxes"]) for t in targets)
    tp = fp = 0
    points = [(0, 0)]
    for _, i, box in pooled:
        hit = box_overlap(box[None], targets[i]["boxes"], "iou")[0] >= threshold
        if not hit.any():
            fp += 1
        else:
            tp += int((hit & ~found[i]).sum())
            found[i] |= hit
        points.append((fp, tp))
    n = len(detections)
    return [max(t for f, t in points if f / n <= rate) / n_lesions for rate in rates]


@pytest.mark.parametrize("seed", range(3))
def test_agrees_with_a_naive_implementation(seed):
    g = torch.Generator().manual_seed(seed)
    detections, targets = [], []
    for _ in range(12):
        lesions = torch.rand(int(torch.randint(0, 3, (1,), generator=g)), 2, generator=g) * 40
        size = 8 + torch.rand(len(lesions), 2, generator=g) * 8
        lesions = torch.cat([lesions, lesions + size], 1)
        # Detections: jittered copies of the lesions (some good, some poor) plus random boxes.
        jittered = lesions.repeat(2, 1) + torch.randn(2 * len(lesions), 4, generator=g) * 3
        jittered[:, 2:] = torch.maximum(jittered[:, 2:], jittered[:, :2] + 1)
        noise = torch.rand(3, 2, generator=g) * 50
        boxes = torch.cat([jittered, torch.cat([noise, noise + 10], 1)])
        scores = torch.rand(len(boxes), generator=g)
        detections.append({"boxes": boxes, "scores": scores})
        targets.append({"boxes": lesions})
    rates = [0.1, 0.25, 0.7, 1.0, 1.6, 2.2, 3.5]
    expected = _naive_froc(detections, targets, rates)
    assert len(set(expected)) >= 3  # the case exercises the curve, not just its ends
    assert list(froc(detections, targets, fp_rates=rates).sensitivity.values()) == pytest.approx(
        expected
    )
