"""The lesion box convention, fixed in one place, and the checks every dataset uses.

Convention (DESIGN.md): boxes are ``xyxy`` float32 in pixel coordinates of the image tensor, ``x``
along columns and ``y`` along rows, with ``0 <= x1 < x2 <= W`` and ``0 <= y1 < y2 <= H``. Pixel
``(row, col)`` covers the square ``[col, col + 1) x [row, row + 1)``, so the tight box of a mask
whose pixels span columns ``c0..c1`` and rows ``r0..r1`` is ``(c0, r0, c1 + 1, r1 + 1)``. This is
the convention of torchvision's detection models, so targets go to them unchanged.

Targets are torchvision style: ``dict(boxes=Tensor[L, 4] float32, labels=Tensor[L] int64)``; label 0
is background there, so lesion labels start at 1.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["make_target", "mask_to_box", "validate_boxes"]


def mask_to_box(mask: Tensor | np.ndarray) -> Tensor:
    """Tight ``xyxy`` box around the nonzero pixels of a 2D mask.

    Args:
        mask: ``[H, W]`` boolean (or 0/1) mask with at least one nonzero pixel.

    Returns:
        Tensor[4] float32 ``(x1, y1, x2, y2)`` with the pixel-edge convention of this module.

    Raises:
        ValueError: if the mask is not 2D or is empty.
    """
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask)
    if m.dim() != 2:
        raise ValueError(f"mask: expected a 2D [H, W] mask, got shape {tuple(m.shape)}")
    rows = torch.nonzero(m.ne(0).any(dim=1)).flatten()
    cols = torch.nonzero(m.ne(0).any(dim=0)).flatten()
    if rows.numel() == 0:
        raise ValueError("mask: expected at least one nonzero pixel, got an empty mask")
    box = [cols[0].item(), rows[0].item(), cols[-1].item() + 1, rows[-1].item() + 1]
    return torch.tensor(box, dtype=torch.float32)


def validate_boxes(
    boxes: Tensor | np.ndarray | Sequence[Sequence[float]],
    image_size: tuple[int, int],
    *,
    clip: bool = False,
    name: str = "boxes",
) -> Tensor:
    """Check boxes against the convention and return them as float32 ``[L, 4]``.

    Args:
        boxes: ``[L, 4]`` ``xyxy`` boxes (``L`` may be 0); anything ``torch.as_tensor`` accepts.
        image_size: ``(H, W)`` of the image the boxes belong to.
        clip: if True, boxes reaching outside the image are clipped to it with a warning (use for
            annotations drawn by hand, which may cross the border by a pixel); if False they raise.
        name: what to call the boxes in messages (e.g. the sample id).

    Returns:
        Tensor[L, 4] float32, a new tensor.

    Raises:
        ValueError: on a wrong shape, non-finite values, a box outside the image (``clip=False``)
            or a box with ``x2 <= x1`` or ``y2 <= y1`` (after clipping).
    """
    b = torch.as_tensor(boxes, dtype=torch.float32).clone()
    if b.numel() == 0:
        return b.reshape(0, 4)
    if b.dim() != 2 or b.shape[1] != 4:
        raise ValueError(f"{name}: expected shape [L, 4] (x1, y1, x2, y2), got {tuple(b.shape)}")
    if not torch.isfinite(b).all():
        raise ValueError(f"{name}: expected finite coordinates, got {b.tolist()}")
    h, w = image_size
    limit = torch.tensor([w, h, w, h], dtype=torch.float32)
    outside = (b < 0).any(dim=1) | (b > limit).any(dim=1)
    if outside.any():
        if not clip:
            raise ValueError(
                f"{name}: expected boxes inside the {h}x{w} image (0 <= x <= {w}, 0 <= y <= {h}), "
                f"got {b[outside].tolist()}"
            )
        warnings.warn(
            f"{name}: clipped {int(outside.sum())} box(es) reaching outside the {h}x{w} image",
            stacklevel=2,
        )
        b = torch.minimum(b.clamp_min(0), limit)
    bad = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
    if bad.any():
        raise ValueError(f"{name}: expected x1 < x2 and y1 < y2, got {b[bad].tolist()}")
    return b


def make_target(
    boxes: Tensor | np.ndarray | Sequence[Sequence[float]],
    labels: Tensor | np.ndarray | Sequence[int],
    image_size: tuple[int, int],
    *,
    clip: bool = False,
    name: str = "target",
) -> dict[str, Tensor]:
    """Build a validated torchvision-style target.

    Args:
        boxes: ``[L, 4]`` ``xyxy`` boxes, see :func:`validate_boxes`.
        labels: ``[L]`` integer class labels, each >= 1 (0 is the background class).
        image_size: ``(H, W)`` of the image.
        clip: clip boxes crossing the border (with a warning) instead of raising.
        name: what to call the target in messages.

    Returns:
        ``dict(boxes=Tensor[L, 4] float32, labels=Tensor[L] int64)``.

    Raises:
        ValueError: on invalid boxes, a label count that differs from the box count, a label
            that is not a whole number (1.9, NaN), or label < 1.
        TypeError: labels that are not numbers.
    """
    b = validate_boxes(boxes, image_size, clip=clip, name=name)
    try:
        given = torch.as_tensor(labels).detach().reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name}: expected integer labels, got {labels!r}") from None
    # A float label must be a whole number: casting 1.9 would silently make it class 1.
    whole = (not given.is_complex() and given.dtype != torch.bool and (
        not given.is_floating_point()
        or bool((torch.isfinite(given) & (given == given.round())).all())))
    if not whole:
        raise ValueError(f"{name}: expected integer labels, got {given.tolist()}")
    lab = given.to(torch.int64)
    if lab.numel() != b.shape[0]:
        raise ValueError(f"{name}: expected {b.shape[0]} labels (one per box), got {lab.numel()}")
    if (lab < 1).any():
        raise ValueError(f"{name}: expected labels >= 1 (0 is background), got {lab.tolist()}")
    return {"boxes": b, "labels": lab}
