"""RED-CNN: residual encoder-decoder CNN for low-dose CT.

Reference: H. Chen, Y. Zhang, M. K. Kalra, F. Lin, Y. Chen, P. Liao, J. Zhou, G. Wang,
"Low-Dose CT With a Residual Encoder-Decoder Convolutional Neural Network", IEEE Transactions on
Medical Imaging 36(12):2524-2535, 2017. doi:10.1109/TMI.2017.2715284

As in the paper: five convolutions and five transposed convolutions, all 5x5 with stride 1 and no
padding (each conv shrinks the image by 4 pixels, each transposed conv grows it back, so the
output has the input's size exactly), 96 channels, ReLU after every hidden layer, and three
shortcuts (input -> output, 2nd conv -> 3rd deconv, 4th conv -> 1st deconv) added before the
ReLU.

Two changes, for training that works at small budgets (measured reasons in
:mod:`lidplug.models._common`): the network runs on standardised inputs
(``(x - center) / scale``) and its last deconvolution, which with the input shortcut makes the
output, starts at zero, so the untrained model is the identity; and the paper's final ReLU is
dropped: in the standardised units it would clip at water instead of air, and in the original
units it pins every air pixel at -1024 HU with zero gradient, which noise below -1024 HU needs.
"""

from __future__ import annotations

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

__all__ = ["REDCNN"]

_KERNEL = 5
_LAYERS = 5
# Each unpadded 5x5 conv removes 4 pixels; five of them must leave at least one.
_MIN_SIZE = _LAYERS * (_KERNEL - 1) + 1


@register_denoiser("redcnn")
class REDCNN(nn.Module):
    """RED-CNN (Chen et al., IEEE TMI 2017).

    Args:
        channels: feature channels of every hidden layer (96 in the paper).
        center, scale: input standardisation (defaults: water and 409.6 HU in
            :class:`~lidplug.data.HUWindow` units; see the module docstring).

    Shape:
        input ``[B, 1, H, W]`` in normalised window units with ``H, W >= 21``; output the same.
    """

    def __init__(self, channels: int = 96, center: float = DEFAULT_CENTER,
                 scale: float = DEFAULT_SCALE) -> None:
        super().__init__()
        c = check_positive_int("REDCNN", "channels", channels)
        self.channels = c
        self.center, self.scale = check_units("REDCNN", center, scale)
        self.min_size = _MIN_SIZE  # an attribute, since TorchScript cannot read module globals
        self.enc1 = nn.Conv2d(1, c, _KERNEL)
        self.enc2 = nn.Conv2d(c, c, _KERNEL)
        self.enc3 = nn.Conv2d(c, c, _KERNEL)
        self.enc4 = nn.Conv2d(c, c, _KERNEL)
        self.enc5 = nn.Conv2d(c, c, _KERNEL)
        self.dec1 = nn.ConvTranspose2d(c, c, _KERNEL)
        self.dec2 = nn.ConvTranspose2d(c, c, _KERNEL)
        self.dec3 = nn.ConvTranspose2d(c, c, _KERNEL)
        self.dec4 = nn.ConvTranspose2d(c, c, _KERNEL)
        self.dec5 = zero_init_(nn.ConvTranspose2d(c, 1, _KERNEL))

    def forward(self, x: Tensor) -> Tensor:
        """Denoise ``x`` ``[B, 1, H, W]``; returns ``[B, 1, H, W]``."""
        check_image_batch(x, "REDCNN", self.min_size)
        z = (x - self.center) / self.scale
        e1 = F.relu(self.enc1(z))
        e2 = F.relu(self.enc2(e1))
        e3 = F.relu(self.enc3(e2))
        e4 = F.relu(self.enc4(e3))
        e5 = F.relu(self.enc5(e4))
        d1 = F.relu(self.dec1(e5) + e4)
        d2 = F.relu(self.dec2(d1))
        d3 = F.relu(self.dec3(d2) + e2)
        d4 = F.relu(self.dec4(d3))
        return x + self.scale * self.dec5(d4)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, center={self.center:g}, scale={self.scale:g}"
