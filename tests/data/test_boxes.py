import numpy as np
import pytest
import torch

from lidplug.data import make_target, mask_to_box, validate_boxes


def test_mask_to_box_uses_pixel_edges():
    mask = torch.zeros(8, 10, dtype=torch.bool)
    mask[2:5, 3:9] = True  # rows 2..4, columns 3..8
    assert mask_to_box(mask).tolist() == [3.0, 2.0, 9.0, 5.0]
    corner = np.zeros((4, 4), bool)
    corner[3, 3] = True  # the last pixel: box reaches the image border exactly
    assert mask_to_box(corner).tolist() == [3.0, 3.0, 4.0, 4.0]


@pytest.mark.parametrize("mask", [torch.zeros(4, 4), torch.ones(2, 4, 4)])
def test_mask_to_box_rejects_empty_or_not_2d(mask):
    with pytest.raises(ValueError, match="mask: expected"):
        mask_to_box(mask)


def test_validate_boxes_accepts_edges_and_empty():
    out = validate_boxes([[0, 0, 10, 8]], (8, 10))
    assert out.dtype == torch.float32 and out.shape == (1, 4)
    assert validate_boxes([], (8, 10)).shape == (0, 4)


@pytest.mark.parametrize(
    ("boxes", "match"),
    [
        ([[1, 2, 3]], r"expected shape \[L, 4\]"),
        ([[5, 1, 5, 3]], "x1 < x2"),
        ([[1, 4, 3, 2]], "x1 < x2 and y1 < y2"),
        ([[0, 0, 11, 3]], "inside the 8x10 image"),
        ([[float("nan"), 0, 1, 1]], "finite"),
    ],
)
def test_validate_boxes_errors_say_expected_and_got(boxes, match):
    with pytest.raises(ValueError, match=match):
        validate_boxes(boxes, (8, 10), name="s1")


def test_validate_boxes_clips_with_warning():
    with pytest.warns(UserWarning, match="clipped 1 box"):
        out = validate_boxes([[-2, 1, 12, 9], [1, 1, 2, 2]], (8, 10), clip=True)
    assert out.tolist() == [[0, 1, 10, 8], [1, 1, 2, 2]]
    with pytest.raises(ValueError, match="x1 < x2"), pytest.warns(UserWarning):
        validate_boxes([[11, 1, 14, 3]], (8, 10), clip=True)  # wholly outside: empty after clip


def test_make_target_checks_labels():
    target = make_target([[1, 1, 3, 3]], [2], (8, 8))
    assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == [2]
    with pytest.raises(ValueError, match="expected 1 labels"):
        make_target([[1, 1, 3, 3]], [1, 1], (8, 8))
    with pytest.raises(ValueError, match="labels >= 1"):
        make_target([[1, 1, 3, 3]], [0], (8, 8))


@pytest.mark.parametrize("labels", [[1.9], [float("nan")], [torch.inf], ["1"]])
def test_make_target_refuses_labels_that_are_not_integers(labels):
    """Regression: a label of 1.9 became 1."""
    with pytest.raises((ValueError, TypeError), match="integer"):
        make_target([[1, 1, 3, 3]], labels, (8, 8))
    assert make_target([[1, 1, 3, 3]], [2.0], (8, 8))["labels"].tolist() == [2]
