"""Gradient of each LIDnet term on the denoiser output, per unit weight: the basis of the default
``det_weight`` / ``roi_weight`` (see lidplug/wrapper.py and RESULTS.md).

For built-in phantom batches (HUWindow units) and a fresh torchvision Faster R-CNN ResNet-18 FPN,
it prints the L2 norm of d(term)/d(output) with output = the low-dose batch (a denoiser at the
start of training), and the ratio of each feedback term's norm to the pixel term's.

Usage: ``python benchmarks/feedback_gradients.py``
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor

from lidplug import wrap
from lidplug.data import HU_MAX, HU_MIN, HUWindow, MapImages, PhantomDataset, collate

TERMS = ("pixel", "detection", "roi_perceptual")


class _Fixed(nn.Module):
    """A 'denoiser' whose output is a given leaf tensor, so its gradient can be read."""

    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output


def main() -> None:
    print("| image | dose | input RMSE (HU) | pixel | detection | roi_perceptual "
          "| detection / pixel | roi / pixel |")
    print("|---|---|---|---|---|---|---|---|")
    for size in (128, 256):
        for dose in (0.25, 0.1):
            torch.manual_seed(0)
            data = PhantomDataset(8, size=size, seed=5, dose=dose,
                                  transform=MapImages(HUWindow()))
            batch = collate([data[i] for i in range(4)])
            detector = FasterRCNN(_resnet_fpn_extractor(resnet18(), trainable_layers=5),
                                  num_classes=2, min_size=size, max_size=size)
            output = batch["low"].clone().requires_grad_()
            model = wrap(_Fixed(output), detector, det_weight=1.0, roi_weight=1.0).train()
            result = model(batch["low"], batch["normal"], batch["target"])
            norms = {t: torch.autograd.grad(result[t], output, retain_graph=True)[0].norm().item()
                     for t in TERMS}
            rmse = result["pixel"].item() ** 0.5 * (HU_MAX - HU_MIN)
            print(f"| {size}² | {dose} | {rmse:.1f} | {norms['pixel']:.2e} "
                  f"| {norms['detection']:.2e} | {norms['roi_perceptual']:.2e} "
                  f"| {norms['detection'] / norms['pixel']:.1e} "
                  f"| {norms['roi_perceptual'] / norms['pixel']:.1e} |")


if __name__ == "__main__":
    main()
