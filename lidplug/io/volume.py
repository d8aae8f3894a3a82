"""Read a CT volume (NIfTI or NRRD) and its label map into lidplug's axis order.

Two formats, two well-kept readers: nibabel (NiPy) for NIfTI-1/2 (``.nii``, ``.nii.gz``) and
pynrrd for NRRD (``.nrrd``, ``.nhdr``). Both are pure Python over numpy and expose the header as
it is written, which is what lets a volume *without* spacing be refused instead of silently
read at 1 mm (SimpleITK, the other candidate, fills in 1 mm and cannot tell the two apart).

Conventions of the result (:class:`Volume`):

* ``hu``: float32 ``[D, H, W]``: slices along the third voxel axis, rows along the second, columns
  along the first (NIfTI's ``i`` and NRRD's fastest axis are the columns), so a slice is shown
  as the source viewer shows it, up to a flip. A flip changes no lesion measurement; it only
  matters when two volumes must overlay, and image and label are read the same way.
* ``spacing``: ``(slice, row, column)`` mm, from the voxel-to-world matrix (the length of each
  axis' direction vector), so oblique volumes keep their true voxel size.

Label maps are read as integers (any non-zero voxel is lesion).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["VOLUME_SUFFIXES", "Volume", "read_label_volume", "read_volume"]

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr")
# Voxel sizes outside this range are not CT of a person: a header in metres, or a missing one.
_SPACING_RANGE_MM = (1e-3, 100.0)


@dataclass
class Volume:
    """A 3-D image with its voxel size.

    Attributes:
        data: ``Tensor[D, H, W]`` (float32 HU for images, int64 for label maps).
        spacing: ``(slice, row, column)`` voxel size in mm.
        path: the file it came from.
    """

    data: Tensor
    spacing: tuple[float, float, float]
    path: Path

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in VOLUME_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    raise ValueError(f"{path}: expected a volume file ending in one of {VOLUME_SUFFIXES}, "
                     f"got {path.name!r}")


def _checked_spacing(path: Path, sizes: list[float] | None, why: str) -> tuple[float, ...]:
    lo, hi = _SPACING_RANGE_MM
    if sizes is None or len(sizes) != 3 or not all(
            math.isfinite(s) and lo <= s <= hi for s in sizes):
        raise ValueError(f"{path}: expected a voxel size of three lengths in [{lo:g}, {hi:g}] mm "
                         f"in the header, got {why}")
    return tuple(float(s) for s in sizes)


def _read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    import nibabel

    try:
        image = nibabel.load(path)
        data = np.asanyarray(image.dataobj)
    except Exception as err:  # nibabel raises many types on damaged files
        raise OSError(f"{path}: cannot read as NIfTI ({err})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D volume, got shape {list(data.shape)}")
    # The header as written: nibabel's loader replaces a zero pixdim by 1 (with a log line
    # only), which would read a volume without voxel size as 1-mm voxels.
    from nibabel.openers import ImageOpener

    with ImageOpener(path) as f:
        raw = type(image.header).from_fileobj(f, check=False)
    space_unit = raw.get_xyzt_units()[0]
    scale = {"mm": 1.0, "meter": 1000.0, "micron": 1e-3, "unknown": 1.0}.get(space_unit, 1.0)
    # The voxel-to-world matrix gives each axis' true length (oblique volumes included); an
    # unknown space unit is read as mm, the convention of every CT converter.
    axes = np.linalg.norm(np.asarray(raw.get_best_affine())[:3, :3], axis=0) * scale
    return data, _checked_spacing(path, [float(a) for a in axes],
                                  f"axis lengths {[round(float(a), 6) for a in axes]}")


def _read_nrrd(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    import nrrd

    try:
        data, header = nrrd.read(str(path), index_order="F")
    except Exception as err:  # pynrrd raises NRRDError, ValueError, OSError...
        raise OSError(f"{path}: cannot read as NRRD ({err})") from None
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D volume, got shape {list(data.shape)}")
    if "space directions" in header:
        directions = np.asarray(header["space directions"], dtype=np.float64)
        if directions.shape != (3, 3) or not np.isfinite(directions).all():
            return data, _checked_spacing(path, None, f"space directions {directions.tolist()}")
        sizes = [float(v) for v in np.linalg.norm(directions, axis=1)]
        units = [str(u).lower() for u in header.get("space units", ["mm"] * 3)]
        if any(u not in ("mm", '"mm"') for u in units):
            return data, _checked_spacing(path, None, f"space units {units}")
        return data, _checked_spacing(path, sizes, f"space directions of lengths {sizes}")
    if "spacings" in header:
        sizes = [float(v) for v in header["spacings"]]
        return data, _checked_spacing(path, sizes, f"spacings {sizes}")
    return data, _checked_spacing(path, None, "neither 'space directions' nor 'spacings'")


def _read(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float, float], Path]:
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected a volume file, got nothing there")
    data, (sx, sy, sz) = (_read_nifti if suffix.startswith(".nii") else _read_nrrd)(path)
    # File axes (column, row, slice) -> lidplug's [slice, row, column].
    return np.ascontiguousarray(np.transpose(data, (2, 1, 0))), (sz, sy, sx), path


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a CT volume in HU as float32 ``[D, H, W]`` with its ``(slice, row, col)`` spacing.

    Args:
        path: a ``.nii``, ``.nii.gz``, ``.nrrd`` or ``.nhdr`` file holding HU (CT converters
            write HU, with the NIfTI scale slope applied by nibabel).

    Raises:
        FileNotFoundError: no such file.
        OSError: the file cannot be parsed.
        ValueError: not 3-D, non-finite values, or no usable voxel size in the header (the
            message names the file and what the header held).
    """
    data, spacing, path = _read(path)
    hu = torch.from_numpy(data.astype(np.float32))
    if not bool(torch.isfinite(hu).all()):
        raise ValueError(f"{path}: expected finite HU values, got NaN or inf")
    return Volume(hu, spacing, path)


def read_label_volume(path: str | os.PathLike, like: Volume | None = None) -> Volume:
    """Read a label map (0 background, non-zero lesion) as int64 ``[D, H, W]``.

    Args:
        path: the label file (same formats as :func:`read_volume`).
        like: the image it labels: its shape must match exactly and its spacing within 1%.

    Raises:
        ValueError: a non-integer label map, or one that does not fit ``like`` (the message
            names the label file and both shapes or spacings).
    """
    data, spacing, path = _read(path)
    if data.dtype.kind == "f":
        if not np.isfinite(data).all() or not np.array_equal(data, np.round(data)):
            raise ValueError(f"{path}: expected integer labels, got fractional or non-finite "
                             "values")
    elif data.dtype.kind not in "iub":
        raise ValueError(f"{path}: expected an integer label map, got dtype {data.dtype}")
    labels = torch.from_numpy(data.astype(np.int64))
    if like is not None:
        if tuple(labels.shape) != like.shape:
            raise ValueError(f"{path}: expected a label map of the image's shape {list(like.shape)}"
                             f" ({like.path.name}), got {list(labels.shape)}")
        if not all(math.isclose(a, b, rel_tol=0.01) for a, b in zip(spacing, like.spacing,
                                                                   strict=True)):
            raise ValueError(f"{path}: expected the image's voxel size {like.spacing} mm "
                             f"({like.path.name}), got {spacing}")
    return Volume(labels, spacing, path)
