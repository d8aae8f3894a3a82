"""Pure-PyTorch reference of the lidplug ops.

Three jobs at once: the fallback when the compiled library is unavailable, the oracle of the
tests (besides torchvision itself), and the unfused baseline of the benchmarks. It follows
torchvision's RoIAlign to the letter (sampling grid, bilinear taps, out-of-map rule, level
mapping) and is differentiable through ordinary autograd. Boxes are processed in groups that
share a sampling grid, so ``sampling_ratio > 0`` is one vectorised pass per level.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["box_levels", "roi_perceptual_loss_reference", "roi_pool_reference"]


def box_levels(rois: Tensor, spatial_scales: list[float]) -> Tensor:
    """Level index of each box by torchvision's MultiScaleRoIAlign rule.

    Args:
        rois: Tensor[K, 5] of (batch_index, x1, y1, x2, y2) in input-image pixels.
        spatial_scales: one scale per level, finest first.

    Returns:
        Tensor[K] int64 level indices; -1 for a box of negative or NaN area (pooled as zeros).
    """
    if len(spatial_scales) == 1:
        return torch.zeros(rois.shape[0], dtype=torch.int64, device=rois.device)
    k_min = round(-math.log2(spatial_scales[0]))
    k_max = round(-math.log2(spatial_scales[-1]))
    boxes = rois[:, 1:]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    # Same ops, dtype and order as torchvision's LevelMapper (canonical 224 at level 4).
    lvl = torch.floor(4 + torch.log2(torch.sqrt(area) / 224) + torch.tensor(1e-6, dtype=area.dtype))
    level = torch.clamp(lvl, min=k_min, max=k_max).nan_to_num(k_min).to(torch.int64) - k_min
    # Negative area: torchvision's NaN level matches no level, so the box pools zeros (-1 here).
    # A NaN area (inf x 0, from a side that overflows) gives torchvision a NaN level too.
    return torch.where(area >= 0, level, torch.full_like(level, -1))


def _axis_taps(v: Tensor, size: int):
    # Vectorised torchvision bilinear rule along one axis: samples more than one pixel outside
    # weigh nothing; samples in (-1, 0] clamp to 0; the last pixel is its own neighbour. NaN
    # samples are outside too; outside samples read pixel 0 (with weight 0), so that neither a
    # NaN nor an inf reaches the integer conversion.
    inside = (v >= -1) & (v <= size)
    v = torch.where(inside, v, torch.zeros_like(v)).clamp(min=0)
    low = v.floor().to(torch.int64)
    edge = low >= size - 1
    low = torch.where(edge, torch.full_like(low, size - 1), low)
    high = torch.where(edge, low, low + 1)
    v = torch.where(edge, low.to(v.dtype), v)
    frac = v - low.to(v.dtype)
    inside_f = inside.to(v.dtype)
    return low, high, (1 - frac) * inside_f, frac * inside_f


def _pool_group(level: Tensor, rois: Tensor, scale: float, ph: int, pw: int, gh: int, gw: int,
                aligned: bool) -> Tensor:
    """RoIAlign of boxes that share one sampling grid on one level: Tensor[G, C, ph, pw]."""
    dtype = rois.dtype
    _, _, height, width = level.shape
    offset = 0.5 if aligned else 0.0
    start_w = rois[:, 1] * scale - offset
    start_h = rois[:, 2] * scale - offset
    roi_w = rois[:, 3] * scale - offset - start_w
    roi_h = rois[:, 4] * scale - offset - start_h
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1), roi_h.clamp(min=1)
    bin_w, bin_h = roi_w / pw, roi_h / ph

    def coords(start, binsize, pooled, grid):
        index = torch.arange(pooled, dtype=dtype, device=rois.device)
        sub = torch.arange(grid, dtype=dtype, device=rois.device) + 0.5
        offsets = index[:, None] * binsize[:, None, None] + sub * binsize[:, None, None] / grid
        return start[:, None, None] + offsets  # [G, pooled, grid]

    ys = coords(start_h, bin_h, ph, gh).flatten(1)
    xs = coords(start_w, bin_w, pw, gw).flatten(1)
    y0, y1, wy0, wy1 = _axis_taps(ys, height)
    x0, x1, wx0, wx1 = _axis_taps(xs, width)
    b = rois[:, 0].to(torch.int64)[:, None, None]

    def tap(yi, xi):
        # Advanced indices around the channel slice put the channel last: [G, Ny, Nx, C].
        return level[b, :, yi[:, :, None], xi[:, None, :]].to(dtype)

    val = (wy0[:, :, None, None] * wx0[:, None, :, None] * tap(y0, x0)
           + wy0[:, :, None, None] * wx1[:, None, :, None] * tap(y0, x1)
           + wy1[:, :, None, None] * wx0[:, None, :, None] * tap(y1, x0)
           + wy1[:, :, None, None] * wx1[:, None, :, None] * tap(y1, x1))
    g = rois.shape[0]
    val = val.reshape(g, ph, gh, pw, gw, -1).sum(dim=(2, 4)) / max(gh * gw, 1)
    return val.permute(0, 3, 1, 2)


def _grid_sizes(rois: Tensor, scales: Tensor, ph: int, pw: int, sampling_ratio: int,
                aligned: bool) -> tuple[Tensor, Tensor]:
    if sampling_ratio > 0:
        full = torch.full((rois.shape[0],), sampling_ratio, dtype=torch.int64, device=rois.device)
        return full, full
    offset = 0.5 if aligned else 0.0
    roi_w = (rois[:, 3] * scales - offset) - (rois[:, 1] * scales - offset)
    roi_h = (rois[:, 4] * scales - offset) - (rois[:, 2] * scales - offset)
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1), roi_h.clamp(min=1)
    gh = torch.ceil(roi_h / ph).clamp(0, 1024).to(torch.int64)
    gw = torch.ceil(roi_w / pw).clamp(0, 1024).to(torch.int64)
    return gh, gw


def roi_pool_reference(levels: list[Tensor], rois: Tensor, output_size: tuple[int, int],
                       spatial_scales: list[float], sampling_ratio: int = 2,
                       aligned: bool = False) -> Tensor:
    """RoIAlign over a pyramid, as torchvision's roi_align / MultiScaleRoIAlign compute it.

    Args:
        levels: feature levels, each Tensor[B, C, H_l, W_l], finest first.
        rois: Tensor[K, 5] of (batch_index, x1, y1, x2, y2) in input-image pixels.
        output_size: (PH, PW).
        spatial_scales: one scale per level.
        sampling_ratio: samples per bin and axis; 0 means adaptive, ceil(box size / bins).
        aligned: shift box coordinates by -0.5 pixel (pixel-centre convention).

    Returns:
        Tensor[K, C, PH, PW] in float32 (float64 for float64 input).
    """
    ph, pw = output_size
    acc = torch.float64 if levels[0].dtype == torch.float64 else torch.float32
    num_rois, channels = rois.shape[0], levels[0].shape[1]
    if num_rois == 0:
        # Still part of the graph, so a loss over no boxes backpropagates zeros.
        return levels[0].flatten()[:0].to(acc).reshape(0, channels, ph, pw)
    out = levels[0].new_zeros((num_rois, channels, ph, pw), dtype=acc)
    rois = rois.to(acc)
    level_of = box_levels(rois, spatial_scales)
    scales = torch.tensor(spatial_scales, dtype=acc, device=rois.device)[level_of.clamp(min=0)]
    grid_h, grid_w = _grid_sizes(rois, scales, ph, pw, sampling_ratio, aligned)
    keys = torch.stack([level_of, grid_h, grid_w], dim=1)
    pieces, where = [], []
    for key in torch.unique(keys, dim=0).tolist():
        lvl, gh, gw = key
        idx = torch.nonzero((keys == torch.tensor(key, device=keys.device)).all(1)).flatten()
        if lvl < 0 or gh <= 0 or gw <= 0:
            continue  # no level, or an inverted aligned box with no samples: output stays zero
        pieces.append(_pool_group(levels[lvl], rois[idx], spatial_scales[lvl], ph, pw, gh, gw, aligned))
        where.append(idx)
    if pieces:
        # index_put keeps the result differentiable without in-place writes on a leaf.
        out = out.index_put((torch.cat(where),), torch.cat(pieces))
    return out


def roi_perceptual_loss_reference(levels: list[Tensor], ref_levels: list[Tensor], rois: Tensor,
                                  output_size: tuple[int, int], spatial_scales: list[float],
                                  sampling_ratio: int = 2, aligned: bool = False,
                                  reduction: str = "mean") -> Tensor:
    """Unfused ROI perceptual loss: pool both pyramids, then the mean squared difference.

    Returns:
        A scalar for ``mean``/``sum``, Tensor[K] (per-box mean) for ``none``; float32 (float64
        for float64 input).
    """
    pooled = roi_pool_reference(levels, rois, output_size, spatial_scales, sampling_ratio, aligned)
    pooled_ref = roi_pool_reference(ref_levels, rois, output_size, spatial_scales,
                                    sampling_ratio, aligned)
    sq = (pooled - pooled_ref).square()
    if reduction == "none":
        return sq.flatten(1).mean(1)
    if reduction == "sum" or sq.numel() == 0:
        return sq.sum()
    return sq.mean()
