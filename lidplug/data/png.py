"""16-bit PNG slices in HU, as DeepLesion stores them (``stored = HU + 32768`` as uint16).

Pillow reads and writes the 16-bit grey-scale PNGs; only the HU offset, the checks and the atomic
write are ours.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

__all__ = ["PNG_HU_OFFSET", "read_png_hu", "write_png_hu"]

PNG_HU_OFFSET = 32768


def read_png_hu(path: str | os.PathLike) -> Tensor:
    """Read a DeepLesion 16-bit PNG slice as float32 HU ``[1, H, W]``.

    Raises:
        OSError: unreadable or not an image.
        ValueError: not a 16-bit grey-scale PNG.
    """
    with Image.open(path) as img:
        if img.mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise ValueError(f"{path}: expected a 16-bit grey-scale PNG, got mode {img.mode!r}")
        arr = np.asarray(img, dtype=np.int32)
    return torch.from_numpy((arr - PNG_HU_OFFSET).astype(np.float32)).unsqueeze(0)


def write_png_hu(
    hu: Tensor | np.ndarray, path: str | os.PathLike, *, overwrite: bool = False
) -> Path:
    """Write HU ``[H, W]`` or ``[1, H, W]`` as a DeepLesion 16-bit PNG (rounded, clipped to uint16).

    The file is written to a temporary name then renamed, so it is never half-written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: wrong shape or non-finite values.
    """
    path = Path(path)
    arr = np.asarray(hu.detach().cpu() if isinstance(hu, Tensor) else hu, dtype=np.float64)
    arr = arr[0] if arr.ndim == 3 and arr.shape[0] == 1 else arr
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected HU of shape [H, W] or [1, H, W], got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: expected finite HU values, got NaN or inf")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: expected no existing file (use overwrite to replace it)")
    stored = np.clip(np.rint(arr + PNG_HU_OFFSET), 0, 65535).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        Image.fromarray(stored).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
