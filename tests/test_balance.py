"""Automatic feedback balancing: each term sends the chosen fraction of the pixel gradient."""

import math
import warnings

import pytest
import torch
from tiny_detectors import TinyDenoiser, batch, faster_rcnn

from lidplug import wrap
from lidplug.balance import FeedbackBalancer


def _grad_norm(term, output):
    return torch.autograd.grad(term, output, retain_graph=True)[0].norm().item()


def _wrapped(**options):
    torch.manual_seed(0)
    return wrap(TinyDenoiser(), faster_rcnn(), balance=True, **options).train()


def test_balanced_terms_send_their_fraction_of_the_pixel_gradient():
    model = _wrapped(det_fraction=0.3, roi_fraction=0.7, balance_every=1)
    model.balancer.momentum = 0.0  # the measurement of this very step decides
    low, clean, targets = batch()
    out = model(low, clean, targets)
    output, w = out["output"], out["weights"]
    pixel = _grad_norm(out["pixel"], output)
    assert w["detection"] * _grad_norm(out["detection"], output) == pytest.approx(0.3 * pixel,
                                                                                 rel=1e-4)
    assert w["roi_perceptual"] * _grad_norm(out["roi_perceptual"], output) == pytest.approx(
        0.7 * pixel, rel=1e-4)


def test_the_weights_follow_the_terms_scale():
    # A term 1000x larger (other units, another detector) gets a weight 1000x smaller.
    low, clean, targets = batch()
    weights = []
    for scale in (1.0, 1000.0):
        model = _wrapped(balance_every=1)
        balancer = model.balancer
        out = model(low, clean, targets)
        terms = {"detection": out["detection"] * scale, "roi_perceptual": out["roi_perceptual"]}
        balancer.log_ratio.fill_(math.nan)
        weights.append(balancer(out["pixel"], terms, out["output"]))
    assert weights[1]["detection"] == pytest.approx(weights[0]["detection"] / 1000, rel=1e-4)
    assert weights[1]["roi_perceptual"] == pytest.approx(weights[0]["roi_perceptual"], rel=1e-6)


def test_weights_are_held_between_measurements_and_smoothed():
    model = _wrapped(balance_every=3)
    low, clean, targets = batch()
    seen = []
    for seed in range(4):
        low, clean, targets = batch(seed=seed)
        seen.append(model(low, clean, targets)["weights"]["detection"])
    assert seen[0] == seen[1] == seen[2] != seen[3]  # measured at steps 0 and 3 only
    assert int(model.balancer.steps) == 4


def test_no_measurement_in_eval_or_without_a_graph():
    balancer = FeedbackBalancer({"detection": 0.5}).eval()
    x = torch.rand(3, requires_grad=True)
    assert balancer(x.sum(), {"detection": (x ** 2).sum()}, x)["detection"] == 0.0
    assert int(balancer.steps) == 0


