"""Read a DICOM file or series folder into a float32 HU tensor and its :class:`DicomMeta`."""

from __future__ import annotations

import math
import os
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from lidplug.io._frames import Frame, read_frames
from lidplug.io.meta import DicomMeta

__all__ = ["read_dicom"]

# Geometry that differs by less than this (mm, or direction cosine) is the same geometry;
# scanners write these values as decimal strings rounded to a few digits.
_GEOMETRY_TOL = 1e-3


def read_dicom(
    path: str | os.PathLike,
    *,
    allow_non_ct: bool = False,
    series_uid: str | None = None,
) -> tuple[torch.Tensor, DicomMeta]:
    """Read a DICOM file, or one series from a folder, in Hounsfield units.

    Slices are ordered by position along the slice normal (ImagePositionPatient projected on
    the cross product of the ImageOrientationPatient cosines, ascending); when some slice lacks
    that geometry, by InstanceNumber then frame number. Rescale slope/intercept are applied per
    frame (from the functional groups for enhanced multi-frame files). A folder read skips
    unreadable files (listed in ``meta.skipped``, with one warning) unless none is left.

    Args:
        path: A DICOM file (single- or multi-frame) or a folder holding one series (files
            directly inside it; hidden files and DICOMDIR are ignored).
        allow_non_ct: Read modalities other than CT (their values are then not HU).
        series_uid: SeriesInstanceUID to read from a folder that holds several series.

    Returns:
        ``(image, meta)``: ``image`` is float32 ``[N, H, W]`` (``N = 1`` for a single-frame
        file); use ``image.unsqueeze(1)`` for the ``[B, 1, H, W]`` model convention. ``meta``
        holds one entry per slice, in the order of ``image``.

    Raises:
        FileNotFoundError: ``path`` does not exist or the folder holds no file.
        OSError: A single file that is not DICOM, is truncated or corrupt, or has no decoder.
        ValueError: A single file without image, not CT, or without rescale; a series with
            mixed image sizes, spacings or orientations; several series and no ``series_uid``;
            a folder where no file could be read (the message lists each file and why).
    """
    path = Path(path)
    skipped: list[tuple[Path, str]] = []
    if path.is_dir():
        frames, skipped = _read_folder(path, allow_non_ct)
    elif path.is_file():
        frames = read_frames(path, allow_non_ct=allow_non_ct)
    else:
        raise FileNotFoundError(f"{path}: expected a DICOM file or a series folder, got nothing")
    frames = _select_series(frames, series_uid, path)
    _check_consistent(frames)
    frames, slice_positions = _order(frames)
    if skipped:
        listing = "; ".join(f"{p.name}: {reason}" for p, reason in skipped)
        warnings.warn(f"{path}: skipped {len(skipped)} unreadable file(s): {listing}",
                      stacklevel=2)
    image = torch.from_numpy(np.stack([f.hu for f in frames]))
    meta = DicomMeta(
        datasets=[f.dataset for f in frames],
        frames=[f.index for f in frames],
        paths=[f.path for f in frames],
        rescales=[f.rescale for f in frames],
        positions=[f.position for f in frames],
        slice_positions=slice_positions,
        orientation=_first(f.orientation for f in frames),
        pixel_spacing=_first(f.spacing for f in frames),
        slice_thickness=_first(f.thickness for f in frames),
        modality=str(frames[0].dataset.get("Modality") or ""),
        skipped=skipped,
    )
    return image, meta


def _read_folder(folder: Path, allow_non_ct: bool) -> tuple[list[Frame], list[tuple[Path, str]]]:
    # A DICOMDIR is a media index, never a slice: leaving it out keeps it off meta.skipped.
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.name.upper() != "DICOMDIR")
    if not files:
        raise FileNotFoundError(f"{folder}: expected DICOM files in the folder, got none")
    frames: list[Frame] = []
    skipped: list[tuple[Path, str]] = []
    for file in files:
        try:
            frames.extend(read_frames(file, allow_non_ct=allow_non_ct))
        except (OSError, ValueError) as err:
            # Messages start with the path already; keep only the reason.
            skipped.append((file, str(err).removeprefix(f"{file}: ")))
    if not frames:
        listing = "\n".join(f"  {p.name}: {reason}" for p, reason in skipped)
        raise ValueError(f"{folder}: expected at least one readable image, got none of "
                         f"{len(files)} file(s):\n{listing}")
    return frames, skipped


def _select_series(frames: list[Frame], series_uid: str | None, where: Path) -> list[Frame]:
    counts = Counter(str(f.dataset.get("SeriesInstanceUID") or "") for f in frames)
    if series_uid is not None:
        chosen = [f for f in frames if str(f.dataset.get("SeriesInstanceUID") or "") == series_uid]
        if not chosen:
            raise ValueError(f"{where}: expected series {series_uid!r}, got only "
                             f"{sorted(counts)}")
        return chosen
    if len(counts) > 1:
        listing = ", ".join(f"{uid!r} ({n} slices)" for uid, n in counts.most_common())
        raise ValueError(f"{where}: expected one series, got {len(counts)}: {listing}; "
                         "pass series_uid= to choose one")
    return frames


def _check_consistent(frames: list[Frame]) -> None:
    """One series must share image size, pixel spacing and orientation (else it is no volume)."""
    ref = frames[0]
    spacing_ref = next((f for f in frames if f.spacing is not None), ref)
    orient_ref = next((f for f in frames if f.orientation is not None), ref)
    for f in frames[1:]:
        if f.hu.shape != ref.hu.shape:
            raise ValueError(
                f"{f.path}: expected {ref.hu.shape[0]}x{ref.hu.shape[1]} pixels like "
                f"{ref.path.name}, got {f.hu.shape[0]}x{f.hu.shape[1]} (mixed sizes in one series)")
        for name, mine, theirs, other in (
            ("PixelSpacing", f.spacing, spacing_ref.spacing, spacing_ref),
            ("ImageOrientationPatient", f.orientation, orient_ref.orientation, orient_ref),
        ):
            if mine is not None and theirs is not None and not _close(mine, theirs):
                raise ValueError(f"{f.path}: expected {name} {list(theirs)} like "
                                 f"{other.path.name}, got {list(mine)} (mixed {name} in one series)")


def _order(frames: list[Frame]) -> tuple[list[Frame], list[float] | None]:
    orientation = _first(f.orientation for f in frames)
    if orientation is not None and all(f.position is not None for f in frames):
        normal = np.cross(orientation[:3], orientation[3:])
        keys = [float(np.dot(normal, f.position)) for f in frames]
        order = sorted(range(len(frames)), key=keys.__getitem__)  # stable: ties keep file order
        return [frames[i] for i in order], [keys[i] for i in order]
    # No full geometry: InstanceNumber, then frame number; unnumbered slices go last.
    def key(f: Frame) -> tuple[bool, int, int]:
        return f.instance is None, f.instance or 0, f.index

    return sorted(frames, key=key), None


def _first(values):
    return next((v for v in values if v is not None), None)


def _close(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(math.isclose(x, y, abs_tol=_GEOMETRY_TOL) for x, y in zip(a, b, strict=True))
