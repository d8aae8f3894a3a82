"""A small U-Net denoiser with a global residual.

Reference: O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015, LNCS 9351:234-241. doi:10.1007/978-3-319-24574-4_28

The paper's layout (two 3x3 conv + ReLU per level, 2x2 max pooling down, 2x2 transposed conv up,
skip connections concatenated, channels doubling per level), with two changes for denoising:
convolutions are zero-padded so features keep their size (the paper's unpadded ones crop the
output), and a 1x1 head predicts a correction added to the input (global residual), so the
network learns the noise rather than the image. An input whose size is not a multiple of the
total stride ``2**depth`` is padded on the bottom/right by edge replication and the output cropped
back, so any ``H, W`` works.

As for every reference model (reasons measured in :mod:`lidplug.models._common`), the network
runs on standardised inputs ``(x - center) / scale`` and its 1x1 head, which predicts the
correction in those units, starts at zero, so the untrained model is the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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

__all__ = ["UNet"]


class _DoubleConv(nn.Sequential):
    """Two 3x3 conv + ReLU, size-preserving."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.ReLU(inplace=True),
        )


class _Up(nn.Module):
    """Upsample by 2, concatenate the skip features, then a double conv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.conv = _DoubleConv(2 * out_channels, out_channels)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


@register_denoiser("unet")
class UNet(nn.Module):
    """Small U-Net (Ronneberger et al., MICCAI 2015) with a global residual.

    Args:
        base_channels: channels at full resolution; doubled at each level down.
        depth: number of 2x downsamplings (the total stride is ``2**depth``).
        center, scale: input standardisation (defaults: water and 409.6 HU in
            :class:`~lidplug.data.HUWindow` units).

    Shape:
        input ``[B, 1, H, W]`` in normalised window units, any ``H, W``; output the same.
    """

    def __init__(self, base_channels: int = 32, depth: int = 3, center: float = DEFAULT_CENTER,
                 scale: float = DEFAULT_SCALE) -> None:
        super().__init__()
        self.center, self.scale = check_units("UNet", center, scale)
        b = check_positive_int("UNet", "base_channels", base_channels)
        self.depth = check_positive_int("UNet", "depth", depth)
        self.base_channels = b
        self.stride = 2**depth
        widths = [b * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList(
            [_DoubleConv(1 if level == 0 else widths[level - 1], widths[level])
             for level in range(depth)]
        )
        self.bottleneck = _DoubleConv(widths[depth - 1], widths[depth])
        # Deepest level first, the order forward() consumes them.
        self.up = nn.ModuleList([_Up(widths[level + 1], widths[level])
                                 for level in reversed(range(depth))])
        self.head = zero_init_(nn.Conv2d(b, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Denoise ``x`` ``[B, 1, H, W]``; returns ``[B, 1, H, W]``."""
        check_image_batch(x, "UNet", 1)
        h, w = x.shape[2], x.shape[3]
        pad_h = (self.stride - h % self.stride) % self.stride
        pad_w = (self.stride - w % self.stride) % self.stride
        # Replicate (not zero) padding: a zero border would be an artificial -1024 HU edge.
        z = (x - self.center) / self.scale
        y = F.pad(z, [0, pad_w, 0, pad_h], mode="replicate") if pad_h or pad_w else z
        skips: list[Tensor] = []
        for block in self.down:
            y = block(y)
            skips.append(y)
            y = F.max_pool2d(y, 2)
        y = self.bottleneck(y)
        for block in self.up:
            y = block(y, skips.pop())
        return x + self.scale * self.head(y)[:, :, :h, :w]

    def extra_repr(self) -> str:
        return (f"base_channels={self.base_channels}, depth={self.depth}, "
                f"center={self.center:g}, scale={self.scale:g}")
