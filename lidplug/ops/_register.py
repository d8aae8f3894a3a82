"""Autograd formulas and fake (meta) kernels of the C++ ops, registered with ``torch.library``.

The schemas and the CPU/CUDA kernels live in ``csrc/``; what Python adds here is what
``torch.compile`` and autograd need: shape-only kernels to trace with, and the backward of each
op as a call to its separately registered backward op.

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


def _pyramid_shape(features):
    """(batch, channels, heights, widths): what a backward op needs to size the level grads."""
    f = features[0]
    return f.shape[0], f.shape[1], [t.shape[2] for t in features], [t.shape[3] for t in features]


def _setup_pool(ctx, inputs, output):
    features, rois, scales, _, _, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois)
    ctx.meta = (scales, *_pyramid_shape(features), sampling_ratio, aligned)
    ctx.dtype = features[0].dtype


def _backward_pool(ctx, grad):
    (rois,) = ctx.saved_tensors
    grads = torch.ops.lidplug.roi_pool_backward(
        grad, rois, *ctx.meta, torch.are_deterministic_algorithms_enabled(), ctx.dtype)
    return grads, None, None, None, None, None, None


def _setup_loss(ctx, inputs, output):
    features, _, rois, scales, _, _, sampling_ratio, aligned, reduction = inputs
    _, diff = output
    # Only the small pooled difference is kept: neither pyramid is needed for the backward.
    ctx.save_for_backward(rois, diff)
    ctx.mark_non_differentiable(diff)
    # No zeros for the gradient of `diff` (never used): a tensor the size of the pooled output.
    ctx.set_materialize_grads(False)
    ctx.meta = (scales, *_pyramid_shape(features), sampling_ratio, aligned, reduction)
    ctx.dtype = features[0].dtype
    ctx.num_levels = len(features)


def _backward_loss(ctx, grad, _grad_diff):
    rois, diff = ctx.saved_tensors
    # For a Tensor[] input autograd reports one flag per tensor.
    need_features, need_ref = (any(f) if isinstance(f, (list, tuple)) else bool(f)
                               for f in ctx.needs_input_grad[:2])
    n = ctx.num_levels
    none = [None] * n  # a Tensor[] input takes a list of gradients, even of Nones
    if grad is None or not (need_features or need_ref):  # no gradient reached the loss
        return none, none, None, None, None, None, None, None, None
    grads = torch.ops.lidplug.roi_perceptual_loss_backward(
        grad, diff, rois, *ctx.meta, torch.are_deterministic_algorithms_enabled(), need_ref,
        ctx.dtype)
    grad_features = grads[:n] if need_features else none
    grad_ref = grads[n:] if need_ref else none
    return grad_features, grad_ref, None, None, None, None, None, None, None


def register() -> None:
    """Attach fake kernels and autograd to ``torch.ops.lidplug.*`` (idempotent per process)."""
    if getattr(register, "done", False):
        return
    torch.library.register_fake(f"{_LIB}::roi_pool")(_fake_roi_pool)
    torch.library.register_fake(f"{_LIB}::roi_pool_backward")(_fake_roi_pool_backward)
    torch.library.register_fake(f"{_LIB}::_roi_perceptual_loss_forward")(_fake_loss_forward)
    torch.library.register_fake(f"{_LIB}::roi_perceptual_loss_backward")(_fake_loss_backward)
    torch.library.register_autograd(f"{_LIB}::roi_pool", _backward_pool, setup_context=_setup_pool)
    torch.library.register_autograd(f"{_LIB}::_roi_perceptual_loss_forward", _backward_loss,
                                    setup_context=_setup_loss)
    register.done = True
