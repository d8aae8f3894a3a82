"""Adapter for torchvision's detection models: Faster/Mask R-CNN, RetinaNet, FCOS, SSD, any backbone.

All of them share one structure: ``model.transform`` (normalise, resize, pad into an
``ImageList``; boxes resized with the images), ``model.backbone`` (a Tensor or an OrderedDict of
maps) and heads that return a loss dict in training mode. The adapter calls the model's own
forward, so its losses are exactly torchvision's, and records the transform's and backbone's
outputs with forward hooks: the ROI perceptual loss then pools the very features the detection
loss used, in the resized frame, with the resized boxes. No second backbone pass, no
re-implementation of any head.

The reference (normal-dose) pass runs ``transform`` + ``backbone`` under ``no_grad`` first and the
generator state is rewound before the training pass, so a transform that picks a random size per
image (multi-scale training: ``min_size`` with several values) picks the same sizes for both.

Mask R-CNN: lesion datasets carry boxes only, so a target without ``masks`` gets its boxes filled as
masks and the mask head trains on those; predictions keep boxes, scores and labels.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict

import torch
from torch import Tensor, nn

from lidplug.detectors.base import (
    DetectorAdapter,
    DetectorPass,
    capture_output,
    keep_running_stats,
    unwrap,
)

__all__ = ["TorchvisionDetector", "is_torchvision_detector"]

_PREDICTION_KEYS = ("boxes", "scores", "labels")


def is_torchvision_detector(module: nn.Module) -> bool:
    """Whether ``module`` has torchvision's detection structure (``transform`` + ``backbone``)."""
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    inner = unwrap(module)
    return (isinstance(getattr(inner, "transform", None), GeneralizedRCNNTransform)
            and isinstance(getattr(inner, "backbone", None), nn.Module))


def _as_levels(features: Tensor | OrderedDict[str, Tensor]) -> OrderedDict[str, Tensor]:
    # A backbone without FPN returns one Tensor; torchvision's models name it "0".
    return OrderedDict([("0", features)]) if isinstance(features, Tensor) else features


def _box_masks(boxes: Tensor, height: int, width: int) -> Tensor:
    # Filled boxes as uint8 masks [L, H, W]: pixel (r, c) is inside when its square overlaps.
    rows = torch.arange(height, device=boxes.device).view(1, height, 1)
    cols = torch.arange(width, device=boxes.device).view(1, 1, width)
    x1, y1, x2, y2 = (boxes[:, i].view(-1, 1, 1) for i in range(4))
    inside = (cols + 1 > x1) & (cols < x2) & (rows + 1 > y1) & (rows < y2)
    return inside.to(torch.uint8)


class TorchvisionDetector(DetectorAdapter):
    """:class:`DetectorAdapter` for ``torchvision.models.detection`` models (see module docstring)."""

    def input_channels(self, detector: nn.Module) -> int:
        return len(unwrap(detector).transform.image_mean)

    def has_proposals(self, detector: nn.Module) -> bool:
        return hasattr(unwrap(detector), "rpn")

    def default_roi_levels(self, detector: nn.Module, features: OrderedDict[str, Tensor]
                           ) -> tuple[str, ...]:
        # R-CNN: the levels its own box head pools from. Otherwise every level but the extra
        # max-pooled "pool" map, which only copies the coarsest level at half size.
        pooler = getattr(getattr(unwrap(detector), "roi_heads", None), "box_roi_pool", None)
        names = getattr(pooler, "featmap_names", None)
        if names:
            return tuple(names)
        return tuple(name for name in features if name != "pool")

    def _with_masks(self, detector: nn.Module, images: Tensor,
                    targets: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
        heads = getattr(detector, "roi_heads", None)
        if heads is None or not heads.has_mask():
            return targets
        h, w = images.shape[-2:]
        return [t if "masks" in t else {**t, "masks": _box_masks(t["boxes"], h, w)}
                for t in targets]

    def train_pass(self, detector: nn.Module, images: Tensor, targets: list[dict[str, Tensor]],
                   reference: Tensor | None = None) -> DetectorPass:
        inner = unwrap(detector)
        if not inner.training:
            raise RuntimeError("TorchvisionDetector.train_pass: expected the detector in training "
                               "mode (torchvision detectors return losses only then), got eval")
        ref_features = None
        if reference is not None:
            rng = torch.get_rng_state()
            with torch.no_grad(), keep_running_stats(inner):
                ref_list, _ = inner.transform(list(reference.unbind(0)))
                ref_features = _as_levels(inner.backbone(ref_list.tensors))
            torch.set_rng_state(rng)  # the training pass resizes exactly as the reference did

        seen: dict = {}
        targets = self._with_masks(inner, images, targets)
        with contextlib.ExitStack() as hooks:
            hooks.enter_context(capture_output(inner.transform, seen, "transform"))
            hooks.enter_context(capture_output(inner.backbone, seen, "features"))
            if self.has_proposals(inner):
                hooks.enter_context(capture_output(inner.rpn, seen, "rpn"))
            losses = detector(list(images.unbind(0)), targets)
        if not isinstance(losses, dict):
            raise RuntimeError(f"expected the detector to return a loss dict in training mode, "
                               f"got {type(losses).__name__}")
        image_list, resized_targets = seen["transform"]
        features = _as_levels(seen["features"])
        if ref_features is not None:
            shapes = [tuple(f.shape) for f in features.values()]
            ref_shapes = [tuple(f.shape) for f in ref_features.values()]
            if shapes != ref_shapes:
                raise RuntimeError(f"reference features {ref_shapes} do not match the training "
                                   f"pass's {shapes}; the detector's transform is not repeatable")
        proposals = seen["rpn"][0] if "rpn" in seen else None
        return DetectorPass(
            losses=losses,
            features=features,
            image_size=tuple(image_list.tensors.shape[-2:]),
            boxes=[t["boxes"] for t in resized_targets],
            proposals=proposals,
            reference=ref_features,
        )

    def predict(self, detector: nn.Module, images: Tensor) -> list[dict[str, Tensor]]:
        detections = detector(list(images.unbind(0)))
        return [{k: d[k] for k in _PREDICTION_KEYS} for d in detections]
