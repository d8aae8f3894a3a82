"""Fake (meta) kernels of the C++ ops, registered with ``torch.library``.

The schemas, the CPU/CUDA kernels and the autograd formulas (each forward op's backward is its
registered backward op) live in ``csrc/``; what Python adds here is what ``torch.compile``
needs: shape-only kernels to trace with.

The fake kernels check what they can without tensor values (ranks, shapes, dtypes, devices,
scales), as the C++ ops do: the dispatcher also picks them for a call where *one* input is a
meta tensor and the others are real, and that call must raise, not return an uninitialised
tensor.
"""

from __future__ import annotations

import torch

from lidplug.ops import _inputs

__all__ = ["register"]

_LIB = "lidplug"


def _check_output_size(pooled_height, pooled_width):
    if pooled_height <= 0 or pooled_width <= 0:
        raise ValueError(
            f"output_size: expected positive sizes, got ({pooled_height}, {pooled_width})")


def _check_backward(like, name, rois, heights, widths, spatial_scales):
    """The backward ops' checks that need no values: the boxes beside ``like``, the levels."""
    if rois.device != like.device:
        raise ValueError(f"boxes: expected device {like.device} like {name}, got {rois.device}")
    if not heights:
        raise ValueError("expected at least one feature level, got none")
    if not len(heights) == len(widths) == len(spatial_scales):
        raise ValueError("roi_pool_backward: expected one height, width and scale per level")


def _fake_roi_pool(features, rois, spatial_scales, pooled_height, pooled_width,
                   sampling_ratio=2, aligned=False):
    _inputs.check_structure(list(features), None, rois, list(spatial_scales))
    _check_output_size(pooled_height, pooled_width)
    f = features[0]
    return f.new_empty((rois.shape[0], f.shape[1], pooled_height, pooled_width))


def _fake_roi_pool_backward(grad, rois, spatial_scales, batch_size, channels, heights, widths,
                            sampling_ratio, aligned, deterministic, dtype):
    _check_backward(grad, "grad", rois, heights, widths, spatial_scales)
    return [grad.new_empty((batch_size, channels, h, w), dtype=dtype)
            for h, w in zip(heights, widths, strict=True)]


def _fake_loss_forward(features, ref_features, rois, spatial_scales, pooled_height,
                       pooled_width, sampling_ratio, aligned, reduction):
    _inputs.check_structure(list(features), list(ref_features), rois, list(spatial_scales))
    _check_output_size(pooled_height, pooled_width)
    f = features[0]
    acc = torch.float64 if f.dtype == torch.float64 else torch.float32
    shape = (rois.shape[0],) if reduction == "none" else ()
    # The pooled difference comes in the backend's layout (Backend::pooled_format in csrc/ops):
    # channels-last from the CPU kernels, which vectorise over channels; contiguous elsewhere.
    layout = torch.channels_last if f.device.type == "cpu" else torch.contiguous_format
    diff = torch.empty((rois.shape[0], f.shape[1], pooled_height, pooled_width), dtype=acc,
                       device=f.device, memory_format=layout)
    return f.new_empty(shape, dtype=acc), diff


def _fake_loss_backward(grad, diff, rois, spatial_scales, batch_size, channels, heights, widths,
                        sampling_ratio, aligned, reduction, deterministic, ref_grad, dtype):
    _check_backward(diff, "diff", rois, heights, widths, spatial_scales)
    if grad.dim() > 0 and grad.device != diff.device:
        raise ValueError(f"grad: expected device {diff.device} like diff, got {grad.device}")
    n = 2 if ref_grad else 1
    return [diff.new_empty((batch_size, channels, h, w), dtype=dtype)
            for _ in range(n) for h, w in zip(heights, widths, strict=True)]


def register() -> None:
    """Attach the fake kernels to ``torch.ops.lidplug.*`` (idempotent per process)."""
    if getattr(register, "done", False):
        return
    torch.library.register_fake(f"{_LIB}::roi_pool")(_fake_roi_pool)
    torch.library.register_fake(f"{_LIB}::roi_pool_backward")(_fake_roi_pool_backward)
    torch.library.register_fake(f"{_LIB}::_roi_perceptual_loss_forward")(_fake_loss_forward)
    torch.library.register_fake(f"{_LIB}::roi_perceptual_loss_backward")(_fake_loss_backward)
    register.done = True
