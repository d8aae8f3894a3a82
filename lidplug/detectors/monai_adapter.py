"""Adapter for MONAI's ``RetinaNetDetector`` in 2D: the example of a detector outside torchvision.

MONAI is optional (``pip install monai``); this module imports it only when used.

Box convention. lidplug (like torchvision and DeepLesion) writes boxes ``(x1, y1, x2, y2)`` with
``x`` along columns, the image tensor's last axis. MONAI's box utilities order coordinates by array
axis: the first coordinate runs along the first spatial axis, the rows. So a lidplug box
``(x1, y1, x2, y2)`` is MONAI's ``(y1, x1, y2, x2)``; :func:`to_monai_boxes` and
:func:`from_monai_boxes` convert at this boundary and nowhere else. The feature maps are ordinary
``[B, C, H, W]`` tensors, so the ROI loss pools them with lidplug boxes.

Labels. torchvision reserves 0 for the background and lidplug's lesion labels start at 1; MONAI's
classes start at 0. The adapter passes ``label - 1`` to MONAI and adds 1 to its predictions.

MONAI's detector pads images (to ``size_divisible``) but never resizes them, so the feature frame
is the padded batch and boxes keep their pixel coordinates. It expects images in ``[0, 1]``.
"""

from __future__ import annotations

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

__all__ = ["MonaiRetinaNetDetector", "from_monai_boxes", "is_monai_retinanet", "monai_retinanet",
           "to_monai_boxes"]

# lidplug (x1, y1, x2, y2) <-> MONAI 2D (row1, col1, row2, col2): the same swap both ways.
_SWAP_AXES = [1, 0, 3, 2]


def to_monai_boxes(boxes: Tensor) -> Tensor:
    """lidplug ``xyxy`` boxes (x along columns) -> MONAI 2D boxes (first coordinate along rows)."""
    return boxes[..., _SWAP_AXES]


def from_monai_boxes(boxes: Tensor) -> Tensor:
    """MONAI 2D boxes -> lidplug ``xyxy`` boxes (the inverse of :func:`to_monai_boxes`)."""
    return boxes[..., _SWAP_AXES]


def is_monai_retinanet(module: nn.Module) -> bool:
    """Whether ``module`` is MONAI's ``RetinaNetDetector`` (False when MONAI is not installed)."""
    inner = unwrap(module)
    if not type(inner).__module__.startswith("monai."):
        return False
    from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector

    return isinstance(inner, RetinaNetDetector)


def _levels(features) -> OrderedDict[str, Tensor]:
    if isinstance(features, Tensor):
        return OrderedDict([("0", features)])
    if isinstance(features, dict):
        return OrderedDict(features)
    return OrderedDict((str(i), f) for i, f in enumerate(features))


class MonaiRetinaNetDetector(DetectorAdapter):
    """:class:`DetectorAdapter` for ``monai.apps.detection``'s 2D ``RetinaNetDetector``."""

    def input_channels(self, detector: nn.Module) -> int:
        first_conv = next(m for m in unwrap(detector).network.modules()
                          if isinstance(m, nn.Conv2d))
        return first_conv.in_channels

    def _check(self, inner: nn.Module) -> None:
        if inner.spatial_dims != 2:
            raise ValueError(f"MonaiRetinaNetDetector: expected a 2D detector (spatial_dims=2), got "
                             f"spatial_dims={inner.spatial_dims}")

    def _pad(self, inner: nn.Module, images: Tensor) -> Tensor:
        from monai.apps.detection.utils.detector_utils import preprocess_images

        return preprocess_images(images, inner.spatial_dims, inner.size_divisible)[0]

    def train_pass(self, detector: nn.Module, images: Tensor, targets: list[dict[str, Tensor]],
                   reference: Tensor | None = None) -> DetectorPass:
        inner = unwrap(detector)
        self._check(inner)
        ref_features = None
        if reference is not None:
            with torch.no_grad(), keep_running_stats(inner):
                ref_features = _levels(inner.network.feature_extractor(self._pad(inner, reference)))
        monai_targets = [{inner.target_box_key: to_monai_boxes(t["boxes"]),
                          inner.target_label_key: t["labels"] - 1} for t in targets]
        seen: dict = {}
        with capture_output(inner.network.feature_extractor, seen, "features"):
            losses = detector(images, monai_targets)
        features = _levels(seen["features"])
        padded = self._pad(inner, images[:1])  # the frame the features belong to (cheap: 1 image)
        return DetectorPass(
            losses=dict(losses),
            features=features,
            image_size=tuple(padded.shape[-2:]),
            boxes=[t["boxes"] for t in targets],
            proposals=None,
            reference=ref_features,
        )

    def predict(self, detector: nn.Module, images: Tensor) -> list[dict[str, Tensor]]:
        inner = unwrap(detector)
        self._check(inner)
        out = []
        for d in detector(images):
            out.append({
                "boxes": from_monai_boxes(d[inner.target_box_key]),
                "scores": d[inner.pred_score_key],
                "labels": d[inner.target_label_key] + 1,
            })
        return out


