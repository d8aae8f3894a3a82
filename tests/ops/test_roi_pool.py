"""lidplug.ops.roi_pool against torchvision's roi_align / MultiScaleRoIAlign."""

import pytest
import torch
from roi_cases import pyramid, random_boxes, to_rois

from lidplug import ops
from lidplug.ops._torchvision_path import torchvision_roi_pool

CONFIGS = [
    # (batch, channels, image, levels, boxes per image)
    (2, 3, 64, 1, 5),
    (3, 4, 128, 4, 6),
    (1, 2, 96, 3, 9),
]


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("config", CONFIGS)
def test_matches_torchvision(impl, config, sampling_ratio, aligned):
    batch, channels, image, num_levels, per_image = config
    g = torch.Generator().manual_seed(hash((config, sampling_ratio, aligned)) % 2**31)
    levels, scales = pyramid(batch, channels, image, num_levels, generator=g)
    levels = [t.requires_grad_() for t in levels]
    boxes = random_boxes(batch, per_image, image, generator=g)
    expected = torchvision_roi_pool(levels, boxes, (7, 7), scales, sampling_ratio, aligned)
    got = ops.roi_pool(levels, to_rois(boxes), 7, scales, sampling_ratio, aligned)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)

    grad = torch.randn_like(expected)
    want = torch.autograd.grad(expected, levels, grad, allow_unused=True, materialize_grads=True)
    have = torch.autograd.grad(got, levels, grad, allow_unused=True, materialize_grads=True)
    for w, h in zip(want, have, strict=True):
        torch.testing.assert_close(h, w, rtol=1e-5, atol=1e-5)


def test_list_boxes_and_mapping_features_equal_tensor_form(impl):
    g = torch.Generator().manual_seed(1)
    levels, scales = pyramid(2, 3, 128, 3, generator=g)
    boxes = random_boxes(2, 4, 128, generator=g)
    mapping = {"p2": levels[0], "p3": levels[1], "p4": levels[2]}
    a = ops.roi_pool(mapping, boxes, (5, 3), scales)
    b = ops.roi_pool(levels, to_rois(boxes), (5, 3), scales)
    assert a.shape == (8, 3, 5, 3)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_scales_inferred_from_image_size(impl):
    g = torch.Generator().manual_seed(2)
    levels, scales = pyramid(1, 2, 128, 4, generator=g)
    boxes = random_boxes(1, 6, 128, generator=g)
    a = ops.roi_pool(levels, boxes, 7, image_size=(128, 128))
    b = ops.roi_pool(levels, boxes, 7, scales)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_accumulates_in_float32(impl, dtype):
    g = torch.Generator().manual_seed(3)
    levels, scales = pyramid(2, 4, 128, 4, generator=g)
    boxes = random_boxes(2, 5, 128, generator=g)
    expected = torchvision_roi_pool(levels, boxes, (7, 7), scales)  # float32 oracle
    got = ops.roi_pool([t.to(dtype) for t in levels], to_rois(boxes), 7, scales)
    assert got.dtype == dtype
    tol = 1e-2 if dtype == torch.float16 else 3e-2
    torch.testing.assert_close(got.float(), expected, rtol=tol, atol=tol)


def test_module_form_matches_function():
    g = torch.Generator().manual_seed(4)
    levels, scales = pyramid(1, 2, 64, 2, generator=g)
    boxes = random_boxes(1, 3, 64, generator=g)
    module = ops.RoIPyramidAlign(4, scales, sampling_ratio=0, aligned=True)
    torch.testing.assert_close(module(levels, boxes), ops.roi_pool(levels, boxes, 4, scales, 0, True))
    assert "sampling_ratio=0" in repr(module)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(5)
    levels, scales = pyramid(2, 2, 32, 2, dtype=torch.float64, generator=g)
    levels = [t.requires_grad_() for t in levels]
    rois = to_rois(random_boxes(2, 3, 32, dtype=torch.float64, generator=g))
    for aligned in (False, True):
        assert torch.autograd.gradcheck(
            lambda *lv, al=aligned: ops.roi_pool(list(lv), rois, 3, scales, 0, al), levels)
