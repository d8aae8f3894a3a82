"""Adapter for torchvision's detection models: Faster/Mask/Keypoint R-CNN, RetinaNet, FCOS, SSD.

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

Keypoint R-CNN: keypoints cannot be made up from a box, so it trains only on targets that carry
them (``keypoints``: Tensor[L, K, 3] of x, y, visibility per box, e.g. the ends of a lesion's
RECIST diameters); a target without them is a ValueError saying so, not torchvision's KeyError.

Every builder of ``torchvision.models.detection`` (``list_models``) wraps unchanged; the levels
the ROI loss pools by default are described in :meth:`TorchvisionDetector.default_roi_levels`.
"""

from __future__ import annotations

import contextlib
import math
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


def _pyramid(features: OrderedDict[str, Tensor], names: list[str]) -> tuple[str, ...]:
    """The longest run of ``names`` from the first whose levels share its channel count and
    halve in size from one to the next (a level of the previous one's size is skipped)."""
    kept = [names[0]]
    for name in names[1:]:
        previous, level = features[kept[-1]], features[name]
        if level.shape[1] != previous.shape[1]:
            break
        octaves = round(math.log2(previous.shape[-2] / level.shape[-2]))
        if octaves == 0:
            continue
        if octaves != 1:
            break
        kept.append(name)
    return tuple(kept)


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

    def num_classes(self, detector: nn.Module) -> int | None:
        inner = unwrap(detector)
        predictor = getattr(getattr(inner, "roi_heads", None), "box_predictor", None)
        score = getattr(predictor, "cls_score", None)  # Faster/Mask/Keypoint R-CNN
        if isinstance(score, nn.Linear):
            return score.out_features
        head = getattr(getattr(inner, "head", None), "classification_head", None)
        for name in ("num_classes", "num_columns"):  # RetinaNet, FCOS; SSD
            if isinstance(getattr(head, name, None), int):
                return getattr(head, name)
        return None

    def default_roi_levels(self, detector: nn.Module, features: OrderedDict[str, Tensor]
                           ) -> tuple[str, ...]:
        """The levels the ROI loss pools when ``roi_levels`` is not given.

        Candidates: for an R-CNN the levels its own box head pools from, among those the
        backbone returns (torchvision's pooler filters its ``featmap_names`` the same way:
        the MobileNet FPN builders name four and return two); for an FPN backbone its own
        levels, without the maps its extra block adds (``pool``; RetinaNet's and FCOS's
        ``p6``, ``p7``: strided copies of the coarsest level, 1x1 on small images); otherwise
        every level. Of these, the run from the finest level that the multi-level rule can
        pool: one channel count (SSD's VGG and MobileNet levels differ in width, so SSD pools
        its finest level) and sizes halving from one level to the next (a level as large as
        the previous one gets no box under that rule, as in torchvision's pooler: MobileNet's
        two FPN levels are both at stride 32).
        """
        inner = unwrap(detector)
        pooler = getattr(getattr(inner, "roi_heads", None), "box_roi_pool", None)
        fpn = getattr(getattr(inner, "backbone", None), "fpn", None)
        if getattr(pooler, "featmap_names", None):
            names = [name for name in pooler.featmap_names if name in features]
        elif isinstance(getattr(fpn, "inner_blocks", None), nn.ModuleList):
            names = list(features)[: len(fpn.inner_blocks)]
        else:
            names = [name for name in features if name != "pool"]
        return _pyramid(features, names) if names else tuple(features)

    def _check_keypoints(self, detector: nn.Module, targets: list[dict[str, Tensor]]) -> None:
        heads = getattr(detector, "roi_heads", None)
        if heads is None or not heads.has_keypoint():
            return
        count = heads.keypoint_predictor.kps_score_lowres.out_channels
        for i, t in enumerate(targets):
            points = t.get("keypoints")
            expected = (len(t["boxes"]), count, 3)
            if not isinstance(points, Tensor) or tuple(points.shape) != expected:
                got = (f"shape {list(points.shape)}" if isinstance(points, Tensor) else
                       f"keys {sorted(t)}")
                raise ValueError(
                    f"targets[{i}]: expected 'keypoints' of shape {list(expected)} (x, y, "
                    f"visibility of {count} keypoints per box) for {type(detector).__name__}, "
                    f"whose keypoint head trains on them; got {got}. Boxes alone train Faster "
                    f"or Mask R-CNN, RetinaNet, FCOS or SSD")

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
        self._check_keypoints(inner, targets)
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
