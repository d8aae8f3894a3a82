"""The ROI perceptual loss on a real detector's features, fused vs the torchvision path.

Builds synthetic low/normal-dose CT phantoms with lesion boxes, runs both images through the
ResNet-18 FPN backbone of a torchvision Faster R-CNN (random weights: nothing is downloaded),
and compares lidplug's fused loss with ``MultiScaleRoIAlign`` + ``F.mse_loss``: value, gradient
reaching the denoised image, and time for forward + backward.

Run: ``python examples/roi_perceptual_loss.py [--batch 4] [--size 256] [--device cpu]``
"""

from __future__ import annotations

import argparse
import time

import torch
from torchvision.models.detection import fasterrcnn_resnet50_fpn
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

from lidplug import ops
from lidplug.data import HUWindow, PhantomDataset, collate
from lidplug.ops._torchvision_path import torchvision_roi_perceptual_loss


def _timed(fn, repeats=5):
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        result = fn()
    return result, (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)

    data = PhantomDataset(args.batch, size=args.size, dose=0.25, seed=0)
    batch = collate([data[i] for i in range(args.batch)])
    window = HUWindow()
    low = window(batch["low"]).to(args.device)
    normal = window(batch["normal"]).to(args.device)
    boxes = [t["boxes"].to(args.device) for t in batch["target"]]
    print(f"{args.batch} phantom slices of {args.size}x{args.size}, "
          f"{sum(len(b) for b in boxes)} lesion boxes; compiled ops: {ops.extension_available()}")

    # The backbone of a real torchvision detector (Faster R-CNN layout: ResNet + FPN).
    detector = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    detector.backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None)
    backbone = detector.backbone.to(args.device).eval()
    names = ["0", "1", "2", "3"]  # strides 4..32, finest first (the pooling levels)

    denoised = low.clone().requires_grad_()  # stands in for a denoiser's output
    with torch.no_grad():
        ref = backbone(normal.expand(-1, 3, -1, -1))
    ref_levels = [ref[n] for n in names]
    scales = [1 / 4, 1 / 8, 1 / 16, 1 / 32]

    def step(loss_fn):
        feats = backbone(denoised.expand(-1, 3, -1, -1))
        loss = loss_fn([feats[n] for n in names])
        (grad,) = torch.autograd.grad(loss, denoised)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return loss.detach(), grad

    (fused, g_fused), t_fused = _timed(lambda: step(
        lambda f: ops.roi_perceptual_loss(f, ref_levels, boxes, 7, scales)))
    (tv, g_tv), t_tv = _timed(lambda: step(
        lambda f: torchvision_roi_perceptual_loss(f, ref_levels, boxes, (7, 7), scales)))
    rel = float((g_fused - g_tv).norm() / g_tv.norm().clamp_min(1e-30))
    print(f"ROI perceptual loss  fused {fused.item():.6g}   torchvision {tv.item():.6g}")
    print(f"gradient on the denoised image: relative difference {rel:.2e}")
    print(f"step (backbone + loss, fwd+bwd): fused {t_fused * 1e3:.1f} ms, "
          f"torchvision path {t_tv * 1e3:.1f} ms")
    if not torch.allclose(fused, tv, rtol=1e-4, atol=1e-7) or rel > 1e-3:
        raise SystemExit("fused and torchvision results disagree")


if __name__ == "__main__":
    main()
