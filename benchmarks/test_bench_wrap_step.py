"""A wrapped (LIDnet) denoiser training step against the minimal compute of the same terms.

Run: ``pytest benchmarks/test_bench_wrap_step.py --benchmark-enable --benchmark-json=out.json``,
then ``python benchmarks/report.py out.json``; on a shared CPU prefer
``python benchmarks/test_bench_wrap_step.py [ROUNDS] [CASE ...]``, which runs the entries
round-robin (see ``interleave.py``). Entries of one group run side by side, all with the fixed
feedback weights (``wrap(..., balance=False)``; the default balancer adds two backward passes
through the detector every ``balance_every`` steps, reported separately):

* ``minimal``: the same three terms written as plainly as possible: the denoiser forward, one
  detector forward on its output (its losses, and its FPN levels pooled by the fused ROI loss
  against the normal-dose levels, computed once before the timed steps as for a frozen
  detector), one backward into the denoiser, the optimiser step.
* ``wrapped``: one step of ``wrap(denoiser, detector)``: the same, plus what the wrapper does
  per step (input and target checks, the normal-dose backbone pass without grad, the hooks
  that catch the detector's features).
* ``reference``: the part of ``wrapped`` that ``minimal`` leaves out, alone: the normal-dose
  images through the detector's transform and backbone without grad.
* ``naive`` (not at clinical size): the straightforward LIDnet step: the detector forward for its
  loss, a second backbone pass for the perceptual features, and the ROI loss through
  torchvision's MultiScaleRoIAlign.

Cases: ``cpu-redcnn96-r50fpn-2x512`` is the clinical size of the issue (RED-CNN at the paper's
width, torchvision Faster R-CNN R50-FPN without weights, 2 classes, batch 2 of 512 x 512; target
``wrapped`` at most 1.05x ``minimal``); ``cpu-redcnn32-r18fpn-2x128`` a small configuration;
``cuda-redcnn96-r50fpn-8x512`` the GPU anchor of ../shared/PERF.md.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch
import torch.nn.functional as F
from interleave import interleaved_medians, print_ratios
from torchvision.models import resnet18
from torchvision.models.detection import FasterRCNN, fasterrcnn_resnet50_fpn
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor

from lidplug import ops, wrap
from lidplug.models import create_denoiser
from lidplug.ops._torchvision_path import torchvision_roi_perceptual_loss

CASES = {
    # name: (device, batch, image size, RED-CNN channels, detector, entries)
    "cpu-redcnn96-r50fpn-2x512": ("cpu", 2, 512, 96, "r50", ("minimal", "wrapped", "reference")),
    "cpu-redcnn32-r18fpn-2x128": ("cpu", 2, 128, 32, "r18", ("minimal", "wrapped", "naive")),
    "cuda-redcnn96-r50fpn-8x512": ("cuda", 8, 512, 96, "r50", ("minimal", "wrapped", "naive")),
}
LEVELS = ["0", "1", "2", "3"]  # the FPN levels the box head pools (wrap's default)


def _detector(kind: str, size: int):
    if kind == "r50":
        return fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2,
                                       min_size=size, max_size=size)
    backbone = _resnet_fpn_extractor(resnet18(), trainable_layers=5)
    return FasterRCNN(backbone, num_classes=2, min_size=size, max_size=size)


def _batch(batch: int, size: int, device):
    g = torch.Generator().manual_seed(0)
    clean = 0.25 + 0.02 * torch.rand(batch, 1, size, size, generator=g)
    low = clean + 0.01 * torch.randn(batch, 1, size, size, generator=g)
    targets = []
    for _ in range(batch):  # two lesion boxes of 6..40 px per image
        wh = 6 + 34 * torch.rand(2, 2, generator=g)
        xy = torch.rand(2, 2, generator=g) * (size - wh)
        targets.append({"boxes": torch.cat([xy, xy + wh], 1).to(device),
                        "labels": torch.ones(2, dtype=torch.int64, device=device)})
    return low.to(device), clean.to(device), targets


def _steps(model, optimizer, low, clean, targets):
    den, det, adapt, cfg = model.denoiser, model.detector, model.input_adapter, model.config
    boxes = [t["boxes"] for t in targets]
    # The images are of the detector's size: its transform does not resize them, so the boxes
    # and the levels' scales are those of the input.
    def reference():
        with torch.no_grad():
            return det.backbone(det.transform(list(adapt(clean).unbind(0)))[0].tensors)

    ref_levels = [reference()[k] for k in LEVELS]

    def minimal():
        optimizer.zero_grad(set_to_none=True)
        out = den(low)
        features = {}
        hook = det.backbone.register_forward_hook(lambda _m, _i, o: features.update(o))
        detection = sum(det(list(adapt(out).unbind(0)), targets).values())
        hook.remove()
        roi = ops.roi_perceptual_loss([features[k] for k in LEVELS], ref_levels, boxes, 7,
                                      image_size=tuple(low.shape[-2:]))
        loss = F.mse_loss(out, clean) + cfg.det_weight * detection + cfg.roi_weight * roi
        loss.backward()
        optimizer.step()

    def wrapped():
        optimizer.zero_grad(set_to_none=True)
        model(low, clean, targets)["loss"].backward()
        optimizer.step()

    def naive():
        optimizer.zero_grad(set_to_none=True)
        out = den(low)
        x = adapt(out)
        detection = sum(det(list(x.unbind(0)), targets).values())
        images, _ = det.transform(list(x.unbind(0)))
        feats = det.backbone(images.tensors)  # the second pass with grad
        with torch.no_grad():
            refs = det.backbone(det.transform(list(adapt(clean).unbind(0)))[0].tensors)
        size = images.tensors.shape[-1]
        scales = [feats[k].shape[-1] / size for k in LEVELS]
        roi = torchvision_roi_perceptual_loss([feats[k] for k in LEVELS],
                                              [refs[k] for k in LEVELS], boxes, (7, 7), scales)
        loss = F.mse_loss(out, clean) + cfg.det_weight * detection + cfg.roi_weight * roi
        loss.backward()
        optimizer.step()

    return {"minimal": minimal, "wrapped": wrapped, "reference": reference, "naive": naive}


def _case_steps(case: str):
    device, batch, size, channels, kind, entries = CASES[case]
    torch.manual_seed(0)
    model = wrap(create_denoiser("redcnn", channels=channels), _detector(kind, size),
                 balance=False)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.denoiser.parameters(), lr=1e-5)
    steps = _steps(model, optimizer, *_batch(batch, size, device))
    return {name: steps[name] for name in entries}


@pytest.mark.parametrize("impl", ["minimal", "wrapped", "reference", "naive"])
@pytest.mark.parametrize("case", list(CASES))
def test_wrapped_training_step(benchmark, case, impl):
    device, *_, entries = CASES[case]
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    if impl not in entries:
        pytest.skip(f"{impl} is not measured for {case}")
    fn = _case_steps(case)[impl]

    def step():
        fn()
        if device == "cuda":
            torch.cuda.synchronize()

    benchmark.group = case
    benchmark.extra_info.update(device=device, torch=torch.__version__,
                                threads=torch.get_num_threads())
    if device == "cuda":
        benchmark.extra_info["gpu"] = torch.cuda.get_device_name()
        benchmark.pedantic(step, rounds=20, warmup_rounds=3)
    else:
        # A clinical-size step takes tens of seconds on a small CPU.
        rounds = 3 if CASES[case][2] >= 512 else 5
        benchmark.pedantic(step, rounds=rounds, warmup_rounds=1)


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    for name in sys.argv[2:] or list(CASES):
        device = CASES[name][0]
        if device == "cuda" and not torch.cuda.is_available():
            continue
        sync = torch.cuda.synchronize if device == "cuda" else None
        load = os.getloadavg()[0]
        medians = interleaved_medians(_case_steps(name), rounds, warmup=1, sync=sync)
        print_ratios(f"{name}: torch {torch.__version__}, {torch.get_num_threads()} threads, "
                     f"{rounds} interleaved rounds, load {load:.1f} -> {os.getloadavg()[0]:.1f}",
                     medians, "minimal")
        print("  " + ", ".join(f"{k} / minimal = {v / medians['minimal']:.3f}"
                               for k, v in medians.items() if k != "minimal"))
