"""Every torchvision detection builder, as torchvision lists them, wraps unchanged and trains.

Built with ``weights=None, weights_backbone=None`` (nothing is downloaded) and, where the builder
takes them, 64-pixel images (``min_size``/``max_size``); SSD fixes its own size (300 or 320).
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from tiny_detectors import TinyDenoiser, batch
from torchvision.models import get_model_builder, list_models

from lidplug import wrap

BUILDERS = list_models(module=torchvision.models.detection)
_KEYPOINTS = 3


def _build(name: str) -> torch.nn.Module:
    options = {"weights": None, "weights_backbone": None, "num_classes": 2}
    if not name.startswith("ssd"):  # SSD's builders fix the image size and take no min_size
        options.update(min_size=64, max_size=64)
    if name.startswith("keypointrcnn"):
        options["num_keypoints"] = _KEYPOINTS
    torch.manual_seed(0)
    return get_model_builder(name)(**options)


def _targets(name: str, targets):
    if not name.startswith("keypointrcnn"):
        return targets
    out = []
    for t in targets:  # keypoints inside each box: its corners and centre, all visible
        x1, y1, x2, y2 = t["boxes"].unbind(-1)
        points = torch.stack([torch.stack([x1, y1]), torch.stack([x2, y2]),
                              torch.stack([(x1 + x2) / 2, (y1 + y2) / 2])]).permute(2, 0, 1)
        out.append({**t, "keypoints": torch.cat([points, torch.ones(len(x1), _KEYPOINTS, 1)], -1)})
    return out


def test_the_list_holds_the_builders_that_failed():
    assert {"fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn",
            "ssd300_vgg16", "ssdlite320_mobilenet_v3_large", "keypointrcnn_resnet50_fpn",
            "retinanet_resnet50_fpn", "fcos_resnet50_fpn"} <= set(BUILDERS)


@pytest.mark.slow  # twelve real torchvision detectors (ResNet-50, VGG-16 backbones) on a CPU
@pytest.mark.parametrize("name", BUILDERS)
def test_every_builder_wraps_trains_and_detects(name):
    # Before: the MobileNet R-CNNs named levels their backbone does not return, SSD pooled
    # levels of different widths, RetinaNet/FCOS pooled 1x1 p6/p7 maps, Keypoint R-CNN raised
    # KeyError('keypoints').
    detector = _build(name)
    model = wrap(TinyDenoiser(), detector).train()
    assert model.detector is detector
    low, clean, targets = batch()
    out = model(low, clean, _targets(name, targets))
    assert torch.isfinite(out["loss"]) and out["detection"] > 0 and out["roi_perceptual"] > 0
    params = list(model.denoiser.parameters())
    for term in ("detection", "roi_perceptual"):  # each feedback term reaches the denoiser
        grads = torch.autograd.grad(out[term], params, retain_graph=True)
        assert sum(float(g.abs().sum()) for g in grads) > 0, term
    out["loss"].backward()
    assert all(p.grad is None for p in model.detector.parameters())
    detections = model.detect(low)
    assert len(detections) == len(low)
    assert all(set(d) == {"boxes", "scores", "labels"} and d["boxes"].shape[-1] == 4
               for d in detections)
    assert model.training and detector.training  # detect restores the modes


@pytest.mark.slow
def test_keypoint_rcnn_without_keypoints_says_what_it_needs():
    model = wrap(TinyDenoiser(), _build("keypointrcnn_resnet50_fpn")).train()
    low, clean, targets = batch()
    with pytest.raises(ValueError, match=r"targets\[0\]: expected 'keypoints' of shape \[1, 3, 3\] "
                                         r"\(x, y, visibility of 3 keypoints per box\) for "
                                         r"KeypointRCNN, .*got keys \['boxes', 'labels'\]"):
        model(low, clean, targets)


@pytest.mark.slow
def test_levels_of_different_widths_are_refused_by_name():
    model = wrap(TinyDenoiser(), _build("ssdlite320_mobilenet_v3_large"),
                 roi_levels=("0", "1")).train()
    low, clean, targets = batch()
    with pytest.raises(ValueError, match=r"roi_levels: expected levels of one channel count .*"
                                         r"got \{'0': 672, '1': 480\}; name levels of one width, "
                                         r"e.g. \['0'\]"):
        model(low, clean, targets)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "levels"), [
    ("fasterrcnn_resnet50_fpn", ("0", "1", "2", "3")),
    ("fasterrcnn_mobilenet_v3_large_fpn", ("0",)),  # both of its FPN levels are at stride 32
    ("retinanet_resnet50_fpn", ("0", "1", "2")),  # not p6, p7
    ("ssd300_vgg16", ("0",)),  # 512 channels; the next level has 1024
])
def test_default_roi_levels(name, levels):
    model = wrap(TinyDenoiser(), _build(name)).train()
    low, clean, targets = batch()
    det_pass = model.adapter.train_pass(model.detector, model.input_adapter(low), targets,
                                        reference=model.input_adapter(clean))
    assert model.adapter.default_roi_levels(model.detector, det_pass.features) == levels
