"""Random pyramids and boxes shared by the op tests (and the benchmarks' shapes)."""

from __future__ import annotations

import torch

IMPLS = ["compiled", "reference"]


def pyramid(batch, channels, image, num_levels, *, dtype=torch.float32, device="cpu",
            generator=None, first_stride=4):
    """FPN-like levels for an ``image`` x ``image`` input: strides 4, 8, 16, ... (finest first)."""
    levels, scales = [], []
    for i in range(num_levels):
        stride = first_stride * 2**i if num_levels > 1 else first_stride
        size = max(image // stride, 1)
        levels.append(torch.randn(batch, channels, size, size, generator=generator,
                                  dtype=torch.float64).to(dtype=dtype, device=device))
        scales.append(1.0 / stride)
    return levels, scales


def random_boxes(batch, per_image, image, *, dtype=torch.float32, device="cpu", generator=None,
                 min_size=2.0, max_size=None):
    """A list of Tensor[L, 4] per image: sizes from ``min_size`` to ``max_size`` (default: the
    image, log-uniform so every FPN level is hit), some partly outside the image, every 8th one
    inverted along x and every 8th from the 5th inverted along both axes."""
    max_size = max_size or float(image)
    out = []
    for _ in range(batch):
        u = torch.rand(per_image, 4, generator=generator, dtype=torch.float64)
        size = min_size * (max_size / min_size) ** u[:, 2:]  # log-uniform: every FPN level is hit
        start = u[:, :2] * (image + 0.2 * image) - 0.2 * image - 0.3 * size
        boxes = torch.cat([start, start + size], dim=1)
        # Every 8th box has x1 > x2 (negative area): torchvision pools it as zeros on an FPN,
        # as a 1-px box (aligned=False) or as zeros (aligned=True) on one level.
        boxes[::8, [0, 2]] = boxes[::8, [2, 0]]
        # Inverted along both axes the area is positive: an FPN pools it from a level, and with
        # aligned=True and a fixed sampling_ratio its samples run backwards on both axes.
        boxes[4::8] = boxes[4::8][:, [2, 3, 0, 1]]
        out.append(boxes.to(dtype=dtype, device=device))
    return out


def to_rois(boxes):
    """List of Tensor[L_i, 4] -> Tensor[K, 5] (batch index first)."""
    return torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], 1) for i, b in enumerate(boxes)])
