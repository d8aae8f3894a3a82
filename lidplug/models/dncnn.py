"""DnCNN: a deep residual-learning denoiser with batch normalisation.

Reference: K. Zhang, W. Zuo, Y. Chen, D. Meng, L. Zhang, "Beyond a Gaussian Denoiser: Residual
Learning of Deep CNN for Image Denoising", IEEE Transactions on Image Processing
26(7):3142-3155, 2017. doi:10.1109/TIP.2017.2662206

As in the paper: ``depth`` 3x3 convolutions (17 by default) with 64 channels; the first is followed
by ReLU, the middle ones by batch norm and ReLU, the last maps to one channel. The network
predicts the noise and subtracts it from the input (residual learning). Zero padding keeps the
image size, so any ``H, W`` works.

As for every reference model (reasons measured in :mod:`lidplug.models._common`), the body runs
on standardised inputs ``(x - center) / scale`` and predicts the noise in those units, and its
last convolution starts at zero, so the untrained model is the identity.
"""

from __future__ import annotations

from torch import Tensor, nn

from lidplug.models._common import (
    DEFAULT_CENTER,
    DEFAULT_SCALE,
    check_image_batch,
    check_positive_int,
    check_units,
    zero_init_,
)
from lidplug.models._registry import register_denoiser

__all__ = ["DnCNN"]


@register_denoiser("dncnn")
class DnCNN(nn.Module):
    """DnCNN (Zhang et al., IEEE TIP 2017).

    Args:
        depth: number of conv layers, >= 2 (17 in the paper).
        channels: feature channels of the hidden layers (64 in the paper).
        center, scale: input standardisation (defaults: water and 409.6 HU in
            :class:`~lidplug.data.HUWindow` units).

    Shape:
        input ``[B, 1, H, W]`` in normalised window units; output the same.
    """

    def __init__(self, depth: int = 17, channels: int = 64, center: float = DEFAULT_CENTER,
                 scale: float = DEFAULT_SCALE) -> None:
        super().__init__()
        self.center, self.scale = check_units("DnCNN", center, scale)
        self.depth = check_positive_int("DnCNN", "depth", depth, minimum=2)
        self.channels = c = check_positive_int("DnCNN", "channels", channels)
        layers: list[nn.Module] = [nn.Conv2d(1, c, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            # No conv bias where batch norm follows: its shift makes the bias redundant.
            layers += [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                       nn.ReLU(inplace=True)]
        layers.append(zero_init_(nn.Conv2d(c, 1, 3, padding=1)))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Denoise ``x`` ``[B, 1, H, W]``; returns ``[B, 1, H, W]``."""
        check_image_batch(x, "DnCNN", 1)
        return x - self.scale * self.body((x - self.center) / self.scale)

    def extra_repr(self) -> str:
        return (f"depth={self.depth}, channels={self.channels}, center={self.center:g}, "
                f"scale={self.scale:g}")
