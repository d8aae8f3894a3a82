"""Builders for the data tests: tiny CT series (pydicom), DeepLesion folders (16-bit PNGs)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import ct_dataset, save_dataset
from PIL import Image
from pydicom import uid

DL_COLUMNS = (
    "File_name", "Patient_index", "Study_index", "Series_ID", "Key_slice_index",
    "Measurement_coordinates", "Bounding_boxes", "Lesion_diameters_Pixel_",
    "Normalized_lesion_location", "Coarse_lesion_type", "Possibly_noisy", "Slice_range",
    "Spacing_mm_px_", "Image_size", "DICOM_windows", "Patient_gender", "Patient_age",
    "Train_Val_Test",
)
STUDY_UID = "1.2.826.0.1.3680043.8.498.7"


def _write_ct(path: Path, hu: np.ndarray, z: float, series_uid: str, spacing: float) -> None:
    """One single-frame CT file, stored = HU + 1024 as uint16."""
    stored = np.clip(np.rint(hu + 1024), 0, 65535).astype(np.uint16)
    ds = ct_dataset(stored, z=z, origin=(0.0, 0.0), spacing=(spacing, spacing), slope=1,
                    intercept=-1024, study_uid=STUDY_UID, series_uid=series_uid, frame_uid=None,
                    patient=("Phantom^Test", "P1", None), description=None)
    save_dataset(ds, path)


def write_ct_series(folder: Path, hu: np.ndarray, *, z0: float = 0.0, dz: float = 2.0,
                    spacing: float = 0.7, names=None) -> list[Path]:
    """Write ``hu`` ``[N, H, W]`` as a series; file names default to reversed order of z."""
    series_uid = uid.generate_uid()
    n = len(hu)
    names = names or [f"s{n - k:03d}.dcm" for k in range(n)]  # names sort against z
    paths = [folder / name for name in names]
    for k, path in enumerate(paths):
        _write_ct(path, hu[k], z0 + dz * k, series_uid, spacing)
    return paths


def write_png(path: Path, hu: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((hu + 32768).astype(np.uint16)).save(path)


def write_dl_info(path: Path, rows: list[dict]) -> None:
    """DL_info.csv with every real column; unspecified cells get plausible placeholders."""
    defaults = {
        "Patient_index": 1, "Study_index": 1, "Series_ID": 1, "Key_slice_index": 1,
        "Measurement_coordinates": "0, 0, 1, 1, 0, 1, 1, 0", "Lesion_diameters_Pixel_": "1, 1",
        "Normalized_lesion_location": "0.5, 0.5, 0.5", "Coarse_lesion_type": -1,
        "Possibly_noisy": 0, "Slice_range": "1, 3", "Spacing_mm_px_": "0.8, 0.8, 5",
        "Image_size": "32, 32", "DICOM_windows": "-175, 275", "Patient_gender": "F",
        "Patient_age": 50, "Train_Val_Test": 1,
    }
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=DL_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**defaults, **row})


@pytest.fixture
def ct_series():
    """``ct_series(folder, hu[N, H, W], **kw) -> paths``: write a synthetic CT series."""
    return write_ct_series


@pytest.fixture
def deeplesion_root(tmp_path):
    """A fake DeepLesion folder: 3 key slices (one with two lesions), splits 1/2/3, 32x32 PNGs.

    Slice ``k``'s pixels are ``-1000 + 100 * k`` HU plus a ramp, so each file is recognisable.
    """
    root = tmp_path / "DeepLesion"
    ramp = np.arange(32 * 32, dtype=np.float64).reshape(32, 32) % 50
    for k, (folder, name) in enumerate([("000001_01_01", "109"), ("000002_01_01", "017"),
                                        ("000003_02_01", "050")]):
        write_png(root / "Images_png" / folder / f"{name}.png", -1000 + 100 * k + ramp)
        # A context slice next to the key slice: present in the folder, not a sample.
        write_png(root / "Images_png" / folder / f"{int(name) + 1:03d}.png", ramp)
    write_dl_info(root / "DL_info.csv", [
        {"File_name": "000001_01_01_109.png", "Key_slice_index": 109,
         "Bounding_boxes": "2.5, 3.25, 10, 12", "Coarse_lesion_type": 4,
         "Spacing_mm_px_": "0.7, 0.8, 5"},
        {"File_name": "000002_01_01_017.png", "Patient_index": 2, "Key_slice_index": 17,
         "Bounding_boxes": "1, 1, 5, 6", "Train_Val_Test": 2},
        {"File_name": "000001_01_01_109.png", "Key_slice_index": 109,
         "Bounding_boxes": "20, 21, 30, 31", "Coarse_lesion_type": 5,
         "Spacing_mm_px_": "0.7, 0.8, 5"},
        {"File_name": "000003_02_01_050.png", "Patient_index": 3, "Study_index": 2,
         "Key_slice_index": 50, "Bounding_boxes": "4, 4, 8, 8", "Coarse_lesion_type": 6,
         "Train_Val_Test": 3, "Possibly_noisy": 1},
    ])
    return root
