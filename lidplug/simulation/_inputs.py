"""Input checks shared by the simulation modules: each error says what was expected and what came."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch

_MIN_SIZE = 8


def positive_int(name: str, value, minimum: int = 1, why: str = "") -> int:
    """``value`` as an int, checked to be ``>= minimum`` (``why`` explains the bound)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}{why}, got {value}")
    return int(value)


def positive_float(name: str, value, *, allow_inf: bool = False, allow_zero: bool = False) -> float:
    """``value`` as a float, checked to be ``> 0`` (or ``>= 0``) and finite (or ``inf``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf) or value < 0 or (
            value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        kind = "" if allow_inf else "finite "
        raise ValueError(f"{name}: expected a {kind}number {bound}, got {value}")
    return value


def batched(hu) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """Checks an HU image and views it as Tensor[B, H, W].

    Args:
        hu: Tensor[H, W], [1, H, W] or [B, 1, H, W], floating point, finite.

    Returns:
        The Tensor[B, H, W] view and a function that restores a result to the input's shape.
    """
    if not isinstance(hu, torch.Tensor):
        raise TypeError(f"hu: expected a torch.Tensor, got {type(hu).__name__}")
    if not hu.is_floating_point():
        raise TypeError(f"hu: expected a floating-point tensor (HU), got {hu.dtype}")
    shape = tuple(hu.shape)
    if hu.dim() == 2:
        image = hu[None]
    elif hu.dim() == 3 and shape[0] == 1:
        image = hu
    elif hu.dim() == 4 and shape[1] == 1:
        image = hu[:, 0]
    else:
        raise ValueError(f"hu: expected shape [H, W], [1, H, W] or [B, 1, H, W], got {list(shape)}")
    if min(image.shape[-2:]) < _MIN_SIZE or image.shape[0] == 0:
        raise ValueError(f"hu: expected H, W >= {_MIN_SIZE} and B >= 1, got {list(shape)}")
    if not bool(torch.isfinite(image).all()):
        raise ValueError("hu: expected finite values, got NaN or infinity")
    return image, lambda out: out.reshape(shape)


def per_image(name: str, value, batch: int, *, device: torch.device, dtype: torch.dtype,
              low: float, high: float, include_high: bool) -> torch.Tensor:
    """A scalar or one value per image, as Tensor[B], checked to lie in ``(low, high]``.

    ``include_high=False`` makes the interval ``(low, high)``.
    """
    if isinstance(value, torch.Tensor):
        tensor = value.detach().to(device=device, dtype=dtype).reshape(-1)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        tensor = torch.tensor([float(value)], device=device, dtype=dtype)
    elif isinstance(value, Sequence) and all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value):
        tensor = torch.tensor([float(v) for v in value], device=device, dtype=dtype)
    else:
        raise TypeError(f"{name}: expected a number or one number per image, "
                        f"got {type(value).__name__}")
    if tensor.numel() not in (1, batch):
        raise ValueError(f"{name}: expected 1 or {batch} values (one per image), "
                         f"got {tensor.numel()}")
    ok = torch.isfinite(tensor) & (tensor > low) & ((tensor <= high) if include_high
                                                    else (tensor < high))
    if not bool(ok.all()):
        interval = f"({low}, {high}{']' if include_high else ')'}"
        # The value as given: a float32 copy may have rounded it (1e-300 becomes 0.0).
        given = value.tolist() if isinstance(value, torch.Tensor) else value
        raise ValueError(f"{name}: expected values in {interval}, got {given!r}")
    return tensor.expand(batch).contiguous()
