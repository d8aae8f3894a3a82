"""Validation of per-image detections and targets, shared by the FROC and mAP metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


def _boxes(value: object, name: str) -> Tensor:
    b = torch.as_tensor(value).detach().to("cpu", torch.float64)
    if b.numel() == 0:
        return b.reshape(0, 4)
    if b.dim() != 2 or b.shape[1] != 4:
        raise ValueError(
            f"{name}: expected boxes of shape [N, 4] (x1, y1, x2, y2), got {tuple(b.shape)}"
        )
    if not torch.isfinite(b).all():
        raise ValueError(f"{name}: expected finite box coordinates, got NaN or inf")
    if ((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])).any():
        raise ValueError(
            f"{name}: expected xyxy boxes with x1 <= x2 and y1 <= y2, got {b.tolist()}"
        )
    return b


def _entry(item: object, key: str, name: str) -> object:
    if not isinstance(item, Mapping):
        raise TypeError(f"{name}: expected a dict with {key!r}, got {type(item).__name__}")
    if key not in item:
        raise ValueError(f"{name}: expected a {key!r} entry, got keys {sorted(item)}")
    return item[key]


def check_detections(
    detections: Sequence[Mapping[str, Tensor]], targets: Sequence[Mapping[str, Tensor]], owner: str
) -> tuple[list[tuple[Tensor, Tensor]], list[Tensor]]:
    """Validate torchvision-style detections and targets, one dict per image.

    Args:
        detections: per image ``dict(boxes=Tensor[N, 4] xyxy, scores=Tensor[N])``.
        targets: per image ``dict(boxes=Tensor[L, 4] xyxy)`` (other keys ignored).
        owner: the calling function's name, for messages.

    Returns:
        ``([(boxes [N, 4], scores [N]) per image], [lesion boxes [L, 4] per image])``, all float64
        on the CPU.

    Raises:
        TypeError, ValueError: naming the image and what was expected.
    """
    for label, seq in (("detections", detections), ("targets", targets)):
        if isinstance(seq, Mapping) or not isinstance(seq, Sequence):
            raise TypeError(
                f"{owner}: expected {label} as a list with one dict per image, got "
                f"{type(seq).__name__}"
            )
    if len(detections) != len(targets):
        raise ValueError(
            f"{owner}: expected as many detection dicts as targets (one per image), got "
            f"{len(detections)} and {len(targets)}"
        )
    dets: list[tuple[Tensor, Tensor]] = []
    gts: list[Tensor] = []
    for i, (det, tgt) in enumerate(zip(detections, targets, strict=True)):
        name = f"{owner}: detections[{i}]"
        boxes = _boxes(_entry(det, "boxes", name), name)
        scores = torch.as_tensor(_entry(det, "scores", name)).detach().to("cpu", torch.float64)
        scores = scores.reshape(-1)
        if scores.numel() != boxes.shape[0]:
            raise ValueError(
                f"{name}: expected one score per box ({boxes.shape[0]}), got {scores.numel()}"
            )
        if not torch.isfinite(scores).all():
            raise ValueError(f"{name}: expected finite scores, got NaN or inf")
        dets.append((boxes, scores))
        name = f"{owner}: targets[{i}]"
        gts.append(_boxes(_entry(tgt, "boxes", name), name))
    return dets, gts
