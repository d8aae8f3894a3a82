"""Small torchvision lesion detectors for phantom slices, trained from scratch on a CPU.

Two architectures, so the evaluation can score with observers that differ from the detector an
arm trains with: :func:`lesion_faster_rcnn` (two-stage, the LIDnet paper's kind) and
:func:`lesion_fcos` (one-stage, anchor-free). Both are stock torchvision models; only their
parts are sized for the built-in phantoms:

* **Input upsampled 2x** by the detector's own transform (``min_size = max_size = upsample *
  image_size``): the phantoms' lesions are 3-8 pixels wide, and stride-4 features of the raw
  slice see them as one or two cells. Measured on 96-pixel phantoms (10-25 mm lesions, 3-mm
  pixels), a Faster R-CNN reached a centre-hit CPM of 0.24 after 1600 steps without upsampling
  and 0.89 after 1200 with it.
* **ResNet-18 to its second stage** (strides 4 and 8, with torchvision's max-pooled extra level):
  the third and fourth stages would add 10 M of the weights and see a slice as a few cells.
* BatchNorm layers that learn (torchvision's frozen ones assume ImageNet weights; nothing is
  downloaded), anchors of 8-32 input pixels, a low score threshold so FROC curves reach 8 false
  positives per image.

The input is three windowed channels in ``[0, 1]`` (:class:`lidplug.detectors.DetectorInput`).

**Any slice size** (``image_size=None``): torchvision's transform resizes every input to one
size, which suits the fixed-size phantoms. Real CT is trained on patches (e.g. 128 px) and
scored on whole 512-px slices of the same pixel size, so there the transform scales every input
by ``upsample`` instead (:class:`ScaledTransform`): a lesion of 10 pixels looks the same to the
network in a patch and in a whole slice.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet18
from torchvision.models.detection import FCOS, FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

__all__ = ["ScaledTransform", "lesion_faster_rcnn", "lesion_fcos"]

_RETURN_LAYERS = {"layer1": "0", "layer2": "1"}
_IN_CHANNELS = [64, 128]
# The windowed channels are in [0, 1] with soft tissue around the middle.
_MEAN, _STD = [0.5] * 3, [0.3] * 3


class ScaledTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform, resizing every image by one factor, whatever its size.

    Args:
        scale: the resize factor (2: twice the pixels on each side).
        image_mean, image_std: per-channel normalisation, as torchvision's.
    """

    def __init__(self, scale: float, image_mean: list[float], image_std: list[float]) -> None:
        # min_size / max_size are not used: resize() below replaces the rule that reads them.
        super().__init__(min_size=1, max_size=1, image_mean=image_mean, image_std=image_std)
        self.scale = float(scale)

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None
               ) -> tuple[Tensor, dict[str, Tensor] | None]:
        h, w = image.shape[-2:]
        if self.scale != 1.0:
            image = F.interpolate(image[None], scale_factor=self.scale, mode="bilinear",
                                  align_corners=False, recompute_scale_factor=True)[0]
        if target is not None and "boxes" in target:
            target["boxes"] = resize_boxes(target["boxes"], (h, w), tuple(image.shape[-2:]))
        return image, target


def _check(image_size: object, upsample: object, fpn_channels: object) -> None:
    for name, value, low in (("image_size", image_size, 32), ("upsample", upsample, 1),
                             ("fpn_channels", fpn_channels, 8)):
        if name == "image_size" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}: expected an int >= {low}"
                             f"{' or None' if name == 'image_size' else ''}, got {value!r}")


def _sized(model, image_size: int | None, upsample: int):
    """Any slice size (``image_size=None``): scale inputs by ``upsample`` (module docstring)."""
    if image_size is None:
        model.transform = ScaledTransform(upsample, _MEAN, _STD)
    return model


def _backbone(fpn_channels: int) -> BackboneWithFPN:
    return BackboneWithFPN(resnet18(weights=None, norm_layer=nn.BatchNorm2d),
                           return_layers=_RETURN_LAYERS, in_channels_list=_IN_CHANNELS,
                           out_channels=fpn_channels, extra_blocks=LastLevelMaxPool())


def lesion_faster_rcnn(image_size: int | None = 96, *, upsample: int = 2, fpn_channels: int = 64,
                       head_width: int = 256, num_classes: int = 2) -> FasterRCNN:
    """A small Faster R-CNN for square ``image_size`` lesion slices (see the module docstring).

    Args:
        image_size: side of the input slices in pixels, or None for slices of any size.
        upsample: the transform resizes inputs to ``upsample * image_size`` (None: scales
            every input by ``upsample``).
        fpn_channels: FPN width.
        head_width: width of the two-layer box head.
        num_classes: including background (2: lesion vs background).

    Returns:
        A torchvision ``FasterRCNN`` with random weights, for 3-channel inputs in ``[0, 1]``.
    """
    _check(image_size, upsample, fpn_channels)
    side = (image_size or 1) * upsample
    anchors = AnchorGenerator(((8,), (16,), (32,)), ((0.5, 1.0, 2.0),) * 3)
    return _sized(FasterRCNN(
        _backbone(fpn_channels), num_classes=None, min_size=side, max_size=side,
        image_mean=_MEAN, image_std=_STD, rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(list(_RETURN_LAYERS.values()), output_size=7,
                                        sampling_ratio=2),
        box_head=TwoMLPHead(fpn_channels * 7 * 7, head_width),
        box_predictor=FastRCNNPredictor(head_width, num_classes),
        rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=100,
        rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=50,
        rpn_batch_size_per_image=64, box_batch_size_per_image=64,
        box_score_thresh=0.01, box_detections_per_img=20), image_size, upsample)


def lesion_fcos(image_size: int | None = 96, *, upsample: int = 2, fpn_channels: int = 64,
                num_classes: int = 2) -> FCOS:
    """A small FCOS (one-stage, anchor-free) for square ``image_size`` lesion slices.

    Args:
        image_size: side of the input slices in pixels, or None for slices of any size.
        upsample: the transform resizes inputs to ``upsample * image_size`` (None: scales
            every input by ``upsample``).
        fpn_channels: FPN width, a multiple of 32 (FCOS's head has four 3x3 convolutions of this
            width per branch, each with a 32-group GroupNorm).
        num_classes: including background.

    Returns:
        A torchvision ``FCOS`` with random weights, for 3-channel inputs in ``[0, 1]``.
    """
    _check(image_size, upsample, fpn_channels)
    if fpn_channels % 32:
        raise ValueError(f"fpn_channels: expected a multiple of 32 (the FCOS head's GroupNorm "
                         f"has 32 groups), got {fpn_channels}")
    side = (image_size or 1) * upsample
    # FCOS takes one anchor per location and level: their sizes only set the level strides.
    anchors = AnchorGenerator(((8,), (16,), (32,)), ((1.0,),) * 3)
    return _sized(FCOS(_backbone(fpn_channels), num_classes=num_classes, min_size=side,
                       max_size=side, image_mean=_MEAN, image_std=_STD, anchor_generator=anchors,
                       score_thresh=0.01, detections_per_img=20, topk_candidates=200),
                  image_size, upsample)
