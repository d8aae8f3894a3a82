"""The unfused torchvision composition that the lidplug ops must equal.

``roi_align`` for one level, ``MultiScaleRoIAlign`` for several (``aligned=False``, the only mode
it has), and per-level ``roi_align`` with torchvision's own LevelMapper for ``aligned=True``;
then ``F.mse_loss``. Tests use it as the oracle, benchmarks as the baseline to beat.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import initLevelMapper

__all__ = ["torchvision_roi_perceptual_loss", "torchvision_roi_pool"]


def _roi_align(feat: Tensor, rois: Tensor, output_size: tuple[int, int], scale: float,
               sampling_ratio: int, aligned: bool) -> Tensor:
    """``roi_align`` of Tensor[K, 5] boxes, except boxes that get no samples, which pool zeros.

    With ``aligned=True`` and an adaptive grid, a box drawn backwards by more than one bin gets
    a negative sample count (``ceil`` of a negative size). torchvision's CUDA kernel then runs no
    sample and returns zeros; its CPU kernel sizes a table by the negative count and raises
    (``cannot create std::vector larger than max_size()``). The zeros are the defined answer,
    and the lidplug ops give them on both devices.
    """
    if not aligned or sampling_ratio > 0 or rois.shape[0] == 0:
        return roi_align(feat, rois, output_size, scale, sampling_ratio, aligned)
    sizes = (rois[:, 3:5] * scale - 0.5) - (rois[:, 1:3] * scale - 0.5)  # roi_align's order
    grids = torch.ceil(sizes / torch.tensor(output_size[::-1], dtype=sizes.dtype))
    some = (grids > 0).all(1)
    out = feat.new_zeros((rois.shape[0], feat.shape[1], *output_size))
    idx = torch.where(some)[0]
    return out.index_put((idx,), roi_align(feat, rois[idx], output_size, scale, sampling_ratio,
                                           aligned))


def torchvision_roi_pool(levels: list[Tensor], boxes: list[Tensor],
                         output_size: tuple[int, int], spatial_scales: list[float],
                         sampling_ratio: int = 2, aligned: bool = False) -> Tensor:
    """RoIAlign with torchvision, boxes given as a list of Tensor[L_i, 4] per image.

    Returns:
        Tensor[K, C, PH, PW], boxes in image order (as ``torch.cat(boxes)``).
    """
    rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], 1) for i, b in enumerate(boxes)])
    if len(levels) == 1:
        return _roi_align(levels[0], rois, output_size, spatial_scales[0], sampling_ratio,
                          aligned)
    if not aligned:
        names = [str(i) for i in range(len(levels))]
        pooler = MultiScaleRoIAlign(names, output_size, sampling_ratio)
        # MultiScaleRoIAlign infers the scales from the image size; choose the size that gives ours.
        height = round(levels[0].shape[-2] / spatial_scales[0])
        width = round(levels[0].shape[-1] / spatial_scales[0])
        feats = OrderedDict(zip(names, levels, strict=True))
        return pooler(feats, boxes, [(height, width)] * levels[0].shape[0])
    k_min = -torch.log2(torch.tensor(spatial_scales[0])).item()
    k_max = -torch.log2(torch.tensor(spatial_scales[-1])).item()
    mapper = initLevelMapper(int(k_min), int(k_max))
    which = mapper(boxes)
    out = levels[0].new_zeros((rois.shape[0], levels[0].shape[1], *output_size))
    for lvl, (feat, scale) in enumerate(zip(levels, spatial_scales, strict=True)):
        idx = torch.where(which == lvl)[0]
        out = out.index_put((idx,), _roi_align(feat, rois[idx], output_size, scale,
                                               sampling_ratio, aligned))
    return out


def torchvision_roi_perceptual_loss(levels: list[Tensor], ref_levels: list[Tensor],
                                    boxes: list[Tensor], output_size: tuple[int, int],
                                    spatial_scales: list[float], sampling_ratio: int = 2,
                                    aligned: bool = False, reduction: str = "mean") -> Tensor:
    """Both pyramids pooled with torchvision, then ``F.mse_loss`` (``none``: per-box mean)."""
    pooled = torchvision_roi_pool(levels, boxes, output_size, spatial_scales, sampling_ratio,
                                  aligned)
    pooled_ref = torchvision_roi_pool(ref_levels, boxes, output_size, spatial_scales,
                                      sampling_ratio, aligned)
    if reduction == "none":
        return F.mse_loss(pooled, pooled_ref, reduction="none").flatten(1).mean(1)
    return F.mse_loss(pooled, pooled_ref, reduction=reduction)
