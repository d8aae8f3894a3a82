"""What :func:`lidplug.deploy.export` is given, normalised: the denoiser, its window, its inputs.

A wrapped model (``lidplug.wrap``) is recognised by duck typing, not by class, so this stage does
not depend on the training stage: anything with an ``nn.Module`` attribute ``denoiser`` is a
wrapper, and its ``window`` / ``config`` attributes are used when present.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lidplug.data.transforms import HUWindow

__all__ = ["DEFAULT_EXAMPLE_SHAPE", "DTYPES", "check_example", "hu_like_slices", "resolve_dtype",
           "resolve_model", "resolve_window", "verify_shapes"]

DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}

# Default example: small enough to trace and verify in well under a second on a CPU, divisible by
# 16 so that U-Nets with four 2x poolings accept it.
DEFAULT_EXAMPLE_SHAPE = (2, 1, 64, 64)

# Tissue classes of the random slices: (HU, blobs per slice, radius range as a fraction of the body).
_TISSUES = ((-100.0, 2, (0.08, 0.25)),   # fat
            (-800.0, 1, (0.10, 0.30)),   # lung-like air spaces
            (60.0, 3, (0.03, 0.10)),     # lesion-like, just above soft tissue
            (1000.0, 2, (0.04, 0.12)))   # bone
_BLOBS = sum(n for _, n, _ in _TISSUES)


def resolve_model(model: Any) -> tuple[nn.Module, Any, Any]:
    """(denoiser, window or None, config or None) of a wrapped model or a bare denoiser."""
    inner = getattr(model, "denoiser", None)
    if isinstance(inner, nn.Module):
        return inner, getattr(model, "window", None), getattr(model, "config", None)
    if isinstance(model, nn.Module):
        return model, None, None
    raise TypeError(f"lidplug.export: expected an nn.Module (a denoiser, or a wrapped model with a "
                    f"'denoiser' attribute), got {type(model).__name__}")


def resolve_window(window: Any) -> HUWindow:
    """A :class:`HUWindow` from a HUWindow, a ``(lo, hi)`` pair, or None (the standard window)."""
    if window is None:
        return HUWindow()
    if isinstance(window, HUWindow):
        return HUWindow(window.lo, window.hi, clamp=window.clamp)
    if isinstance(window, Sequence) and len(window) == 2:
        return HUWindow(float(window[0]), float(window[1]))
    raise TypeError(f"lidplug.export: expected window to be a HUWindow, a (lo, hi) pair or None, "
                    f"got {window!r}")


def resolve_dtype(dtype: Any) -> torch.dtype:
    if isinstance(dtype, str):
        dtype = {name: d for d, name in DTYPES.items()}.get(dtype, dtype)
    if dtype not in DTYPES:
        raise ValueError(f"lidplug.export: expected dtype one of {sorted(DTYPES.values())}, got "
                         f"{dtype!r}")
    return dtype


def check_example(example: Tensor) -> Tensor:
    if not isinstance(example, Tensor):
        raise TypeError(f"lidplug.export: expected example_input to be a Tensor[B, C, H, W], got "
                        f"{type(example).__name__}")
    if example.dim() != 4 or not example.is_floating_point():
        raise ValueError(f"lidplug.export: expected example_input to be a floating-point "
                         f"Tensor[B, C, H, W], got {example.dtype} of shape {tuple(example.shape)}")
    return example.detach().to("cpu", torch.float32)


def hu_like_slices(shape: Sequence[int], *, generator: torch.Generator | None = None) -> Tensor:
    """Random CT-like slices in Hounsfield units, for tracing and verification.

    Each slice is air (-1000 HU) around an elliptical body of soft tissue (40 HU) holding random
    disks of fat, lung-like air, lesion-like tissue and bone, plus Gaussian noise (sigma 20 HU, as
    in a low-dose scan): the value range and edges a CT denoiser sees, not an anatomy.

    Args:
        shape: (B, C, H, W).
        generator: random source (for reproducible inputs).

    Returns:
        Tensor[B, C, H, W], float32, HU.
    """
    b, c, h, w = shape
    ys = torch.linspace(-1.0, 1.0, h).view(h, 1)
    xs = torch.linspace(-1.0, 1.0, w).view(1, w)
    out = torch.empty(b, c, h, w)
    for i in range(b):
        u = torch.rand(2 + 3 * _BLOBS, generator=generator).tolist()
        ax, ay = 0.65 + 0.3 * u.pop(), 0.55 + 0.3 * u.pop()
        img = torch.where((xs / ax) ** 2 + (ys / ay) ** 2 <= 1.0, 40.0, -1000.0)
        for hu, count, (rmin, rmax) in _TISSUES:
            for _ in range(count):
                angle, dist = 2 * math.pi * u.pop(), 0.7 * u.pop()
                cx, cy = ax * dist * math.cos(angle), ay * dist * math.sin(angle)
                r = min(ax, ay) * (rmin + (rmax - rmin) * u.pop())
                img = torch.where((xs - cx) ** 2 + (ys - cy) ** 2 <= r * r, hu, img)
        out[i] = img + 20.0 * torch.randn(c, h, w, generator=generator)
    return out


def verify_shapes(example_shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Input shapes to compare eager and exported outputs on, besides the example's own.

    A different batch size and a different image size catch what tracing fixes at the example's
    shape (a Python branch on ``x.shape``, a view to a literal size). The image grows by multiples
    of 16 so models that need divisible sizes still accept it; the caller skips a shape that the
    eager model itself rejects.
    """
    b, c, h, w = example_shape
    return [(b, c, h, w), (1, c, h, w), (2 if b == 1 else 1, c, h + 32, w + 16)]
