"""The terms of the LIDnet objective for the denoiser (see DESIGN.md):

    L(G) = L_pix(G(x), y) + det_weight * L_det(D(G(x)), b) + roi_weight * L_roi

with ``L_roi`` the mean squared difference of the detector's features of ``G(x)`` and of ``y``,
pooled inside the lesion boxes (the fused ``lidplug.ops.roi_perceptual_loss``). The two weights
are fixed, or (``wrap``'s default) set by :class:`lidplug.balance.FeedbackBalancer` each step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lidplug.detectors.base import DetectorPass
from lidplug.ops import roi_perceptual_loss

__all__ = ["PIXEL_LOSSES", "ROI_SOURCES", "pixel_loss", "roi_boxes", "roi_feedback"]

PIXEL_LOSSES = ("mse", "l1")
ROI_SOURCES = ("gt", "proposals", "both")


def pixel_loss(output: Tensor, target: Tensor, kind: str = "mse") -> Tensor:
    """Pixel fidelity term, accumulated in float32 whatever the autocast dtype."""
    output, target = output.float(), target.float()
    if kind == "mse":
        return F.mse_loss(output, target)
    if kind == "l1":
        return F.l1_loss(output, target)
    raise ValueError(f"pixel loss: expected one of {PIXEL_LOSSES}, got {kind!r}")


def roi_boxes(detector_pass: DetectorPass, source: str, num_proposals: int) -> list[Tensor]:
    """Per-image boxes the ROI perceptual loss pools, in the detector pass's feature frame.

    Args:
        detector_pass: the training pass (its ground-truth boxes and proposals).
        source: ``"gt"`` (ground-truth lesion boxes), ``"proposals"`` (the detector's
            ``num_proposals`` best proposals per image) or ``"both"``.
        num_proposals: proposals kept per image.
    """
    if source == "gt":
        return detector_pass.boxes
    if detector_pass.proposals is None:
        raise ValueError(f"roi_source={source!r} needs a detector with a proposal stage (an RPN), "
                         "and this one has none; use roi_source='gt'")
    # Proposals arrive sorted by objectness; they carry no grad (the RPN detaches them).
    proposals = [p[:num_proposals].detach() for p in detector_pass.proposals]
    if source == "proposals":
        return proposals
    return [torch.cat([g.to(p.dtype), p]) for g, p in zip(detector_pass.boxes, proposals, strict=False)]


def roi_feedback(detector_pass: DetectorPass, levels: Sequence[str], boxes: Sequence[Tensor],
                 output_size: int, sampling_ratio: int) -> Tensor:
    """ROI perceptual loss between the pass's features and its reference features.

    Args:
        detector_pass: a pass run with ``reference`` images.
        levels: names of the feature levels to pool from, finest first.
        boxes: per image ``Tensor[L_i, 4]`` in the pass's frame (see :func:`roi_boxes`).
        output_size: pooled size per box side.
        sampling_ratio: RoIAlign samples per bin and axis.

    Returns:
        A float32 scalar; 0 (with zero gradients) when no image has a box.
    """
    missing = [name for name in levels if name not in detector_pass.features]
    if missing:
        raise ValueError(f"roi_levels: expected names among the detector's feature levels "
                         f"{list(detector_pass.features)}, got {missing}")
    widths = {name: detector_pass.features[name].shape[1] for name in levels}
    if len(set(widths.values())) > 1:
        same = [name for name in levels if widths[name] == widths[levels[0]]]
        raise ValueError(f"roi_levels: expected levels of one channel count (the fused ROI op "
                         f"pools one feature width per call), got {widths}; name levels of one "
                         f"width, e.g. {same}")
    feats = [detector_pass.features[name] for name in levels]
    refs = [detector_pass.reference[name].to(feats[0].dtype) for name in levels]
    boxes = [b.to(device=feats[0].device, dtype=torch.float32) for b in boxes]
    loss = roi_perceptual_loss(feats, refs, boxes, output_size, sampling_ratio=sampling_ratio,
                               image_size=detector_pass.image_size)
    return loss.float()
