"""A wrapped (LIDnet) denoiser training step against the minimal compute it cannot avoid.

Run: ``pytest benchmarks/test_bench_wrap_step.py --benchmark-enable --benchmark-json=out.json``,
then ``python benchmarks/report.py out.json``; on a shared CPU prefer
``python benchmarks/test_bench_wrap_step.py [ROUNDS]``, which runs the entries round-robin (see
``interleave.py``). Entries of one group run side by side:

* ``minimal``: a denoiser step (forward, pixel loss, backward, optimiser step) plus one detector
  forward + backward on the same batch (frozen detector, gradient to its input): the floor any
  detector-feedback method pays.
* ``wrapped``: one step of ``wrap(denoiser, detector)`` with all three terms (one backbone pass
  with grad, the normal-dose features without grad, the fused ROI loss).
* ``naive``: the straightforward LIDnet step: the detector forward for its loss, a second backbone
  pass for the perceptual features, and the ROI loss through torchvision's MultiScaleRoIAlign.

Target (issue): ``wrapped`` at most 1.10x ``minimal`` on a GPU for RED-CNN (96 ch) + Faster R-CNN
R50-FPN at 8 x 512^2; the CPU case is a small configuration, reported for reference.
"""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
from interleave import interleaved_medians, print_ratios
from torchvision.models import resnet18
from torchvision.models.detection import FasterRCNN, fasterrcnn_resnet50_fpn
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor

from lidplug import wrap
from lidplug.models import create_denoiser
from lidplug.ops._torchvision_path import torchvision_roi_perceptual_loss

CASES = {
    # name: (device, batch, image size, RED-CNN channels, detector)
    "cpu-redcnn32-r18fpn-2x128": ("cpu", 2, 128, 32, "r18"),
    "cuda-redcnn96-r50fpn-8x512": ("cuda", 8, 512, 96, "r50"),
}


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
    den, det, adapt = model.denoiser, model.detector, model.input_adapter
    levels = ["0", "1", "2", "3"]

    def minimal():
        optimizer.zero_grad(set_to_none=True)
        out = den(low)
        F.mse_loss(out, clean).backward()
        optimizer.step()
        x = adapt(out.detach()).requires_grad_()
        sum(det(list(x.unbind(0)), targets).values()).backward()

    def wrapped():
        optimizer.zero_grad(set_to_none=True)
        model(low, clean, targets)["loss"].backward()
        optimizer.step()

    def naive():
        cfg = model.config
        optimizer.zero_grad(set_to_none=True)
        out = den(low)
        x = adapt(out)
        detection = sum(det(list(x.unbind(0)), targets).values())
        images, _ = det.transform(list(x.unbind(0)))
        feats = det.backbone(images.tensors)  # the second pass with grad
        with torch.no_grad():
            refs = det.backbone(det.transform(list(adapt(clean).unbind(0)))[0].tensors)
        size = images.tensors.shape[-1]
        scales = [feats[k].shape[-1] / size for k in levels]
        roi = torchvision_roi_perceptual_loss([feats[k] for k in levels],
                                              [refs[k] for k in levels],
                                              [t["boxes"] for t in targets], (7, 7), scales)
        loss = F.mse_loss(out, clean) + cfg.det_weight * detection + cfg.roi_weight * roi
        loss.backward()
        optimizer.step()

    return {"minimal": minimal, "wrapped": wrapped, "naive": naive}


def _case_steps(case: str):
    device, batch, size, channels, kind = CASES[case]
    torch.manual_seed(0)
    model = wrap(create_denoiser("redcnn", channels=channels), _detector(kind, size))
    model.to(device).train()
    optimizer = torch.optim.Adam(model.denoiser.parameters(), lr=1e-5)
    return _steps(model, optimizer, *_batch(batch, size, device))


@pytest.mark.parametrize("impl", ["minimal", "wrapped", "naive"])
@pytest.mark.parametrize("case", list(CASES))
def test_wrapped_training_step(benchmark, case, impl):
    device = CASES[case][0]
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    fn = _case_steps(case)[impl]

    def step():
        fn()
        if device == "cuda":
            torch.cuda.synchronize()

    benchmark.group = case
    benchmark.extra_info.update(device=device, torch=torch.__version__)
    if device == "cuda":
        benchmark.extra_info["gpu"] = torch.cuda.get_device_name()
        benchmark.pedantic(step, rounds=20, warmup_rounds=3)
    else:
        benchmark.pedantic(step, rounds=5, warmup_rounds=1)


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    for name, (device, *_) in CASES.items():
        if device == "cuda" and not torch.cuda.is_available():
            continue
        sync = torch.cuda.synchronize if device == "cuda" else None
        medians = interleaved_medians(_case_steps(name), rounds, warmup=2, sync=sync)
        print_ratios(f"{name}: torch {torch.__version__}, {torch.get_num_threads()} threads, "
                     f"{rounds} interleaved rounds", medians, "minimal")
