"""The sample format every lidplug dataset yields, its batch collation, and seed derivation.

A sample is a dict::

    low     Tensor[1, H, W] float32   low-dose image, HU unless a transform normalised it
    normal  Tensor[1, H, W] float32   normal-dose image of the same slice, same units
    target  dict(boxes=Tensor[L, 4] float32 xyxy pixels, labels=Tensor[L] int64)   (L may be 0)
    meta    dict: id (str), spacing ((row_mm, col_mm) pixel spacing), dose (fraction of the normal
            dose that ``low`` carries), source (dataset kind), seed (int or None), plus extras

Labels: ``1`` means "lesion" (the default single class). With ``labels="coarse"`` datasets use
DeepLesion's coarse lesion types, label ``k`` = :data:`LESION_TYPES` ``[k - 1]``; a lesion of
unknown type gets :data:`UNKNOWN_LESION_LABEL`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lidplug.data.boxes import make_target

__all__ = [
    "LESION_TYPES",
    "UNKNOWN_LESION_LABEL",
    "collate",
    "derive_seed",
    "make_sample",
]

# DeepLesion's Coarse_lesion_type codes 1..8, in order.
LESION_TYPES: tuple[str, ...] = (
    "bone",
    "abdomen",
    "mediastinum",
    "liver",
    "lung",
    "kidney",
    "soft tissue",
    "pelvis",
)
UNKNOWN_LESION_LABEL: int = len(LESION_TYPES) + 1


def derive_seed(seed: int, *keys: int | str) -> int:
    """A reproducible 63-bit seed from a base seed and keys (index, stream, file name, ...).

    Unlike Python's ``hash`` (salted per process) the result is the same in every process and run,
    so sample ``i`` is identical across DataLoader workers and machines. Strings are hashed with
    SHA-256 into integers first.

    Args:
        seed: base seed, a non-negative int.
        *keys: further ints (>= 0) or strings that select the stream.

    Returns:
        An int in ``[0, 2**63)``, usable by ``torch.Generator.manual_seed`` and numpy.
    """
    entropy = [int(seed)]
    for key in keys:
        if isinstance(key, str):
            entropy.append(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))
        else:
            entropy.append(int(key))
    if min(entropy) < 0:
        raise ValueError(f"derive_seed: expected non-negative seed and keys, got {entropy}")
    lo, hi = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return (int(hi) << 31) ^ int(lo)


def _as_image(x: Tensor | np.ndarray, name: str) -> Tensor:
    t = torch.as_tensor(x, dtype=torch.float32)
    if t.dim() == 2:
        t = t.unsqueeze(0)
    if t.dim() != 3 or t.shape[0] != 1:
        raise ValueError(
            f"{name}: expected an image of shape [1, H, W] or [H, W], got {tuple(t.shape)}"
        )
    return t.contiguous()


def make_sample(
    low: Tensor | np.ndarray,
    normal: Tensor | np.ndarray,
    boxes: Tensor | np.ndarray | Sequence[Sequence[float]],
    labels: Tensor | np.ndarray | Sequence[int],
    meta: Mapping[str, Any],
    *,
    clip: bool = False,
) -> dict[str, Any]:
    """Assemble and validate one sample (see the module docstring for the format).

    Args:
        low: ``[1, H, W]`` or ``[H, W]`` low-dose image.
        normal: normal-dose image of the same shape.
        boxes: ``[L, 4]`` ``xyxy`` pixel boxes.
        labels: ``[L]`` labels >= 1.
        meta: metadata; must hold ``id``.
        clip: clip boxes crossing the image border (with a warning) instead of raising.

    Returns:
        The sample dict.
    """
    sample_id = str(meta.get("id", "?"))
    lo = _as_image(low, f"{sample_id}: low")
    no = _as_image(normal, f"{sample_id}: normal")
    if lo.shape != no.shape:
        raise ValueError(
            f"{sample_id}: expected low and normal of the same shape, got {tuple(lo.shape)} "
            f"and {tuple(no.shape)}"
        )
    target = make_target(boxes, labels, tuple(lo.shape[-2:]), clip=clip, name=sample_id)
    return {"low": lo, "normal": no, "target": target, "meta": dict(meta)}


def collate(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate samples into a detection-style batch (``DataLoader(..., collate_fn=collate)``).

    Args:
        batch: samples of one image size.

    Returns:
        ``dict(low=Tensor[B, 1, H, W], normal=Tensor[B, 1, H, W], target=list of B target dicts,
        meta=list of B meta dicts)``; targets stay a list because box counts differ per image.

    Raises:
        ValueError: on an empty batch or images of different sizes.
    """
    if len(batch) == 0:
        raise ValueError("collate: expected at least one sample, got an empty batch")
    shapes = {tuple(s["low"].shape) for s in batch}
    if len(shapes) != 1:
        raise ValueError(
            f"collate: expected images of one size per batch, got {sorted(shapes)}; "
            "resize or crop them in the dataset transform, or use batch_size=1"
        )
    return {
        "low": torch.stack([s["low"] for s in batch]),
        "normal": torch.stack([s["normal"] for s in batch]),
        "target": [s["target"] for s in batch],
        "meta": [s["meta"] for s in batch],
    }
