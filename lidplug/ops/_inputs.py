"""Turns the flexible public inputs of the ROI ops into the ops' one canonical form.

Public form: ``features`` one Tensor[B, C, H, W], a sequence, or a mapping (OrderedDict) of FPN
levels, finest first; ``boxes`` Tensor[K, 5] of (batch_index, x1, y1, x2, y2) or a list of
Tensor[L_i, 4], one per image, in input-image pixels (the ROI convention of DESIGN.md).
Canonical form: a list of levels, a Tensor[K, 5], a list of floats, an (int, int) pair.

The checks that the compiled ops make in C++ are mirrored by ``check_canonical`` for the
pure-PyTorch fallback, so both paths refuse the same inputs with the same words; the part that
needs no tensor values, ``check_structure``, also guards the fake (meta) kernels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["as_levels", "as_output_size", "as_rois", "as_scales", "check_canonical",
           "check_structure"]


def as_levels(features, name: str = "features") -> list[Tensor]:
    """One level or several (sequence / mapping) -> list of Tensor[B, C, H, W]."""
    if isinstance(features, Tensor):
        return [features]
    if isinstance(features, Mapping):
        features = list(features.values())
    if isinstance(features, Sequence) and all(isinstance(t, Tensor) for t in features):
        if not features:
            raise ValueError(f"{name}: expected at least one feature level, got none")
        return list(features)
    raise TypeError(
        f"{name}: expected a Tensor[B, C, H, W], or a sequence or OrderedDict of them, "
        f"got {type(features).__name__}"
    )


def as_rois(boxes, like: Tensor) -> Tensor:
    """Tensor[K, 5] as is, or a list of per-image Tensor[L_i, 4] -> Tensor[K, 5]."""
    if isinstance(boxes, Tensor):
        return boxes
    if isinstance(boxes, Sequence) and all(isinstance(b, Tensor) for b in boxes):
        rows = []
        for i, b in enumerate(boxes):
            if b.dim() != 2 or b.shape[1] != 4:
                raise ValueError(
                    f"boxes[{i}]: expected a Tensor[L, 4] of (x1, y1, x2, y2), got shape "
                    f"{tuple(b.shape)}"
                )
            if b.device != like.device:
                # torch.cat would raise a RuntimeError, or with meta boxes return meta rois.
                raise ValueError(
                    f"boxes[{i}]: expected device {like.device} like the features, got {b.device}"
                )
            index = torch.full_like(b[:, :1], i)
            rows.append(torch.cat([index, b], dim=1))
        if not rows:
            return like.new_zeros((0, 5))
        return torch.cat(rows, dim=0)
    raise TypeError(
        "boxes: expected a Tensor[K, 5] of (batch_index, x1, y1, x2, y2) or a list of "
        f"Tensor[L, 4] per image, got {type(boxes).__name__}"
    )


def as_output_size(output_size) -> tuple[int, int]:
    """7 -> (7, 7); (7, 5) stays."""
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    if (
        not isinstance(output_size, Sequence)
        or len(output_size) != 2
        or not all(isinstance(v, int) and v > 0 for v in output_size)
    ):
        raise ValueError(f"output_size: expected a positive int or (h, w), got {output_size!r}")
    return int(output_size[0]), int(output_size[1])


def as_scales(spatial_scales, levels: list[Tensor], image_size=None) -> list[float]:
    """One float per level; inferred from ``image_size`` as MultiScaleRoIAlign does when absent."""
    if spatial_scales is None:
        if image_size is None:
            raise ValueError(
                "spatial_scales: expected one scale per level (feature size / image size), or "
                "image_size=(H, W) to infer them from, got neither"
            )
        if (not isinstance(image_size, Sequence) or len(image_size) != 2
                or not all(isinstance(v, (int, float)) and v > 0 for v in image_size)):
            shown = tuple(image_size) if isinstance(image_size, Sequence) else image_size
            raise ValueError(f"image_size: expected two positive sizes (H, W), got {shown!r}")
        scales = []
        for level in levels:
            approx = level.shape[-2] / image_size[0]
            # Feature maps of strided backbones are powers of two smaller than the input.
            scales.append(2.0 ** round(math.log2(approx)))
        return scales
    if isinstance(spatial_scales, (int, float)):
        return [float(spatial_scales)]
    return [float(s) for s in spatial_scales]


def check_structure(levels: list[Tensor], ref_levels: list[Tensor] | None, rois: Tensor,
                    spatial_scales: list[float]) -> None:
    """The checks of the C++ ops that read no tensor values: ranks, shapes, dtypes, devices,
    scales. Raises ValueError.

    The fake (meta) kernels run them too: when any input is a meta tensor the dispatcher runs
    the fake kernel for the whole call, and without these checks a meta tensor beside real ones
    would give an uninitialised result instead of an error.
    """
    pyramids = [("features", levels)] + ([("ref_features", ref_levels)]
                                         if ref_levels is not None else [])
    for name, pyr in pyramids:
        if not pyr:
            raise ValueError(f"{name}: expected at least one feature level, got none")
        first = pyr[0]
        for i, t in enumerate(pyr):
            if t.dim() != 4:
                raise ValueError(
                    f"{name}[{i}]: expected a 4-D tensor [B, C, H, W], got shape {list(t.shape)}"
                )
            if t.shape[2] == 0 or t.shape[3] == 0:
                raise ValueError(
                    f"{name}[{i}]: expected a non-empty map (H, W > 0), got shape {list(t.shape)}"
                )
            if not t.is_floating_point():
                raise ValueError(f"{name}[{i}]: expected a floating-point tensor, got {t.dtype}")
            if t.shape[:2] != first.shape[:2]:
                raise ValueError(
                    f"{name}[{i}]: expected batch and channels {list(first.shape[:2])} like "
                    f"level 0, got {list(t.shape[:2])}"
                )
            if t.dtype != first.dtype or t.device != first.device:
                raise ValueError(
                    f"{name}[{i}]: expected dtype {first.dtype} on {first.device} like level 0, "
                    f"got {t.dtype} on {t.device}"
                )
    if ref_levels is not None:
        if len(ref_levels) != len(levels):
            raise ValueError(
                f"ref_features: expected as many levels as features ({len(levels)}), "
                f"got {len(ref_levels)}"
            )
        for i, (f, r) in enumerate(zip(levels, ref_levels, strict=True)):
            if f.shape != r.shape or f.dtype != r.dtype or f.device != r.device:
                raise ValueError(
                    f"ref_features[{i}]: expected shape {list(f.shape)}, dtype {f.dtype} on "
                    f"{f.device} like features[{i}], got {list(r.shape)}, {r.dtype} on {r.device}"
                )
    if len(levels) > 8:
        raise ValueError(f"expected at most 8 feature levels, got {len(levels)}")
    for i, s in enumerate(spatial_scales):
        if not (math.isfinite(s) and s > 0):
            raise ValueError(
                f"spatial_scales: expected positive finite scales, got {s} at level {i}"
            )
    if len(spatial_scales) != len(levels):
        raise ValueError(
            f"spatial_scales: expected one scale per level ({len(levels)}), "
            f"got {len(spatial_scales)}"
        )
    if len(levels) > 1:
        k_min = round(-math.log2(spatial_scales[0]))
        for i, s in enumerate(spatial_scales):
            if abs(s - 2.0 ** -(k_min + i)) > 1e-6 * 2.0 ** -(k_min + i):
                raise ValueError(
                    "spatial_scales: expected consecutive power-of-two scales, finest first, "
                    f"got {s} at level {i}"
                )
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(
            "boxes: expected a [K, 5] tensor of (batch_index, x1, y1, x2, y2), got shape "
            f"{list(rois.shape)}"
        )
    if not rois.is_floating_point():
        raise ValueError(f"boxes: expected a floating-point tensor, got {rois.dtype}")
    if rois.device != levels[0].device:
        raise ValueError(
            f"boxes: expected device {levels[0].device} like the features, got {rois.device}"
        )


def check_canonical(levels: list[Tensor], ref_levels: list[Tensor] | None, rois: Tensor,
                    spatial_scales: list[float]) -> None:
    """The checks of the C++ ops, for the pure-PyTorch path. Raises ValueError."""
    check_structure(levels, ref_levels, rois, spatial_scales)
    batch = levels[0].shape[0]
    finite = torch.isfinite(rois).all(1)
    b = rois[:, 0]
    ok = finite & (b >= 0) & (b < batch) & (b == b.floor())
    if not bool(ok.all()):
        k = int((~ok).nonzero()[0, 0])
        if not bool(finite[k]):
            raise ValueError(
                f"boxes[{k}]: expected finite coordinates, got {tuple(rois[k].tolist())}"
            )
        raise ValueError(
            f"boxes[{k}]: expected an integer batch index in [0, {batch}), got {float(b[k])}"
        )
