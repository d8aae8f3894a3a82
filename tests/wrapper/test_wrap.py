"""wrap(): the API, the three loss terms, gradients through a frozen detector, every detector family."""

import pytest
import torch
from tiny_detectors import DETECTORS, TinyDenoiser, batch, faster_rcnn
from torch import nn
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from lidplug import LesionAwareDenoiser, WrapConfig, wrap
from lidplug.detectors import DetectorInput
from lidplug.ops import roi_perceptual_loss


def _wrapped(detector="faster_rcnn_fpn", **options):
    # Fixed weights unless a test asks otherwise: these tests check the objective's algebra.
    options.setdefault("balance", False)
    torch.manual_seed(0)
    model = wrap(TinyDenoiser(), DETECTORS[detector](), **options)
    return model.train()


def test_wrap_keeps_the_users_modules():
    den, det = TinyDenoiser(), faster_rcnn()
    model = wrap(den, det)
    assert isinstance(model, LesionAwareDenoiser)
    assert model.denoiser is den and model.detector is det
    assert isinstance(model.config, WrapConfig) and isinstance(model.input_adapter, DetectorInput)
    # Beside the user's two modules, only the feedback balancer's state (lidplug.balance).
    assert set(model.state_dict()) == ({f"denoiser.{k}" for k in den.state_dict()}
                                       | {f"detector.{k}" for k in det.state_dict()}
                                       | {"balancer.log_ratio", "balancer.steps"})


def test_eval_mode_is_exactly_the_denoiser():
    model = _wrapped().eval()
    low, _, _ = batch()
    calls = []
    model.detector.register_forward_pre_hook(lambda *a: calls.append("detector"))
    torch.testing.assert_close(model(low), model.denoiser(low), rtol=0, atol=0)
    assert calls == []