def monai_retinanet(num_classes: int = 1, *, in_channels: int = 1,
                    widths: tuple[int, int, int, int] = (8, 16, 32, 64),
                    returned_layers: tuple[int, ...] = (1, 2),
                    anchor_sizes: tuple[int, ...] = (8, 16), size_divisible: int = 16,
                    detections_per_image: int = 10) -> nn.Module:
    """A small MONAI 2D ``RetinaNetDetector`` for lesion slices, ready for :func:`lidplug.wrap`.

    MONAI's detector is assembled from parts (a ResNet, its FPN, anchors, matcher, sampler, box
    selector); this builder makes one for 2D CT slices, so that a run file can name it::

        [detector.model]
        class_path = "lidplug.detectors.monai_retinanet"
        init_args = { num_classes = 1 }

    The parts: a 2D ResNet of basic blocks, one per stage, of ``widths`` channels (stem stride 2,
    random weights), its FPN over ``returned_layers``; square anchors of ``anchor_sizes``
    pixels on FPN levels of stride 2, 4, 8 (``feature_map_scales`` 1, 2, 4: one per returned
    layer plus MONAI's extra level); the ATSS matcher (4 candidates), a hard-negative sampler
    (64 boxes per image, 30% positive) and up to ``detections_per_image`` boxes per image
    after NMS at IoU 0.5, every score kept (the observers' FROC needs low-score boxes). The
    smallest settings that detect the built-in phantoms' lesions; widen them for real CT.

    Args:
        num_classes: lesion classes (MONAI counts no background class: 1 for lesion only).
        in_channels: image channels the network takes (:class:`~lidplug.detectors.DetectorInput`
            gives it that many CT windows).
        widths: channels of the four ResNet stages.
        returned_layers: the ResNet stages the FPN uses (1-based).
        anchor_sizes: anchor sides in pixels, the same on every level.
        size_divisible: images are padded to a multiple of it.
        detections_per_image: boxes kept per image at inference.

    Returns:
        A MONAI ``RetinaNetDetector`` with random weights (needs ``pip install monai``).

    Raises:
        ImportError: MONAI is not installed.
    """
    try:
        from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
        from monai.apps.detection.networks.retinanet_network import (
            RetinaNet,
            resnet_fpn_feature_extractor,
        )
        from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape
        from monai.networks.nets import resnet
    except ImportError as err:
        raise ImportError(f"monai_retinanet: needs MONAI (pip install 'lidplug[monai]'): "
                          f"{err}") from None
    if len(widths) != 4:
        raise ValueError(f"monai_retinanet: expected 4 stage widths, got {widths!r}")
    backbone = resnet.ResNet(block="basic", layers=[1, 1, 1, 1], block_inplanes=list(widths),
                             n_input_channels=in_channels, spatial_dims=2, conv1_t_stride=2,
                             conv1_t_size=7)
    extractor = resnet_fpn_feature_extractor(backbone, spatial_dims=2, pretrained_backbone=False,
                                             returned_layers=list(returned_layers))
    # One level per returned layer plus the FPN's extra max-pooled one, strides 1, 2, 4 of the
    # first FPN map.
    scales = [2**i for i in range(len(returned_layers) + 1)]
    anchors = AnchorGeneratorWithAnchorShape(
        feature_map_scales=scales, base_anchor_shapes=tuple((s, s) for s in anchor_sizes))
    net = RetinaNet(spatial_dims=2, num_classes=num_classes, num_anchors=len(anchor_sizes),
                    feature_extractor=extractor, size_divisible=size_divisible)
    detector = RetinaNetDetector(net, anchors, spatial_dims=2, num_classes=num_classes,
                                 size_divisible=size_divisible)
    detector.set_atss_matcher(num_candidates=4, center_in_gt=False)
    detector.set_hard_negative_sampler(batch_size_per_image=64, positive_fraction=0.3,
                                       pool_size=20, min_neg=16)
    detector.set_box_selector_parameters(score_thresh=0.0, topk_candidates_per_level=20,
                                         nms_thresh=0.5, detections_per_img=detections_per_image)
    return detector
