"""Write an HU tensor as a derived DICOM series: one CT Image Storage file per slice.

Each file starts from a fresh dataset and copies a whitelist of patient, study, frame of
reference, equipment and acquisition attributes from its source slice. Copying the whole
source header would also carry attributes that no longer hold for a derived image (functional
groups, overlays, icons, LUTs, private tags about the original reconstruction).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import re
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.valuerep import DSfloat

from lidplug.io.meta import DicomMeta

__all__ = ["write_dicom"]

_COPIED = (
    "SpecificCharacterSet",  # first: the names below are encoded with it
    # Patient
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientSize", "PatientWeight", "PatientIdentityRemoved",
    "DeidentificationMethod", "DeidentificationMethodCodeSequence",
    # General study
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
    "AccessionNumber", "StudyDescription",
    # Series attributes that still describe the derived series
    "BodyPartExamined", "PatientPosition", "ProtocolName",
    # Frame of reference: the derived slices lie where their sources lay
    "FrameOfReferenceUID", "PositionReferenceIndicator",
    # General equipment
    "Manufacturer", "InstitutionName", "StationName", "ManufacturerModelName",
    "DeviceSerialNumber", "SoftwareVersions",
    # Acquisition (CT image module)
    "AcquisitionNumber", "AcquisitionDate", "AcquisitionTime", "KVP", "XRayTubeCurrent",
    "ExposureTime", "Exposure", "ConvolutionKernel", "ReconstructionDiameter",
    "GantryDetectorTilt",
    # The display window is in HU, so it still applies after denoising
    "WindowCenter", "WindowWidth",
    # Lossy history: once lossy, always lossy (PS3.3 C.7.6.1.1.5)
    "LossyImageCompression", "LossyImageCompressionRatio", "LossyImageCompressionMethod",
)
# Type 2 attributes of the CT Image Storage IOD: present, possibly empty.
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
          "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "SeriesNumber",
          "Manufacturer", "PositionReferenceIndicator", "KVP", "AcquisitionNumber")
# LossyImageCompressionMethod of each syntax that can hold lossy data.
_LOSSY_METHODS = {
    uid.JPEGBaseline8Bit: "ISO_10918_1", uid.JPEGExtended12Bit: "ISO_10918_1",
    uid.JPEG2000: "ISO_15444_1", uid.JPEGLSNearLossless: "ISO_14495_1",
    uid.HTJ2K: "ISO_15444_15",
}
# Syntaxes whose data are lossy by definition. JPEG 2000 (.91) and HTJ2K (.203) also carry
# reversible (lossless) codestreams, so for them only the source's LossyImageCompression tells.
_LOSSY_SYNTAXES = (uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEGLSNearLossless)
_LO_MAX = 64  # characters of a LO value (SeriesDescription)
_AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
_UINT16_MAX = 65535
_AIR_INTERCEPT = -1024.0  # conventional CT intercept: uint16 0 is just below air
_SLICE_NAME = re.compile(r"[0-9]{4,}\.dcm")  # 0001.dcm, 0002.dcm, ...: what write_dicom writes


def write_dicom(
    image: torch.Tensor | np.ndarray,
    meta: DicomMeta,
    out: str | os.PathLike,
    *,
    description: str = "lidplug denoised",
    overwrite: bool = False,
) -> list[Path]:
    """Write ``image`` as a new derived CT series beside (never over) its source.

    Patient and study identity are kept; the series gets a new SeriesInstanceUID and each
    slice a new SOPInstanceUID, ImageType ``DERIVED\\SECONDARY``, a DerivationDescription and
    a SourceImageSequence entry pointing at its source slice (and frame). ImagePositionPatient
    and ImageOrientationPatient (type 1) are always written: a slice whose source lacked them
    gets computed ones (axial; positions stepped along the slice normal from the first known
    one). Pixels are stored as
    uint16, uncompressed Explicit VR Little Endian, MONOCHROME2, with one rescale for the whole
    series: slope 1 and intercept ``min(-1024, floor(min HU))``, so values round-trip within
    0.5 HU. A series whose HU span more than 65535 HU cannot be stored that precisely and is
    refused: a coarser slope would write HU that differ from the computed ones by more than
    the stored precision (slope / 2), silently.
    Each file is written to a temporary file then renamed, so none is ever half-written (a
    failure part-way through a series keeps the files written before it).

    Args:
        image: HU values ``[N, H, W]`` or ``[N, 1, H, W]``, in the slice order of ``meta``.
        meta: The metadata returned by :func:`lidplug.io.read_dicom` for the source.
        out: Output folder (created if missing); files are named ``0001.dcm``, ``0002.dcm``...
        description: Appended to SeriesDescription (the source's part is cut to keep it
            within 64 characters) and used as DerivationDescription.
        overwrite: Replace existing files in ``out``: the slices of a series written there
            before (``NNNN.dcm``) are all removed first. Source files are never replaced.

    Returns:
        The written paths, one per slice.

    Raises:
        ValueError: Shape not matching ``meta``, non-finite values, HU spanning more than
            65535 HU, a ``description`` longer than 64 characters, a non-CT source, or a
            source slice without SOPInstanceUID.
        FileExistsError: A target exists (and ``overwrite`` is false) or is a source file.
        OSError: A file cannot be written (e.g. the disk is full); the message names the slice
            and how many files were written before it (they stay, complete).
    """
    hu = _as_hu(image, meta)
    if len(description) > _LO_MAX:
        raise ValueError(f"description: expected at most {_LO_MAX} characters (it ends the "
                         f"SeriesDescription), got {len(description)}")
    if meta.modality != "CT":
        raise ValueError(f"expected a CT source (write_dicom writes CT Image Storage), "
                         f"got Modality {meta.modality!r}")
    out = Path(out)
    width = max(4, len(str(len(meta))))
    targets = [out / f"{i + 1:0{width}d}.dcm" for i in range(len(meta))]
    _check_targets(targets, meta, overwrite)
    slope, intercept = _choose_rescale(hu)  # may refuse: before anything is removed
    if overwrite:
        _remove_series_files(out, meta)
    stored = np.clip(np.rint((hu - intercept) / slope), 0, _UINT16_MAX).astype("<u2")
    series_uid = uid.generate_uid()
    now = datetime.now()
    orientation = meta.orientation or _AXIAL
    positions = _positions(meta, orientation)
    out.mkdir(parents=True, exist_ok=True)
    for i, target in enumerate(targets):
        ds = _derived_header(meta, i, series_uid, description, now)
        ds.ImageOrientationPatient = [DSfloat(v, auto_format=True) for v in orientation]
        ds.ImagePositionPatient = [DSfloat(v, auto_format=True) for v in positions[i]]
        ds.RescaleSlope, ds.RescaleIntercept = DSfloat(slope, auto_format=True), intercept
        _set_pixels(ds, stored[i])
        try:
            _write_atomic(ds, target)
        except OSError as err:  # e.g. ENOSPC: say how far the series got
            raise OSError(err.errno, f"{target}: cannot write slice {i + 1} of {len(targets)} "
                                     f"({err.strerror or err}); the {i} file(s) written before "
                                     f"it are complete") from err
    return targets


def _as_hu(image: torch.Tensor | np.ndarray, meta: DicomMeta) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        arr = image.detach().to("cpu", torch.float64).numpy()
    else:
        arr = np.asarray(image, dtype=np.float64)
    shape = list(arr.shape)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    src = meta.datasets[0]
    expected = (len(meta), int(src.Rows), int(src.Columns))
    if arr.shape != expected:
        raise ValueError(f"expected image of shape [N, H, W] = {list(expected)} (or [N, 1, H, W]) "
                         f"to match meta, got {shape}")
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=(1, 2)))
    if bad.size:
        raise ValueError(f"expected finite HU values, got NaN or inf in slice(s) {bad.tolist()}")
    return arr


def _check_targets(targets: list[Path], meta: DicomMeta, overwrite: bool) -> None:
    # Checked for every file before writing any, so a refusal leaves the folder untouched.
    sources = {p.resolve() for p in meta.paths}
    for target in targets:
        if target.resolve() in sources:
            raise FileExistsError(f"{target}: refusing to replace a source file of this series "
                                  "(even with overwrite=True); write to another folder")
        if target.is_dir() or (target.exists() and not overwrite):
            raise FileExistsError(f"{target}: expected no existing file, got one "
                                  "(pass overwrite=True to replace it)")


def _remove_series_files(out: Path, meta: DicomMeta) -> None:
    """Remove the slices a write before left in ``out`` (files named as this writer names
    them), so a shorter series written over a longer one leaves no slice of the old one, and a
    write that fails part-way leaves only slices of the new series. Other files stay."""
    if not out.is_dir():
        return
    sources = {p.resolve() for p in meta.paths}
    for path in out.iterdir():
        if (_SLICE_NAME.fullmatch(path.name) and path.is_file()
                and path.resolve() not in sources):
            path.unlink()


def _choose_rescale(hu: np.ndarray) -> tuple[float, float]:
    """Slope 1 and the intercept that fits ``hu`` in uint16 (see :func:`write_dicom`)."""
    intercept = min(_AIR_INTERCEPT, float(math.floor(hu.min())))
    if float(hu.max()) - intercept > _UINT16_MAX:
        raise ValueError(f"expected HU spanning at most {_UINT16_MAX} HU (what a 16-bit series "
                         f"stores to 0.5 HU), got {float(hu.min()):g} to {float(hu.max()):g}; "
                         "nothing was written")
    return 1.0, intercept


def _derived_header(meta: DicomMeta, i: int, series_uid: str, description: str,
                    now: datetime) -> Dataset:
    src, frame = meta.datasets[i], meta.frames[i]
    if not src.get("SOPInstanceUID") or not src.get("SOPClassUID"):
        raise ValueError(f"{meta.paths[i]}: expected SOPClassUID and SOPInstanceUID to "
                         "reference the source slice, got none")
    ds = Dataset()
    for keyword in _COPIED:
        if keyword in src:
            ds[keyword] = copy.deepcopy(src[keyword])
    if "SliceLocation" in src and "NumberOfFrames" not in src:  # top level: one frame only
        ds.SliceLocation = src.SliceLocation
    for keyword in _TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, None)
    ds.SOPClassUID, ds.SOPInstanceUID = uid.CTImageStorage, uid.generate_uid()
    ds.SeriesInstanceUID, ds.Modality, ds.InstanceNumber = series_uid, "CT", i + 1
    # Value 3 (AXIAL / LOCALIZER) is required for CT Image and still true of the derived image.
    flavour = [v for v in list(src.get("ImageType") or [])[2:3] if v in ("AXIAL", "LOCALIZER")]
    ds.ImageType = ["DERIVED", "SECONDARY", *flavour]
    # Cut the source's description, never the marker, to fit the 64 characters of LO.
    source = str(src.get("SeriesDescription") or "")[: _LO_MAX - len(description) - 1].rstrip()
    ds.SeriesDescription = f"{source} {description}".strip()
    ds.DerivationDescription = description
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = src.SOPClassUID, src.SOPInstanceUID
    if "NumberOfFrames" in src:
        ref.ReferencedFrameNumber = frame + 1
    ds.SourceImageSequence = [ref]
    ts = src.file_meta.get("TransferSyntaxUID") if hasattr(src, "file_meta") else None
    marked = src.get("LossyImageCompression")
    if marked == "01" or (ts in _LOSSY_SYNTAXES and marked != "00"):
        ds.LossyImageCompression = "01"
        if "LossyImageCompressionMethod" not in ds and ts in _LOSSY_METHODS:
            ds.LossyImageCompressionMethod = _LOSSY_METHODS[ts]
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    ds.SeriesDate = ds.ContentDate = ds.InstanceCreationDate = date
    ds.SeriesTime = ds.ContentTime = ds.InstanceCreationTime = time
    if meta.pixel_spacing is not None:
        ds.PixelSpacing = [DSfloat(v, auto_format=True) for v in meta.pixel_spacing]
    if meta.slice_thickness is not None:
        ds.SliceThickness = DSfloat(meta.slice_thickness, auto_format=True)
    return ds


def _positions(meta: DicomMeta, orientation: tuple[float, ...]) -> list[tuple[float, ...]]:
    """ImagePositionPatient of every slice: the source's, else computed.

    Position and orientation are type 1 in CT Image Storage, so a slice whose source had no
    position (a legacy multi-frame file, a slice without geometry) gets one: the first known
    position moved by ``(i - j) * spacing`` along the slice normal (``j`` its slice), or the
    origin when none is known. ``spacing`` is the measured slice spacing, else the thickness,
    else 1 mm. The slices keep their order; the absolute place is then only nominal.
    """
    known = next((j for j, p in enumerate(meta.positions) if p is not None), None)
    if known is not None and all(p is not None for p in meta.positions):
        return list(meta.positions)
    spacing = meta.slice_spacing or meta.slice_thickness or 1.0
    normal = np.cross(orientation[:3], orientation[3:])
    origin = np.zeros(3) if known is None else np.asarray(meta.positions[known])
    start = 0 if known is None else known
    return [p if p is not None else tuple((origin + (i - start) * spacing * normal).tolist())
            for i, p in enumerate(meta.positions)]


def _set_pixels(ds: Dataset, stored: np.ndarray) -> None:
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    # The bit layout must describe the array actually stored: full-range unsigned 16-bit.
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = stored.tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds.file_meta = meta


def _write_atomic(ds: Dataset, target: Path) -> None:
    # Temp file in the target folder (same file system) then os.replace, which is atomic:
    # a crash or a full disk leaves either the old file or the new one, never half of one.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            ds.save_as(fh, enforce_file_format=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a series is meant to be shared
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
