"""Read one DICOM file into frames in Hounsfield units, with the geometry of each frame.

Parsing and decoding are pydicom's (compressed syntaxes through its pylibjpeg plugins); this
module only checks what a CT pipeline needs, applies the modality rescale and turns every
failure into an ``OSError`` (bytes unreadable) or ``ValueError`` (content unusable) whose
message starts with the file name.

Photometric interpretation: the rescale maps stored values to the modality quantity (HU for
CT) whatever the photometric interpretation; MONOCHROME1 only says that low values are
*displayed* white (the presentation step of the DICOM grey-scale pipeline). So MONOCHROME1
pixels are not inverted here: inverting would turn air into bone. The writer emits MONOCHROME2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom import uid
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import get_decoder

__all__ = ["Frame", "read_frames"]

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_UNDEFINED_LENGTH = 0xFFFFFFFF
#: The HU a CT pixel can hold: a 16-bit stored value (signed from -32768, unsigned up to 65535)
#: with the conventional intercept -1024, padding values included. A rescale giving values
#: outside it is wrong (a slope of 1e6 gives HU of 2e9), not data.
HU_RANGE = (-33792.0, 64511.0)


@dataclass
class Frame:
    """One 2-D frame of a DICOM file, in HU, with what ordering and writing need."""

    path: Path
    dataset: Dataset  # header of the source file, shared by all its frames
    index: int  # 0-based frame index in the file
    hu: np.ndarray  # [H, W] float32
    rescale: tuple[float, float]  # (slope, intercept)
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    spacing: tuple[float, float] | None
    thickness: float | None
    instance: int | None


def read_frames(path: Path, *, allow_non_ct: bool = False) -> list[Frame]:
    """Read every frame of one DICOM file.

    Args:
        path: The file.
        allow_non_ct: Accept a Modality other than CT (values are then the modality's own
            rescaled values, identity rescale when the tags are absent).

    Returns:
        One :class:`Frame` per frame, in file order; the dataset's pixel data is dropped.

    Raises:
        OSError: Not DICOM, truncated, corrupt, or no decoder for its transfer syntax.
        ValueError: No image, not CT, not grey-scale, a CT without rescale tags, or a header
            value that cannot be decoded (whatever pydicom raised for it).
    """
    try:
        # pydicom converts header values lazily, so a corrupt element (unknown VR, malformed
        # number...) raises wherever it is first read, with any exception type: even the
        # truncation check of _parse reads the last element. Parse and convert every value,
        # sequence items included (the writer copies some sequences), inside this block, so
        # that such a file fails here, named, and never later while a series is ordered or
        # written.
        ds = _parse(path)
        for _ in ds.iterall():
            pass
        _check_image(ds, path, allow_non_ct)
        pixels = _decode(ds, path)  # [F, H, W]
        for keyword in _PIXEL_KEYWORDS:  # the header is kept in the metadata: drop the bulk
            if keyword in ds:
                delattr(ds, keyword)
        return _frames(ds, pixels, path)
    except (OSError, ValueError) as err:
        if str(err).startswith(f"{path}: "):
            raise
        raise ValueError(f"{path}: malformed header value: {err}") from err
    except Exception as err:  # e.g. NotImplementedError for an unknown VR
        raise ValueError(f"{path}: malformed header value: {type(err).__name__}: {err}") from err


def _frames(ds: Dataset, pixels: np.ndarray, path: Path) -> list[Frame]:
    ct = ds.get("Modality") == "CT"
    single = len(pixels) == 1
    frames = []
    for i, stored in enumerate(pixels):
        slope, intercept = _rescale(ds, i, path, required=ct)
        # float64 then one cast: a single rounding, whatever the slope.
        values = stored.astype(np.float64) * slope + intercept
        if ct and values.size and not (HU_RANGE[0] <= values.min() and values.max() <= HU_RANGE[1]):
            raise ValueError(f"{path}: expected HU within [{HU_RANGE[0]:g}, {HU_RANGE[1]:g}] (CT "
                             f"values, padding included), got {values.min():g} to "
                             f"{values.max():g} in frame {i} from RescaleSlope {slope:g} and "
                             f"RescaleIntercept {intercept:g}")
        hu = values.astype(np.float32)
        # A top-level ImagePositionPatient of a legacy multi-frame file describes frame 0
        # only, so frames of such a file get no position (they fall back to frame order).
        position = _floats(ds, i, "PlanePositionSequence", "ImagePositionPatient", 3, path,
                           top_level=single)
        frames.append(Frame(
            path=path, dataset=ds, index=i, hu=hu, rescale=(slope, intercept),
            position=position,
            orientation=_floats(ds, i, "PlaneOrientationSequence", "ImageOrientationPatient",
                                6, path),
            spacing=_floats(ds, i, "PixelMeasuresSequence", "PixelSpacing", 2, path),
            thickness=_float(_frame_value(ds, i, "PixelMeasuresSequence", "SliceThickness")),
            instance=_int(ds.get("InstanceNumber")),
        ))
    return frames


def _parse(path: Path) -> Dataset:
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        ds = _parse_without_preamble(path)
    except Exception as err:  # pydicom raises many types on corrupt bytes
        raise OSError(f"{path}: cannot parse DICOM: {err}") from err
    # pydicom stops silently at end of file and keeps a short last value: detect truncation.
    if len(ds):
        last = ds.get_item(max(ds.keys()))
        length, value = getattr(last, "length", None), getattr(last, "value", None)
        complete = not isinstance(value, bytes) or length in (None, _UNDEFINED_LENGTH)
        if not complete and len(value) < length:
            raise OSError(f"{path}: truncated file: expected {length} bytes of "
                          f"{last.tag}, got {len(value)}")
    if "TransferSyntaxUID" not in ds.file_meta:
        # Files without a meta header (old ACR-NEMA style): pydicom knows how it read them.
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (uid.ImplicitVRLittleEndian if implicit else
                                          uid.ExplicitVRLittleEndian if little else
                                          uid.ExplicitVRBigEndian)
    return ds


def _parse_without_preamble(path: Path) -> Dataset:
    # DICOM without the 128-byte preamble + "DICM" still exists; force=True reads anything,
    # so accept the result only if it really looks like a DICOM object.
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as err:
        raise OSError(f"{path}: not a DICOM file: {err}") from err
    if "SOPClassUID" not in ds:
        raise OSError(f"{path}: not a DICOM file: expected the 'DICM' prefix at byte 128 or "
                      "a dataset with a SOPClassUID, got neither")
    return ds


def _check_image(ds: Dataset, path: Path, allow_non_ct: bool) -> None:
    modality = str(ds.get("Modality") or "")
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        sop = ds.get("SOPClassUID")
        what = uid.UID(str(sop)).name if sop else "a dataset"
        hint = " (it has image attributes, so the file is probably truncated)" if "Rows" in ds else ""
        raise ValueError(f"{path}: expected an image with PixelData, got {what} "
                         f"(Modality {modality!r}) without pixel data{hint}")
    if modality != "CT" and not allow_non_ct:
        raise ValueError(f"{path}: expected Modality 'CT', got {modality!r} "
                         "(pass allow_non_ct=True to read other modalities)")
    samples = _int(ds.get("SamplesPerPixel")) or 1
    photometric = str(ds.get("PhotometricInterpretation") or "")
    if samples != 1 or photometric not in _MONOCHROME:
        raise ValueError(f"{path}: expected a grey-scale image (1 sample per pixel, MONOCHROME1 "
                         f"or MONOCHROME2), got {samples} sample(s), {photometric!r}")


def _decode(ds: Dataset, path: Path) -> np.ndarray:
    ts = uid.UID(str(ds.file_meta.TransferSyntaxUID))
    if not ts.is_transfer_syntax:
        raise OSError(f"{path}: expected a known transfer syntax, got {ts!r}")
    if ts.is_encapsulated:
        # Check first so that a missing plugin reads as such, not as a decoding failure.
        try:
            decoder = get_decoder(ts)
        except NotImplementedError as err:
            raise OSError(f"{path}: no pixel data decoder exists for {ts.name} ({ts})") from err
        if not decoder.is_available:
            missing = "; ".join(decoder.missing_dependencies) or "no plugin registered"
            raise OSError(f"{path}: cannot decode {ts.name} ({ts}): expected a decoder plugin "
                          f"to be installed, got none ({missing})")
    try:
        pixels = ds.pixel_array
    except Exception as err:
        # pydicom tries every installed plugin; its message says what each one objected to.
        raise OSError(f"{path}: cannot decode pixel data ({ts.name}): expected data that an "
                      f"installed plugin decodes, got corrupt data or an unsupported variant: "
                      f"{err}") from err
    frames = _int(ds.get("NumberOfFrames")) or 1
    rows, cols = _int(ds.get("Rows")), _int(ds.get("Columns"))
    if pixels.size != frames * rows * cols:  # pydicom checks this; keep the invariant visible
        raise OSError(f"{path}: expected {frames} frame(s) of {rows}x{cols} pixels, "
                      f"got an array of shape {pixels.shape}")
    return pixels.reshape(frames, rows, cols)


def _frame_value(ds: Dataset, frame: int, sequence: str, keyword: str, top_level: bool = True):
    """Value of ``keyword`` for one frame: per-frame group, shared group, then top level.

    Enhanced multi-frame objects (e.g. Enhanced CT) keep per-frame attributes in functional
    groups; classic objects keep them at the top level. Empty (type 2) values count as absent.
    """
    for groups, item in (("PerFrameFunctionalGroupsSequence", frame),
                         ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(groups)
        if seq is not None and item < len(seq):
            inner = seq[item].get(sequence)
            if inner and inner[0].get(keyword) not in (None, ""):
                return inner[0].get(keyword)
    value = ds.get(keyword) if top_level else None
    return None if value in (None, "") else value


def _rescale(ds: Dataset, frame: int, path: Path, *, required: bool) -> tuple[float, float]:
    slope = _frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = _frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept")
    if slope is None or intercept is None:
        # Both are type 1 for CT. Guessing (0 or -1024?) would silently shift every HU value
        # of a training set, so a CT without them is refused rather than defaulted.
        if required:
            raise ValueError(f"{path}: expected RescaleSlope and RescaleIntercept (type 1 for CT) "
                             f"for frame {frame}, got slope={slope!r}, intercept={intercept!r}")
        return 1.0, 0.0
    slope, intercept = float(slope), float(intercept)
    # HU = stored * slope + intercept: a slope of 0 makes every pixel the intercept, a negative
    # one turns air into bone. Neither is a CT image.
    if required and not (math.isfinite(slope) and slope > 0 and math.isfinite(intercept)):
        raise ValueError(f"{path}: expected a finite RescaleSlope > 0 and a finite "
                         f"RescaleIntercept for frame {frame}, got slope={slope:g}, "
                         f"intercept={intercept:g}")
    return slope, intercept


def _floats(ds: Dataset, frame: int, sequence: str, keyword: str, count: int, path: Path,
            top_level: bool = True) -> tuple[float, ...] | None:
    value = _frame_value(ds, frame, sequence, keyword, top_level)
    if value is None:
        return None
    values = list(value) if isinstance(value, list | tuple | MultiValue) else [value]
    if len(values) != count:
        raise ValueError(f"{path}: expected {count} values in {keyword}, got {len(values)}")
    return tuple(float(v) for v in values)


def _float(value) -> float | None:
    return None if value is None else float(value)


def _int(value) -> int | None:
    return None if value in (None, "") else int(value)
