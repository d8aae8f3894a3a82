"""RED-CNN: residual encoder-decoder CNN for low-dose CT.

Reference: H. Chen, Y. Zhang, M. K. Kalra, F. Lin, Y. Chen, P. Liao, J. Zhou, G. Wang,
"Low-Dose CT With a Residual Encoder-Decoder Convolutional Neural Network", IEEE Transactions on
Medical Imaging 36(12):2524-2535, 2017. doi:10.1109/TMI.2017.2715284

As in the paper: five convolutions and five transposed convolutions, all 5x5 with stride 1 and no
padding (each conv shrinks the image by 4 pixels, each transposed conv grows it back, so the
output has the input's size exactly), 96 channels, ReLU after every layer, and three shortcuts
(input -> output, 2nd conv -> 3rd deconv, 4th conv -> 1st deconv) added before the ReLU. The final
ReLU keeps the output >= 0, i.e. >= -1024 HU in the default :class:`~lidplug.data.HUWindow`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from lidplug.models._common import check_image_batch, check_positive_int
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

    Shape:
        input ``[B, 1, H, W]`` in normalised window units with ``H, W >= 21``; output the same.
    """

    def __init__(self, channels: int = 96) -> None:
        super().__init__()
        c = check_positive_int("REDCNN", "channels", channels)
        self.channels = c
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
        self.dec5 = nn.ConvTranspose2d(c, 1, _KERNEL)

    def forward(self, x: Tensor) -> Tensor:
        """Denoise ``x`` ``[B, 1, H, W]``; returns ``[B, 1, H, W]``."""
        check_image_batch(x, "REDCNN", self.min_size)
        e1 = F.relu(self.enc1(x))
        e2 = F.relu(self.enc2(e1))
        e3 = F.relu(self.enc3(e2))
        e4 = F.relu(self.enc4(e3))
        e5 = F.relu(self.enc5(e4))
        d1 = F.relu(self.dec1(e5) + e4)
        d2 = F.relu(self.dec2(d1))
        d3 = F.relu(self.dec3(d2) + e2)
        d4 = F.relu(self.dec4(d3))
        return F.relu(self.dec5(d4) + x)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"
