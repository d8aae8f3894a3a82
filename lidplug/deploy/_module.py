"""The module that is exported: the denoiser, its window, a checked float32 interface.

Kept scriptable (TorchScript) and exportable (``torch.export``) whatever the denoiser is: when the
denoiser itself only traces, the traced graph sits inside this scripted shell, so every export has
the same two entry points for Python, TorchScript and C++ callers alike.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lidplug.data.transforms import HUWindow

__all__ = ["Deployable"]


class Deployable(nn.Module):
    """A denoiser with its normalisation window, taking and returning float32.

    ``forward`` maps window units to window units (what the denoiser was trained on);
    ``denoise_hu`` maps Hounsfield units to Hounsfield units through the window. A half-precision
    variant keeps the float32 interface and casts at the boundary, so callers (the C++ program
    among them) never handle half tensors.

    Args:
        denoiser: module mapping Tensor[B, C, H, W] -> Tensor[B, C, H, W] in window units.
        window: the normalisation window the denoiser's units are in.
        channels: C, checked on every call.
        dtype: the dtype the denoiser's weights are in (float32, float16 or bfloat16).

    Shape:
        input and output Tensor[B, C, H, W], float32.
    """

    def __init__(self, denoiser: nn.Module, window: HUWindow, channels: int = 1,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.window = window
        self.channels = channels
        self.dtype = dtype

    def forward(self, x: Tensor) -> Tensor:
        """Denoises Tensor[B, C, H, W] in window units."""
        if x.dim() != 4 or x.size(1) != self.channels:
            raise ValueError(f"lidplug denoiser: expected a Tensor[B, {self.channels}, H, W], got shape {x.shape}"
                             )
        return self.denoiser(x.to(self.dtype)).to(x.dtype)

    @torch.jit.export
    def denoise_hu(self, hu: Tensor) -> Tensor:
        """Denoises Tensor[B, C, H, W] in Hounsfield units (window, denoise, inverse window)."""
        return self.window.inverse(self.forward(self.window(hu)))
