"""Tiny but real torchvision detectors and denoisers for CPU tests.

The detection models are torchvision's own classes (FasterRCNN, MaskRCNN, RetinaNet, FCOS) with a
small BatchNorm backbone, optionally with torchvision's FeaturePyramidNetwork; only the sizes are
shrunk. A plain module (``tests/`` is on ``sys.path`` under pytest).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

CHANNELS = 32  # FCOS heads use GroupNorm(32)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class TinyBackbone(nn.Module):
    """Strides 4, 8, 16 (+ FPN and its max-pooled extra level) or one stride-8 map."""

    def __init__(self, fpn: bool = True) -> None:
        super().__init__()
        self.fpn_enabled = fpn
        self.stem = nn.Sequential(_block(3, 8), _block(8, CHANNELS))
        self.c3 = _block(CHANNELS, CHANNELS)
        self.c4 = _block(CHANNELS, CHANNELS)
        self.fpn = (FeaturePyramidNetwork([CHANNELS] * 3, CHANNELS, extra_blocks=LastLevelMaxPool())
                    if fpn else None)
        self.out_channels = CHANNELS

    def forward(self, x):
        c2 = self.stem(x)
        c3 = self.c3(c2)
        if self.fpn is None:
            return c3
        c4 = self.c4(c3)
        return self.fpn(OrderedDict([("0", c2), ("1", c3), ("2", c4)]))


def _anchors(fpn: bool) -> AnchorGenerator:
    if fpn:
        return AnchorGenerator(((8,), (16,), (32,), (64,)), ((0.5, 1.0, 2.0),) * 4)
    return AnchorGenerator(((8, 16, 32),), ((0.5, 1.0, 2.0),))


_SMALL_RCNN = dict(rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=50,
                   rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=20,
                   rpn_batch_size_per_image=32, box_batch_size_per_image=32,
                   box_detections_per_img=20)


def faster_rcnn(fpn: bool = True, size: int = 64) -> FasterRCNN:
    levels = ["0", "1", "2"] if fpn else ["0"]
    return FasterRCNN(TinyBackbone(fpn), num_classes=2, min_size=size, max_size=size,
                      rpn_anchor_generator=_anchors(fpn),
                      box_roi_pool=MultiScaleRoIAlign(levels, 7, 2), **_SMALL_RCNN)


def mask_rcnn(size: int = 64) -> MaskRCNN:
    return MaskRCNN(TinyBackbone(True), num_classes=2, min_size=size, max_size=size,
                    rpn_anchor_generator=_anchors(True),
                    box_roi_pool=MultiScaleRoIAlign(["0", "1", "2"], 7, 2),
                    mask_roi_pool=MultiScaleRoIAlign(["0", "1", "2"], 14, 2), **_SMALL_RCNN)


def retinanet(size: int = 64) -> RetinaNet:
    return RetinaNet(TinyBackbone(True), num_classes=2, min_size=size, max_size=size,
                     anchor_generator=_anchors(True), detections_per_img=20, topk_candidates=50)


def fcos(size: int = 64) -> FCOS:
    anchors = AnchorGenerator(((8,), (16,), (32,), (64,)), ((1.0,),) * 4)
    return FCOS(TinyBackbone(True), num_classes=2, min_size=size, max_size=size,
                anchor_generator=anchors, detections_per_img=20, topk_candidates=50)


DETECTORS = {
    "faster_rcnn_fpn": lambda: faster_rcnn(True),
    "faster_rcnn_single_map": lambda: faster_rcnn(False),
    "mask_rcnn": mask_rcnn,
    "retinanet": retinanet,
    "fcos": fcos,
}


class TinyDenoiser(nn.Module):
    """Residual 3-layer CNN, [B, 1, H, W] -> [B, 1, H, W]."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(channels, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


def batch(size: int = 64, seed: int = 0, batch_size: int = 2, height: int | None = None):
    """(low, clean, targets) of smooth images in [0, 1] units; image 1 has no lesion."""
    g = torch.Generator().manual_seed(seed)
    h, w = height or size, size
    clean = 0.27 + 0.01 * torch.rand(batch_size, 1, h, w, generator=g)
    clean[:, :, h // 4: h // 2, w // 4: w // 2] += 0.02  # a "lesion"
    low = clean + 0.005 * torch.randn(batch_size, 1, h, w, generator=g)
    box = torch.tensor([[w / 4, h / 4, w / 2, h / 2]])
    targets = [{"boxes": box, "labels": torch.tensor([1])}]
    targets += [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
                for _ in range(batch_size - 1)]
    return low, clean, targets
