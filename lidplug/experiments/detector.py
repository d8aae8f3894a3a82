"""The demo's lesion detector: torchvision's Faster R-CNN on a small ResNet-18 FPN, from scratch.

Sized for 2 CPU cores and small phantoms: ResNet-18 kept up to its third stage (strides 4, 8,
16; the fourth stage would see a 96-pixel slice as 3 x 3 pixels and holds most of the weights),
an FPN of ``fpn_channels`` with torchvision's max-pooled extra level, anchors of 4-32 pixels
(the phantom lesions are 3-10 pixels), a 256-wide box head instead of the 1024-wide default, and
BatchNorm layers that learn (torchvision's frozen ones assume ImageNet weights; nothing is
downloaded here). ``box_score_thresh`` is low so the FROC curve reaches 8 FP per image.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

__all__ = ["build_detector"]

_LEVELS = ["0", "1", "2"]
_HEAD_WIDTH = 256


def build_detector(image_size: int, *, fpn_channels: int = 64, num_classes: int = 2) -> FasterRCNN:
    """A small Faster R-CNN for ``image_size`` x ``image_size`` lesion slices.

    Args:
        image_size: side of the (square) input; the model does not resize it.
        fpn_channels: FPN width.
        num_classes: including background (2: lesion vs background).

    Returns:
        A torchvision ``FasterRCNN`` with random weights, taking 3-channel images in ``[0, 1]``
        (the display windows of :class:`lidplug.detectors.DetectorInput`).
    """
    if not (isinstance(image_size, int) and image_size >= 32):
        raise ValueError(f"image_size: expected an int >= 32, got {image_size!r}")
    backbone = BackboneWithFPN(
        resnet18(weights=None, norm_layer=nn.BatchNorm2d),
        return_layers={"layer1": "0", "layer2": "1", "layer3": "2"},
        in_channels_list=[64, 128, 256], out_channels=fpn_channels,
        extra_blocks=LastLevelMaxPool())
    anchors = AnchorGenerator(((4,), (8,), (16,), (32,)), ((0.5, 1.0, 2.0),) * 4)
    return FasterRCNN(
        backbone, num_classes=None, min_size=image_size, max_size=image_size,
        # The windowed channels are in [0, 1] with soft tissue around the middle.
        image_mean=[0.5, 0.5, 0.5], image_std=[0.3, 0.3, 0.3],
        rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(_LEVELS, output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(fpn_channels * 7 * 7, _HEAD_WIDTH),
        box_predictor=FastRCNNPredictor(_HEAD_WIDTH, num_classes),
        rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=100,
        rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=50,
        rpn_batch_size_per_image=64, box_batch_size_per_image=64,
        box_score_thresh=0.01, box_detections_per_img=20)