@pytest.mark.parametrize("name", list(DETECTORS))
def test_training_mode_returns_every_term(name):
    model = _wrapped(name)
    low, clean, targets = batch()
    out = model(low, clean, targets)
    assert set(out) == {"loss", "output", "pixel", "detection", "roi_perceptual",
                        "detector_losses", "weights"}
    assert out["weights"] == {"detection": model.config.det_weight,
                              "roi_perceptual": model.config.roi_weight}
    assert out["output"].shape == low.shape
    for term in ("pixel", "detection", "roi_perceptual"):
        assert out[term].dim() == 0 and out[term].dtype == torch.float32
        assert torch.isfinite(out[term]) and out[term] > 0, term
    cfg = model.config
    expected = out["pixel"] + cfg.det_weight * out["detection"] + cfg.roi_weight * out[
        "roi_perceptual"]
    torch.testing.assert_close(out["loss"], expected)
    torch.testing.assert_close(out["detection"], sum(out["detector_losses"].values()))
    out["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.denoiser.parameters())


@pytest.mark.parametrize("name", list(DETECTORS))
def test_frozen_detector_gets_no_grad_and_keeps_its_statistics(name):
    model = _wrapped(name)
    before = {k: v.clone() for k, v in model.detector.state_dict().items()}
    low, clean, targets = batch()
    model(low, clean, targets)["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in model.detector.parameters())
    after = model.detector.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats included
    assert model.detector.training  # still returns losses


def test_trainable_detector_learns_and_denoiser_can_be_frozen():
    model = _wrapped()
    model.set_trainable(denoiser=False, detector=True)
    assert not model.denoiser.training
    low, clean, targets = batch()
    model(low, clean, targets)["loss"].backward()
    assert all(p.grad is None for p in model.denoiser.parameters())
    assert any(p.grad is not None for p in model.detector.parameters())


def _denoiser_grad(det_weight, roi_weight):
    model = _wrapped(det_weight=det_weight, roi_weight=roi_weight)
    low, clean, targets = batch()
    model(low, clean, targets)["loss"].backward()
    return torch.cat([p.grad.flatten() for p in model.denoiser.parameters()])


def test_feedback_weights_change_the_denoiser_gradient():
    pixel_only = _denoiser_grad(0.0, 0.0)
    with_det = _denoiser_grad(1.0, 0.0)
    with_roi = _denoiser_grad(0.0, 1.0)
    both = _denoiser_grad(1.0, 1.0)
    assert not torch.allclose(pixel_only, with_det)
    assert not torch.allclose(pixel_only, with_roi)
    assert not torch.allclose(with_det, with_roi)
    # The objective is a weighted sum, so its gradient is too.
    torch.testing.assert_close(both, with_det + with_roi - pixel_only, rtol=1e-4, atol=1e-7)


def test_one_backbone_pass_with_grad_per_step():
    model = _wrapped()
    passes = []
    model.detector.backbone.register_forward_hook(
        lambda *a: passes.append(torch.is_grad_enabled()))
    low, clean, targets = batch()
    model(low, clean, targets)
    assert passes == [False, True]  # the normal-dose reference without grad, then the one pass
    passes.clear()
    model.config.roi_weight = 0.0
    model(low, clean, targets)
    assert passes == [True]


def _manual_roi_loss(model, output, clean, boxes, scale):
    # The ROI term rebuilt by hand from the detector's transform and backbone.
    det = model.detector
    with torch.no_grad():
        ims, _ = det.transform(list(model.input_adapter(output).unbind(0)))
        refs, _ = det.transform(list(model.input_adapter(clean).unbind(0)))
        feats, ref_feats = det.backbone(ims.tensors), det.backbone(refs.tensors)
    levels = ["0", "1", "2"]
    return roi_perceptual_loss([feats[k] for k in levels], [ref_feats[k] for k in levels],
                               [b * scale for b in boxes], 7, sampling_ratio=2,
                               image_size=tuple(ims.tensors.shape[-2:]))


def test_resizing_detector_pools_resized_boxes_from_its_own_features():
    # The transform upsamples 64 -> 96: features and boxes must both be in the 96-pixel frame.
    torch.manual_seed(0)
    model = wrap(TinyDenoiser(), faster_rcnn(size=96)).train()
    low, clean, targets = batch()
    out = model(low, clean, targets)
    manual = _manual_roi_loss(model, out["output"].detach(), clean,
                              [t["boxes"] for t in targets], 1.5)
    torch.testing.assert_close(out["roi_perceptual"], manual, rtol=1e-5, atol=1e-7)


class _Identity(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x * self.scale


@pytest.mark.parametrize("seed", range(4))
def test_multiscale_training_resizes_reference_and_output_alike(seed):
    # min_size with several values: torchvision picks a random size per image. Output == clean,
    # so the ROI term is exactly 0 only if both passes picked the same sizes.
    torch.manual_seed(seed)
    det = faster_rcnn(size=64)
    det.transform.min_size = (48, 64, 80, 96)
    det.transform.max_size = 96
    model = wrap(_Identity(), det).train()
    _, clean, targets = batch(seed=seed)
    out = model(clean, clean, targets)
    assert out["roi_perceptual"].item() == 0.0


def test_slices_without_lesions_have_no_roi_term():
    model = _wrapped()
    low, clean, _targets = batch()
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    out = model(low, clean, empty)
    assert out["roi_perceptual"].item() == 0.0 and out["detection"] > 0
    out["loss"].backward()


@pytest.mark.parametrize("source", ["proposals", "both"])
def test_roi_source_proposals(source):
    model = _wrapped(roi_source=source, num_proposals=4)
    low, clean, targets = batch()
    out = model(low, clean, targets)
    assert out["roi_perceptual"] > 0
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    assert model(low, clean, empty)["roi_perceptual"] > 0  # proposals exist without lesions


def test_roi_levels_option_picks_levels():
    fine = _wrapped(roi_levels=("0",))
    coarse = _wrapped(roi_levels=("2",))
    low, clean, targets = batch()
    assert fine(low, clean, targets)["roi_perceptual"] != coarse(low, clean, targets)[
        "roi_perceptual"]


def test_l1_pixel_loss():
    model = _wrapped(pixel_loss="l1")
    low, clean, targets = batch()
    out = model(low, clean, targets)
    torch.testing.assert_close(out["pixel"], (out["output"] - clean).abs().mean())


def test_detect_returns_boxes_in_input_pixels_and_restores_mode():
    model = _wrapped()
    low, _, _ = batch()
    dets = model.detect(low)
    assert len(dets) == 2 and set(dets[0]) == {"boxes", "scores", "labels"}
    assert model.training and model.detector.training
    for d in dets:
        assert (d["boxes"][:, 2:] <= 64).all()


def test_bf16_autocast():
    model = _wrapped()
    low, clean, targets = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(low, clean, targets)
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    out["loss"].backward()


@pytest.mark.slow
def test_full_size_torchvision_model_unchanged():
    # A stock torchvision builder (ResNet-50 FPN Faster R-CNN, random weights), as users have it.
    torch.manual_seed(0)
    det = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2,
                                  min_size=96, max_size=96)
    model = wrap(TinyDenoiser(), det).train()
    low, clean, targets = batch()
    out = model(low, clean, targets)
    assert out["roi_perceptual"] > 0 and out["detection"] > 0
    out["loss"].backward()
    assert all(p.grad is None for p in det.parameters())


def test_monai_network_as_denoiser_needs_no_adapter():
    nets = pytest.importorskip("monai.networks.nets")
    torch.manual_seed(0)
    denoiser = nets.BasicUNet(spatial_dims=2, in_channels=1, out_channels=1,
                              features=(4, 4, 8, 8, 16, 4))
    model = wrap(denoiser, faster_rcnn()).train()
    low, clean, targets = batch()
    out = model(low, clean, targets)
    out["loss"].backward()
    assert out["roi_perceptual"] > 0
    assert all(p.grad is not None for p in denoiser.parameters())
