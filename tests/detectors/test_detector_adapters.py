"""Detector adapters: recognition, the input windows, and MONAI's RetinaNet with its box convention."""

import pytest
import torch
from tiny_detectors import TinyDenoiser, batch, faster_rcnn
from torch import nn

from lidplug import wrap
from lidplug.data import HUWindow
from lidplug.detectors import (
    DetectorInput,
    MonaiRetinaNetDetector,
    TorchvisionDetector,
    adapter_for,
    unwrap,
)

monai = pytest.importorskip("monai")


def monai_retinanet() -> nn.Module:
    # The shipped builder (lidplug.detectors.monai_retinanet), as a run file names it.
    from lidplug.detectors import monai_retinanet as build

    return build(num_classes=1)


def test_adapter_for_recognises_detectors():
    assert isinstance(adapter_for(faster_rcnn()), TorchvisionDetector)
    assert isinstance(adapter_for(monai_retinanet()), MonaiRetinaNetDetector)
    with pytest.raises(TypeError, match="got Linear; for another detector pass adapter="):
        adapter_for(nn.Linear(2, 2))


def test_unwrap_passes_plain_modules_through():
    m = nn.Linear(2, 2)
    assert unwrap(m) is m


def test_detector_input_windows():
    window = HUWindow()
    hu = torch.tensor([-1024.0, -160.0, 40.0, 240.0, 3072.0]).view(1, 1, 1, 5)
    out = DetectorInput(units=window)(window(hu))
    assert out.shape == (1, 3, 1, 5)
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))  # W400/L40
    torch.testing.assert_close(out[0, 1, 0], torch.tensor([0.2173333, 0.7933333, 0.9266667, 1.0, 1.0]))
    torch.testing.assert_close(out[0, 2, 0], window(hu)[0, 0, 0])  # full range: the identity
    assert DetectorInput(channels=1).channels == 1
    with pytest.raises(ValueError, match="no default windows for 2 channels"):
        DetectorInput(channels=2)
    with pytest.raises(ValueError, match="expected windows"):
        DetectorInput(windows_hu=[(100, -100)])


def test_detector_input_passes_gradient_inside_its_windows_only():
    window = HUWindow()
    x = window(torch.tensor([-2000.0, 40.0]).view(1, 1, 1, 2)).requires_grad_()
    DetectorInput(units=window)(x).sum().backward()
    assert x.grad[0, 0, 0, 0] == 0  # below every window: saturated everywhere
    assert x.grad[0, 0, 0, 1] > 0


def test_monai_box_convention_on_a_non_square_image():
    # MONAI's own box-to-mask puts a lidplug box (x along columns) where the pixels are only
    # after the adapter's conversion.
    from monai.apps.detection.transforms.box_ops import convert_box_to_mask

    from lidplug.detectors.monai_adapter import from_monai_boxes, to_monai_boxes

    h, w = 40, 64
    box = torch.tensor([[50.0, 5.0, 60.0, 20.0]])  # x1, y1, x2, y2: a box near the right edge
    mask = convert_box_to_mask(to_monai_boxes(box), torch.tensor([0]), (h, w), bg_label=-1)
    rows, cols = torch.nonzero(torch.as_tensor(mask)[0] >= 0, as_tuple=True)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (5, 20, 50, 60)
    torch.testing.assert_close(from_monai_boxes(to_monai_boxes(box)), box)


def test_wrapped_monai_retinanet_trains_and_predicts_in_lidplug_boxes():
    torch.manual_seed(0)
    model = wrap(TinyDenoiser(), monai_retinanet()).train()
    assert model.input_adapter.channels == 1
    low, clean, targets = batch(size=64, height=48)  # non-square: 48 rows x 64 columns
    out = model(low, clean, targets)
    assert set(out["detector_losses"]) == {"classification", "box_regression"}
    assert out["roi_perceptual"] > 0 and out["detection"] > 0
    out["loss"].backward()
    assert all(p.grad is None for p in model.detector.parameters())
    dets = model.detect(low)
    boxes = dets[0]["boxes"]
    assert len(boxes) > 0 and (dets[0]["labels"] == 1).all()
    assert boxes[:, 2].max() > 48  # x reaches past the height: x runs along the 64 columns
    assert (boxes[:, 3] <= 48).all() and (boxes[:, 2] <= 64).all()


def test_monai_roi_term_pools_the_lesion_where_it_is():
    # Only the lesion region differs: the ROI term sees it, and boxes elsewhere see nothing.
    torch.manual_seed(0)
    # No denoiser to train: it is frozen, so the objective only scores (the detector's terms).
    model = wrap(nn.Identity(), monai_retinanet()).set_trainable(denoiser=False, detector=False)
    model.train()
    _, clean, targets = batch(size=64, height=48)
    changed = clean.clone()
    changed[:, :, 12:24, 16:32] += 0.05  # rows 12..24, columns 16..32: the lesion box
    far = [{"boxes": torch.tensor([[48.0, 30.0, 62.0, 46.0]]), "labels": torch.tensor([1])},
           targets[1]]
    # The frozen detector's BatchNorm uses running statistics, so features stay local.
    assert model.adapter.has_proposals(model.detector) is False
    near_loss = model(changed, clean, targets)["roi_perceptual"]
    far_loss = model(changed, clean, far)["roi_perceptual"]
    assert near_loss > 10 * far_loss