def test_a_term_turned_off_gets_no_weight():
    model = _wrapped(det_fraction=0.0, balance_every=1)
    out = model(*batch())
    assert out["weights"]["detection"] == 0.0 and out["weights"]["roi_perceptual"] > 0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"fractions": {"pixel": 1.0}}, "terms among"),
    ({"fractions": {"detection": -1.0}}, "detection fraction"),
    ({"fractions": {"detection": math.inf}}, "detection fraction"),
    ({"fractions": {}, "every": 0}, "every"),
    ({"fractions": {}, "momentum": 1.0}, "momentum"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FeedbackBalancer(**kwargs)


def test_balancer_state_survives_a_resume(tmp_path):
    from lidplug.data import HUWindow, MapImages, PhantomDataset
    from lidplug.training import CollaborativeTrainer, TrainConfig

    data = PhantomDataset(4, size=64, spacing=4.5, transform=MapImages(HUWindow()),
                          simulate_kwargs={"views": 90})
    cfg = TrainConfig(rounds=1, denoiser_steps=3, detector_steps=0, batch_size=2, device="cpu",
                      out_dir=str(tmp_path), progress=False, checkpoint_every=1)
    model = _wrapped(balance_every=2)
    trainer = CollaborativeTrainer(model, data, cfg)
    trainer.fit(stop_at=2)
    saved = model.balancer.state_dict()
    fresh = _wrapped(balance_every=2)
    CollaborativeTrainer(fresh, data, cfg, resume=True)
    for key, value in saved.items():
        torch.testing.assert_close(fresh.balancer.state_dict()[key], value, equal_nan=True,
                                   rtol=0, atol=0)
    assert int(fresh.balancer.steps) == 2


def test_half_precision_outputs_are_measured_as_in_float32():
    # Under fp16 autocast the gradient on the denoised batch is fp16, where the pixel gradient of
    # a near-converged denoiser on a large batch (about 1e-8 per pixel) underflows; the balance
    # must come out as in float32 all the same.
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    with torch.no_grad():  # the identity: the output is within noise of the target
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 1.0
        conv.bias.zero_()
    x = torch.rand(8, 1, 256, 256) * 0.01 + 0.25
    y = x + 0.003 * torch.randn_like(x)

    def log_ratio(dtype):
        balancer = FeedbackBalancer({"detection": 1.0, "roi_perceptual": 1.0}).train()
        with torch.autocast("cpu", dtype=torch.float16, enabled=dtype == torch.float16):
            out = conv(x)
            pixel = torch.nn.functional.mse_loss(out, y)
            det = (out[:, :, 100:120, 100:120].float() ** 2).mean()
        assert out.dtype == dtype
        balancer(pixel, {"detection": det}, out)
        return float(balancer.log_ratio[0])

    full = log_ratio(torch.float32)
    assert math.isfinite(full)
    assert log_ratio(torch.float16) == pytest.approx(full, abs=0.02)


def test_a_degenerate_term_is_capped_and_reported_once():
    # An untrained detector's ROI features are flat: the term is ~1e-18 and its gradient at
    # rounding level; balancing it would ask for a weight of about 1e12.
    from lidplug.balance import DEFAULT_MAX_WEIGHT, FeedbackWarning

    out = (torch.rand(2, 1, 16, 16) + 0.5).requires_grad_()
    pixel = ((out - 0.5) ** 2).mean()
    flat = (out * 1e-9).pow(2).mean()
    balancer = FeedbackBalancer({"roi_perceptual": 1.0}, every=1).train()
    with pytest.warns(FeedbackWarning, match="roi_perceptual feedback term is degenerate: its "
                                             "value is .*features are flat"):
        weights = balancer(pixel, {"roi_perceptual": flat}, out)
    assert weights["roi_perceptual"] == DEFAULT_MAX_WEIGHT
    assert "roi_perceptual" in balancer.degenerate
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once
        balancer(pixel, {"roi_perceptual": flat}, out)
    # A gradient at rounding level relative to the pixel term, with a value that is not flat.
    tiny = FeedbackBalancer({"detection": 1.0}, every=1, max_weight=100.0).train()
    with pytest.warns(FeedbackWarning, match=r"gradient on the denoised image is 1\.0e-04 of"):
        weights = tiny(pixel, {"detection": 1.0 + pixel.detach() + 1e-4 * pixel}, out)
    assert weights["detection"] == 100.0
    # A healthy term is neither capped nor reported.
    healthy = FeedbackBalancer({"detection": 1.0}, every=1).train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        weights = healthy(pixel, {"detection": 3.0 * pixel}, out)
    assert weights["detection"] == pytest.approx(1 / 3) and not healthy.degenerate


def test_a_degenerate_term_reaches_the_run_notes_and_the_report():
    from lidplug.pipeline import ArmResult
    from lidplug.pipeline.train import feedback_notes
    from lidplug.report.curves import training_html

    model = _wrapped()
    assert feedback_notes(model) == []
    model.balancer.degenerate["roi_perceptual"] = "its value is 1.0e-18: flat"
    notes = feedback_notes(model)
    assert notes == ["the roi_perceptual feedback term was degenerate: its value is 1.0e-18: "
                     "flat"]
    arm = ArmResult("lidnet", model, [{"step": 0, "phase": "denoiser", "loss": 1.0, "pixel": 1.0}],
                    notes=notes)
    assert "roi_perceptual feedback term was degenerate" in training_html({"lidnet": arm},
                                                                         ["lidnet"])
