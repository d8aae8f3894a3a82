"""Checks shared by the reference denoisers (constructor arguments and the forward input)."""

from __future__ import annotations

from torch import Tensor


def check_positive_int(owner: str, name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum``; raise otherwise (constructor arguments)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: expected {name} to be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{owner}: expected {name} >= {minimum}, got {value}")
    return value


def check_image_batch(x: Tensor, owner: str, min_size: int) -> None:
    """Check a denoiser input is ``[B, 1, H, W]`` with ``H, W >= min_size``.

    Plain function so TorchScript compiles it along with each model's ``forward``.
    """
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"{owner}: expected input of shape [B, 1, H, W], got {list(x.shape)}")
    if x.shape[2] < min_size or x.shape[3] < min_size:
        raise ValueError(
            f"{owner}: expected H, W >= {min_size}, got H={x.shape[2]}, W={x.shape[3]}"
        )
