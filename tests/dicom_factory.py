"""Synthetic CT DICOM datasets shared by the data and io test fixtures.

A plain module (``tests/`` is on ``sys.path`` under pytest), so every conftest can import it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset

STUDY_UID = "1.2.826.0.1.3680043.8.498.1001"
SERIES_UID = "1.2.826.0.1.3680043.8.498.1002"
FRAME_UID = "1.2.826.0.1.3680043.8.498.1003"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def ct_dataset(
    stored: np.ndarray,
    *,
    z: float = 0.0,
    origin: tuple[float, float] = (-10.0, -20.0),
    orientation: tuple[float, ...] | None = AXIAL,
    spacing: tuple[float, float] = (0.5, 0.5),
    slope: float | None = 1.0,
    intercept: float | None = -1024.0,
    instance: int | None = None,
    study_uid: str = STUDY_UID,
    series_uid: str = SERIES_UID,
    frame_uid: str | None = FRAME_UID,
    modality: str = "CT",
    photometric: str = "MONOCHROME2",
    patient: tuple[str, str, str | None] = ("Test^Patient", "LID001", "19700101"),
    description: str | None = "Chest 1mm",
) -> Dataset:
    """A minimal CT Image dataset around ``stored`` ([H, W] or [F, H, W], int16 or uint16).

    ``None`` leaves the matching attribute out: ``orientation`` (with the position
    ``[*origin, z]``), ``slope``, ``intercept``, ``instance``, ``frame_uid``,
    ``description`` and the birth date (third item of ``patient``: name, ID, birth date).
    """
    stored = np.ascontiguousarray(stored)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = uid.CTImageStorage, uid.generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    name, patient_id, birth_date = patient
    ds.PatientName, ds.PatientID = name, patient_id
    if birth_date is not None:
        ds.PatientBirthDate = birth_date
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    if frame_uid is not None:
        ds.FrameOfReferenceUID = frame_uid
    ds.Modality, ds.ImageType = modality, ["ORIGINAL", "PRIMARY", "AXIAL"]
    if description is not None:
        ds.SeriesDescription = description
    if instance is not None:
        ds.InstanceNumber = instance
    if orientation is not None:
        ds.ImageOrientationPatient = list(orientation)
        ds.ImagePositionPatient = [*origin, z]
    ds.PixelSpacing, ds.SliceThickness = list(spacing), 1.0
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.Rows, ds.Columns = stored.shape[-2:]
    if stored.ndim == 3:
        ds.NumberOfFrames = stored.shape[0]
    bits = stored.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = int(stored.dtype.kind == "i")
    ds.PixelData = stored.astype(stored.dtype.newbyteorder("<")).tobytes()
    return ds


def enhanced_ct_dataset(stored, slopes, intercepts, *, z0: float = 30.0) -> Dataset:
    """An Enhanced CT object: geometry and rescale only in functional groups; z = z0 - 10 * i.

    Frames are stored in *descending* z, so a reader ordering by position reverses them.
    """
    ds = ct_dataset(stored, slope=None, intercept=None)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = uid.EnhancedCTImageStorage
    del ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing, ds.SliceThickness
    shared = Dataset()
    shared.PlaneOrientationSequence = [Dataset()]
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PixelMeasuresSequence = [Dataset()]
    shared.PixelMeasuresSequence[0].PixelSpacing = [0.8, 0.7]
    shared.PixelMeasuresSequence[0].SliceThickness = 2.0
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for i, (slope, intercept) in enumerate(zip(slopes, intercepts, strict=True)):
        item = Dataset()
        item.PlanePositionSequence = [Dataset()]
        item.PlanePositionSequence[0].ImagePositionPatient = [0, 0, z0 - 10 * i]  # descending
        item.PixelValueTransformationSequence = [Dataset()]
        item.PixelValueTransformationSequence[0].RescaleSlope = slope
        item.PixelValueTransformationSequence[0].RescaleIntercept = intercept
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    return ds


def save_dataset(ds: Dataset, path: Path) -> Path:
    """Write ``ds`` as a DICOM file at ``path`` (parent folders created); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def corrupt_vr(path: Path, group: int, element: int) -> Path:
    """Replace the explicit VR of element ``(group, element)`` in ``path`` by the unknown 'QQ'.

    pydicom cannot write such a file; it parses it (values are decoded lazily) and raises
    ``NotImplementedError`` only when the value is read.
    """
    raw = path.read_bytes()
    tag = group.to_bytes(2, "little") + element.to_bytes(2, "little")
    at = raw.index(tag, 132)  # past the preamble and "DICM"
    path.write_bytes(raw[: at + 4] + b"QQ" + raw[at + 6 :])
    return path


CT_SMALL = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"


def ct_small_series(folder: Path, slices: int) -> Path:
    """A series of copies of pydicom's shipped CT_small.dcm (128x128 CT) at z = 0, 2, 4, ... mm,
    with fresh UIDs, in ``folder`` (created)."""
    folder.mkdir(parents=True)
    for k in range(slices):
        ds = pydicom.dcmread(CT_SMALL)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid.generate_uid()
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * k]
        ds.InstanceNumber = k + 1
        ds.save_as(folder / f"{k}.dcm")
    return folder


def fill_disk_on_file(monkeypatch, n: int) -> None:
    """Make the ``n``-th DICOM file written fail as a full disk does: half a file, then ENOSPC."""
    import errno
    import os

    save_as, calls = Dataset.save_as, []

    def disk_fills(self, fh, **kwargs):
        calls.append(1)
        if len(calls) == n:
            fh.write(b"DICM part of a file")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return save_as(self, fh, **kwargs)

    monkeypatch.setattr(Dataset, "save_as", disk_fills)
