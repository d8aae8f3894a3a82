"""wrap() and the wrapped model refuse bad input with errors that name what was expected."""

import pytest
import torch
from tiny_detectors import TinyDenoiser, batch, faster_rcnn, retinanet
from torch import nn

from lidplug import wrap
from lidplug.detectors import DetectorInput


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return wrap(TinyDenoiser(), faster_rcnn()).train()


def _empty():
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}


def _with_boxes(boxes):
    _, _, targets = batch()
    targets[0] = {"boxes": torch.tensor(boxes, dtype=torch.float32),
                  "labels": torch.ones(len(boxes), dtype=torch.int64)}
    return targets


@pytest.mark.parametrize(("low", "message"), [
    (torch.rand(1, 64, 64), r"low: expected Tensor\[B, 1, H, W\], got \(1, 64, 64\)"),
    (torch.rand(2, 3, 64, 64), r"low: expected Tensor\[B, 1, H, W\], got \(2, 3, 64, 64\)"),
])
def test_wrong_rank_or_channels(model, low, message):
    _, _, targets = batch()
    with pytest.raises(ValueError, match=message):
        model(low, low, targets)


def test_integer_images(model):
    low, _, targets = batch()
    with pytest.raises(TypeError, match=r"low: expected a floating-point tensor, got torch.int64"):
        model(low.long(), low, targets)


def test_clean_of_another_shape(model):
    low, _, targets = batch()
    with pytest.raises(ValueError, match=r"clean: expected the shape of low \(2, 1, 64, 64\), "
                                         r"got \(2, 1, 32, 32\)"):
        model(low, low[..., :32, :32], targets)


def test_training_mode_needs_clean_and_targets(model):
    low, _, _ = batch()
    with pytest.raises(ValueError, match=r"expected model\(low, clean, targets\)"):
        model(low)


def test_targets_of_another_length(model):
    low, clean, targets = batch()
    with pytest.raises(ValueError, match=r"targets: expected 2 .*, got 3"):
        model(low, clean, [*targets, _empty()])
    with pytest.raises(TypeError, match="targets: expected a list of dicts"):
        model(low, clean, targets[0])


def test_target_without_labels(model):
    low, clean, targets = batch()
    targets[0] = {"boxes": targets[0]["boxes"]}
    with pytest.raises(ValueError, match=r"targets\[0\]: expected a dict with 'boxes' and "
                                         r"'labels', got \['boxes'\]"):
        model(low, clean, targets)


def test_box_outside_the_image(model):
    low, clean, _ = batch()
    with pytest.raises(ValueError, match=r"targets\[0\]: expected boxes inside the 64x64 image"):
        model(low, clean, _with_boxes([[10, 10, 70, 30]]))


def test_box_outside_the_image_is_clipped_on_request():
    torch.manual_seed(0)
    model = wrap(TinyDenoiser(), faster_rcnn(), clip_boxes=True).train()
    low, clean, _ = batch()
    with pytest.warns(UserWarning, match=r"targets\[0\]: clipped 1 box"):
        out = model(low, clean, _with_boxes([[10, 10, 70, 30]]))
    assert torch.isfinite(out["loss"])


@pytest.mark.parametrize("box", [[10, 10, 10, 30], [10, 30, 20, 20]])
def test_degenerate_box(model, box):
    low, clean, _ = batch()
    with pytest.raises(ValueError, match=r"targets\[0\]: expected x1 < x2 and y1 < y2"):
        model(low, clean, _with_boxes([box]))


def test_non_finite_box(model):
    low, clean, _ = batch()
    with pytest.raises(ValueError, match=r"targets\[0\]: expected finite coordinates"):
        model(low, clean, _with_boxes([[10, 10, float("nan"), 30]]))


def test_label_zero_is_background(model):
    low, clean, targets = batch()
    targets[0]["labels"] = torch.tensor([0])
    with pytest.raises(ValueError, match=r"expected labels >= 1"):
        model(low, clean, targets)


def test_denoiser_that_changes_the_shape():
    # Refused once at wrap time (the probe batch) ...
    with pytest.raises(ValueError, match=r"denoiser: expected Conv2d to return the input's shape "
                                         r"\[1, 1, 64, 64\], got \[1, 1, 62, 62\]"):
        wrap(nn.Conv2d(1, 1, 3), faster_rcnn())
    # ... and still at every step when the check is skipped.
    model = wrap(nn.Conv2d(1, 1, 3), faster_rcnn(), check=False).train()
    low, clean, targets = batch()
    with pytest.raises(ValueError, match=r"denoiser: expected an output of the input's shape "
                                         r"\(2, 1, 64, 64\), got \(2, 1, 62, 62\)"):
        model(low, clean, targets)


