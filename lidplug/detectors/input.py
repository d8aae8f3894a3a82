"""From the denoiser's one channel to the detector's input: one CT display window per channel.

Detectors built for photographs expect three channels in ``[0, 1]``; a CT slice has one channel
over ~4000 HU, where a lesion of +40 HU is a 1 % change. Radiologists read such slices through
display windows, and multi-window input is the usual way to feed CT to RGB detectors, so the
default adapter gives each channel one window, mapped linearly to ``[0, 1]`` and clamped:

* channel 0: soft tissue, W400 / L40 (-160..240 HU), where liver, kidney and most lesions live;
* channel 1: lung, W1500 / L-600 (-1350..150 HU);
* channel 2: the full stored range (-1024..3072 HU), so no pixel is ever saturated everywhere.

A 1-channel detector gets the soft-tissue window alone. Clamping saturates, so outside a window
that channel passes no gradient to the denoiser, as a display window shows nothing there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lidplug.data.transforms import HU_MAX, HU_MIN, LUNG_HU, SOFT_TISSUE_HU, HUWindow

__all__ = ["DEFAULT_WINDOWS_HU", "DetectorInput"]

FULL_RANGE_HU = (HU_MIN, HU_MAX)

#: Default windows per channel count of the detector.
DEFAULT_WINDOWS_HU: dict[int, tuple[tuple[float, float], ...]] = {
    1: (SOFT_TISSUE_HU,),
    3: (SOFT_TISSUE_HU, LUNG_HU, FULL_RANGE_HU),
}


class DetectorInput(nn.Module):
    """Map ``Tensor[B, 1, H, W]`` in the denoiser's units to ``Tensor[B, len(windows), H, W]``.

    Args:
        windows_hu: one ``(lo, hi)`` HU window per output channel; None picks
            :data:`DEFAULT_WINDOWS_HU` ``[channels]``.
        channels: output channel count, used when ``windows_hu`` is None.
        units: the normalisation the input is in (the denoiser's), inverted to get HU; None means
            the input is already in HU.
    """

    def __init__(self, windows_hu: Sequence[tuple[float, float]] | None = None, channels: int = 3,
                 units: HUWindow | None = None) -> None:
        super().__init__()
        if windows_hu is None:
            if channels not in DEFAULT_WINDOWS_HU:
                raise ValueError(f"DetectorInput: no default windows for {channels} channels "
                                 f"(have {sorted(DEFAULT_WINDOWS_HU)}); pass windows_hu")
            windows_hu = DEFAULT_WINDOWS_HU[channels]
        windows = [(float(lo), float(hi)) for lo, hi in windows_hu]
        if not windows or any(hi <= lo for lo, hi in windows):
            raise ValueError(f"DetectorInput: expected windows (lo, hi) with lo < hi, got {windows}")
        self.windows_hu = tuple(windows)
        # Fold units -> HU -> window into one affine map per channel: y_k = clamp(a_k x + b_k).
        u_scale, u_shift = (1.0, 0.0) if units is None else (units.hi - units.lo, units.lo)
        scale = [u_scale / (hi - lo) for lo, hi in windows]
        shift = [(u_shift - lo) / (hi - lo) for lo, hi in windows]
        self.register_buffer("scale", torch.tensor(scale).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("shift", torch.tensor(shift).view(1, -1, 1, 1), persistent=False)

    @property
    def channels(self) -> int:
        return len(self.windows_hu)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"DetectorInput: expected Tensor[B, 1, H, W], got {tuple(x.shape)}")
        scale = self.scale.to(x.dtype)
        shift = self.shift.to(x.dtype)
        return torch.clamp(x * scale + shift, 0.0, 1.0)

    def extra_repr(self) -> str:
        return f"windows_hu={self.windows_hu}"
