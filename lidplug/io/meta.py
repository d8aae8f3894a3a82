"""Metadata that travels with an image read from DICOM: what writing a derived series needs."""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

__all__ = ["DicomMeta"]


@dataclass
class DicomMeta:
    """Per-slice provenance and geometry of an image read by :func:`lidplug.io.read_dicom`.

    Every list holds one entry per slice of the image tensor ``[N, H, W]``, in the same order.
    Lengths are in millimetres, in the patient coordinate system of DICOM (LPS).

    Attributes:
        datasets: Source header of each slice, pixel data dropped to save memory. The frames
            of one multi-frame file share one ``Dataset`` object; ``file_meta`` is kept so the
            writer knows the source transfer syntax (and so whether it was lossy).
        frames: 0-based frame index of each slice inside its source dataset (0 for single-frame).
        paths: Source file of each slice.
        rescales: ``(slope, intercept)`` applied to each slice to get Hounsfield units.
        positions: ImagePositionPatient of each slice (``None`` where unknown).
        slice_positions: Position of each slice along the slice normal (ImagePositionPatient
            projected on the cross product of the two ImageOrientationPatient cosines),
            ascending; ``None`` when some slice lacked geometry and InstanceNumber ordered them.
        orientation: ImageOrientationPatient (row cosines then column cosines), or ``None``.
        pixel_spacing: PixelSpacing as ``(row spacing, column spacing)``, i.e. (dy, dx).
        slice_thickness: SliceThickness, or ``None``.
        modality: Modality of the source (``"CT"`` unless read with ``allow_non_ct=True``).
        skipped: ``(path, reason)`` for each file of a folder that could not be read.
    """

    datasets: list[Dataset]
    frames: list[int]
    paths: list[Path]
    rescales: list[tuple[float, float]]
    positions: list[tuple[float, float, float] | None]
    slice_positions: list[float] | None = None
    orientation: tuple[float, ...] | None = None
    pixel_spacing: tuple[float, float] | None = None
    slice_thickness: float | None = None
    modality: str = "CT"
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.datasets)

    @property
    def slice_spacing(self) -> float | None:
        """Median distance between neighbouring slice centres (mm), or ``None`` if unknown.

        The median, not the mean, so that one missing slice does not skew the spacing.
        """
        pos = self.slice_positions
        if pos is None or len(pos) < 2:
            return None
        return statistics.median(b - a for a, b in itertools.pairwise(pos))