def test_wrap_arguments():
    with pytest.raises(TypeError, match=r"denoiser: expected an nn.Module, got function"):
        wrap(lambda x: x, faster_rcnn())
    with pytest.raises(TypeError, match="expected a torchvision detection model"):
        wrap(TinyDenoiser(), nn.Conv2d(3, 3, 1))
    with pytest.raises(TypeError, match=r"wrap: unknown option\(s\) \['det_wieght'\]"):
        wrap(TinyDenoiser(), faster_rcnn(), det_wieght=1.0)
    with pytest.raises(ValueError, match="roi_source: expected one of"):
        wrap(TinyDenoiser(), faster_rcnn(), roi_source="all")
    with pytest.raises(ValueError, match="det_weight: expected a finite number >= 0, got -1"):
        wrap(TinyDenoiser(), faster_rcnn(), det_weight=-1)
    with pytest.raises(ValueError, match="pixel_loss: expected one of"):
        wrap(TinyDenoiser(), faster_rcnn(), pixel_loss="ssim")


def test_proposals_need_a_two_stage_detector():
    with pytest.raises(ValueError, match="roi_source='proposals' needs a detector with a "
                                         "proposal stage"):
        wrap(TinyDenoiser(), retinanet(), roi_source="proposals")


def test_unknown_roi_level():
    torch.manual_seed(0)
    model = wrap(TinyDenoiser(), faster_rcnn(), roi_levels=("p9",)).train()
    low, clean, targets = batch()
    with pytest.raises(ValueError, match=r"roi_levels: expected names among the detector's "
                                         r"feature levels \['0', '1', '2', 'pool'\], got \['p9'\]"):
        model(low, clean, targets)


def test_input_adapter_channel_mismatch():
    with pytest.raises(ValueError, match=r"the detector expects 3 input channel\(s\), the "
                                         r"adapter gives 1"):
        wrap(TinyDenoiser(), faster_rcnn(), input_adapter=DetectorInput(channels=1))


# Regression (issue 20, item 15): each of these raised a raw torch error (IndexError, a
# dtype RuntimeError, "does not require grad", ...) instead of one naming the cause.
@pytest.mark.parametrize("make", [faster_rcnn, retinanet])
def test_a_label_the_detector_has_no_class_for(make):
    model = wrap(TinyDenoiser(), make()).train()
    low, clean, targets = batch()
    targets[0] = {"boxes": torch.tensor([[4.0, 4.0, 20.0, 20.0]]),
                  "labels": torch.tensor([2])}  # num_classes=2: background 0 and lesion 1
    with pytest.raises(ValueError, match=r"targets\[0\]: expected labels below 2"):
        model(low, clean, targets)


class _CastingDenoiser(nn.Module):
    def __init__(self, dtype):
        super().__init__()
        self.conv, self.dtype = nn.Conv2d(1, 1, 3, padding=1), dtype

    def forward(self, x):
        return self.conv(x).to(self.dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_a_denoiser_output_of_another_dtype(dtype):
    # Found when wrapped (the probe) ...
    with pytest.raises(TypeError, match=rf"denoiser: expected _CastingDenoiser to return the "
                                        rf"input's dtype torch.float32, got {dtype}"):
        wrap(_CastingDenoiser(dtype), faster_rcnn())
    # ... and in training, past a wrap that skipped the probe.
    model = wrap(_CastingDenoiser(dtype), faster_rcnn(), check=False).train()
    low, clean, targets = batch()
    with pytest.raises(TypeError, match=rf"denoiser: expected an output of dtype float32 .*"
                                        rf"got {str(dtype).replace('torch.', '')}"):
        model(low, clean, targets)


def test_a_denoiser_without_parameters_cannot_train():
    model = wrap(nn.Identity(), faster_rcnn()).train()
    low, clean, targets = batch()
    with pytest.raises(ValueError, match="denoiser: expected parameters to train"):
        model(low, clean, targets)
    with torch.no_grad():  # losses to look at, not to train with
        assert model(low, clean, targets)["loss"].isfinite()
    model.set_trainable(denoiser=False, detector=False)  # scoring a detector alone is fine
    assert model(low, clean, targets)["loss"].isfinite()


def test_a_batch_of_no_images():
    model = wrap(TinyDenoiser(), faster_rcnn()).train()
    empty = torch.zeros(0, 1, 64, 64)
    with pytest.raises(ValueError, match=r"low: expected at least one image"):
        model(empty, empty, [])
