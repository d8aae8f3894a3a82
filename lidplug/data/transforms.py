"""HU window normalisation (and its exact inverse) plus a sample-dict wrapper for transforms.

Datasets in :mod:`lidplug.data` return images in Hounsfield units (HU), as the io and simulation
stages do; models see a normalised window. The window constants are defined here, once:

* :data:`HU_MIN` = -1024: air as stored by CT scanners (12-bit data with a -1024 rescale intercept).
* :data:`HU_MAX` = 3072: the top of that 12-bit range (-1024 + 4096), above cortical bone.

:class:`HUWindow` maps ``[HU_MIN, HU_MAX]`` linearly to ``[0, 1]``. It does not clamp by default, so
``inverse(forward(x)) == x`` for every input (metal and air below -1024 survive the round trip). It
is an ``nn.Module`` so a deployed TorchScript denoiser can carry its own window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["HU_MAX", "HU_MIN", "LUNG_HU", "SOFT_TISSUE_HU", "HUWindow", "MapImages"]

HU_MIN: float = -1024.0
HU_MAX: float = 3072.0
# Display windows (lo, hi) in HU, used by the detector input, the metrics and the report.
SOFT_TISSUE_HU: tuple[float, float] = (-160.0, 240.0)  # abdomen W400 / L40
LUNG_HU: tuple[float, float] = (-1350.0, 150.0)  # W1500 / L-600


class HUWindow(nn.Module):
    """Linear map from a HU window ``[lo, hi]`` to ``[0, 1]``; ``inverse`` maps back.

    Args:
        lo: HU value mapped to 0. Defaults to :data:`HU_MIN`.
        hi: HU value mapped to 1. Defaults to :data:`HU_MAX`.
        clamp: clamp the output to ``[0, 1]`` (a display window); this makes ``inverse`` exact only
            inside the window. As a denoiser's window it clips: every HU outside ``[lo, hi]``
            comes back at its ends (``lidplug.export`` warns), so a model that returns its input
            unchanged moves air from -1000 HU to ``lo``. Keep the default for denoisers.

    Shape:
        any tensor shape, e.g. ``[B, 1, H, W]`` or ``[1, H, W]``; the output has the input's shape.
    """

    def __init__(self, lo: float = HU_MIN, hi: float = HU_MAX, *, clamp: bool = False) -> None:
        super().__init__()
        if not hi > lo:
            raise ValueError(f"HUWindow: expected lo < hi, got lo={lo}, hi={hi}")
        self.lo = float(lo)
        self.hi = float(hi)
        self.clamp = bool(clamp)

    def forward(self, hu: Tensor) -> Tensor:
        """HU -> normalised window value (0 at ``lo``, 1 at ``hi``)."""
        out = (hu - self.lo) / (self.hi - self.lo)
        return out.clamp(0.0, 1.0) if self.clamp else out

    @torch.jit.export
    def inverse(self, x: Tensor) -> Tensor:
        """Normalised window value -> HU (the exact inverse of :meth:`forward` when not clamped)."""
        return x * (self.hi - self.lo) + self.lo

    def extra_repr(self) -> str:
        return f"lo={self.lo}, hi={self.hi}, clamp={self.clamp}"


class MapImages:
    """Apply an image transform to the image entries of a sample dict, leaving the rest alone.

    Use it as a dataset ``transform``: ``PhantomDataset(..., transform=MapImages(HUWindow()))``.
    Boxes are untouched, so ``fn`` must not change the image geometry; meta gains
    ``meta["transform"] = repr(fn)`` so a normalised sample says what was done to it.

    Args:
        fn: callable on a ``[1, H, W]`` tensor returning a ``[1, H, W]`` tensor.
        keys: the sample keys to transform.
    """

    def __init__(
        self, fn: Callable[[Tensor], Tensor], keys: Sequence[str] = ("low", "normal")
    ) -> None:
        self.fn = fn
        self.keys = tuple(keys)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        for key in self.keys:
            image = out[key]
            new = self.fn(image)
            if new.shape != image.shape:
                raise ValueError(
                    f"MapImages: expected {key!r} to keep shape {tuple(image.shape)}, got "
                    f"{tuple(new.shape)} (boxes would no longer match)"
                )
            out[key] = new
        out["meta"] = {**out.get("meta", {}), "transform": repr(self.fn)}
        return out

    def __repr__(self) -> str:
        return f"MapImages({self.fn!r}, keys={self.keys})"
