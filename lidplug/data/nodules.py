"""Real lung nodules for lesion insertion: LIDC-IDRI nodule crops with consensus masks.

Layout read (as published for LIDC-IDRI nodule volumes of interest)::

    ROOT/nodules.csv                       one row per nodule: patient_id, nodule_id, diameter_mm,
                                           Texture, Subtlety, Malignancy, ... (LIDC ratings)
    ROOT/image/<patient_id>_R_<nodule_id>.nii.gz        the crop around the nodule, HU
    ROOT/nodule_mask/<patient_id>_R_<nodule_id>.nii.gz  its consensus mask

Each nodule becomes one :class:`Nodule`: a 2-D **signal**, the nodule's HU relative to its local
background on the axial slice where its mask is largest, under that slice's mask and zero
outside it. The local background is the median HU of the crop's pixels outside the mask dilated
by two pixels that lie in lung (below -400 HU; all pixels outside it when fewer than
:data:`_MIN_BACKGROUND` do), so a nodule touching the pleura or a vessel keeps its own lung as
background. Inserting ``signal`` into another lung (:mod:`lidplug.data.insertion`) therefore
carries the nodule's own profile, margins and texture, with its contrast known exactly.
"""

from __future__ import annotations

import csv
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

__all__ = ["Nodule", "nodule_signal", "read_nodules"]

_LUNG_BELOW_HU = -400.0
_MIN_BACKGROUND = 20
_REQUIRED = ("patient_id", "nodule_id")


@dataclass
class Nodule:
    """One real nodule, ready to insert.

    Attributes:
        name: ``<patient_id>_R_<nodule_id>``.
        patient: the LIDC patient (splits are by patient).
        signal: ``Tensor[h, w]`` float32 HU above the local background, zero outside ``mask``.
        mask: ``Tensor[h, w]`` bool, the consensus mask on that slice, cut to its box.
        spacing: ``(row, col)`` mm of ``signal``.
        background_hu: the local background the signal is relative to.
        info: the row of ``nodules.csv`` (diameter_mm, Texture, Subtlety, ...).
    """

    name: str
    patient: str
    signal: Tensor
    mask: Tensor
    spacing: tuple[float, float]
    background_hu: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def contrast_hu(self) -> float:
        """Mean signal over the mask: the nodule's contrast against its own background."""
        return float(self.signal[self.mask].mean())

    @property
    def diameter_mm(self) -> float:
        """Equivalent diameter of the mask on its slice (mm)."""
        area = float(self.mask.sum()) * self.spacing[0] * self.spacing[1]
        return 2.0 * float(np.sqrt(area / np.pi))


def nodule_signal(hu: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The signal of a nodule on its largest axial slice (see the module docstring).

    Args:
        hu: ``[D, H, W]`` HU crop.
        mask: ``[D, H, W]`` bool mask of the same shape.

    Returns:
        ``(signal [h, w] float32, mask [h, w] bool, background_hu)``, cut to the mask's box.

    Raises:
        ValueError: shapes that differ or an empty mask.
    """
    if hu.shape != mask.shape:
        raise ValueError(f"expected a mask of the crop's shape {list(hu.shape)}, got "
                         f"{list(mask.shape)}")
    areas = mask.reshape(mask.shape[0], -1).sum(axis=1)
    if areas.max() == 0:
        raise ValueError("expected a non-empty nodule mask, got an empty one")
    k = int(areas.argmax())
    image, m = hu[k].astype(np.float64), mask[k].astype(bool)
    outside = ~ndimage.binary_dilation(m, iterations=2)
    lung = outside & (image < _LUNG_BELOW_HU)
    pool = image[lung] if lung.sum() >= _MIN_BACKGROUND else image[outside]
    background = float(np.median(pool)) if pool.size else float(np.median(image[~m]))
    signal = np.where(m, image - background, 0.0).astype(np.float32)
    rows, cols = np.nonzero(m)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    return signal[box], m[box], background


def read_nodules(root: str | os.PathLike, *, missing: str = "skip") -> list[Nodule]:
    """Read every nodule of a LIDC nodule-crop folder (see the module docstring).

    Args:
        root: the folder holding ``nodules.csv``, ``image/`` and ``nodule_mask/``.
        missing: ``"skip"`` rows whose crop or mask file is absent (one warning with the
            count) or ``"error"``.

    Returns:
        The nodules in ``nodules.csv`` order.

    Raises:
        FileNotFoundError: no ``nodules.csv``.
        ValueError: a missing column, a mask whose shape differs from its crop, a crop without
            voxel size (each names the file).
    """
    from lidplug.io.volume import read_label_volume, read_volume

    if missing not in ("skip", "error"):
        raise ValueError(f"missing: expected 'skip' or 'error', got {missing!r}")
    root = Path(root)
    table = root / "nodules.csv"
    if not table.is_file():
        raise FileNotFoundError(f"{root}: expected a nodule folder with nodules.csv")
    with table.open(newline="") as f:
        reader = csv.DictReader(f)
        absent_columns = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
        if absent_columns:
            raise ValueError(f"{table}: expected columns {list(_REQUIRED)}, missing "
                             f"{absent_columns}")
        rows = list(reader)
    nodules, absent = [], []
    for row in rows:
        name = f"{row['patient_id'].strip()}_R_{row['nodule_id'].strip()}"
        image, label = root / "image" / f"{name}.nii.gz", root / "nodule_mask" / f"{name}.nii.gz"
        if not (image.is_file() and label.is_file()):
            if missing == "error":
                raise FileNotFoundError(f"{table}: row {name} has no "
                                        f"{'crop ' + str(image) if not image.is_file() else ''}"
                                        f"{'mask ' + str(label) if not label.is_file() else ''}")
            absent.append(name)
            continue
        volume = read_volume(image)
        mask = read_label_volume(label, like=volume).data != 0
        try:
            signal, m, background = nodule_signal(volume.data.numpy(), mask.numpy())
        except ValueError as err:
            raise ValueError(f"{label}: {err}") from None
        nodules.append(Nodule(name=name, patient=row["patient_id"].strip(),
                              signal=torch.from_numpy(signal), mask=torch.from_numpy(m),
                              spacing=(volume.spacing[1], volume.spacing[2]),
                              background_hu=background, info=dict(row)))
    if absent:
        warnings.warn(f"{table}: skipping {len(absent)} nodule(s) without crop or mask file, "
                      f"e.g. {absent[0]}", stacklevel=2)
    return nodules
