"""Fixtures for the DICOM tests: shipped pydicom files (never downloaded) and synthetic CT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import ct_dataset as _make_ct
from dicom_factory import enhanced_ct_dataset as _make_enhanced
from dicom_factory import save_dataset as _save

_TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _shipped(name: str) -> Path:
    # Only files inside the installed package: pydicom.data.get_testdata_file would download
    # the others from the network, which tests must never touch.
    path = _TEST_FILES / name
    if not path.is_file():
        pytest.skip(f"{name} is not shipped inside the installed pydicom package")
    return path


@pytest.fixture
def shipped():
    """``shipped(name) -> Path`` of a test file inside the installed pydicom (skip if absent)."""
    return _shipped


@pytest.fixture
def make_ct():
    """``make_ct(stored, **attrs) -> Dataset``: a synthetic CT slice or multi-frame object."""
    return _make_ct


@pytest.fixture
def make_enhanced():
    """``make_enhanced(stored [F, H, W], slopes, intercepts) -> Dataset``: Enhanced CT."""
    return _make_enhanced


@pytest.fixture
def save():
    """``save(ds, path) -> path``: write a dataset as a DICOM file."""
    return _save


@pytest.fixture
def stored_slices():
    """Five 12x10 int16 slices of distinct stored values (HU = stored - 1024)."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 3000, size=(5, 12, 10)).astype(np.int16)


@pytest.fixture
def series_dir(tmp_path, stored_slices):
    """A 5-slice series whose file names are shuffled against slice position (z = 2.5 * i)."""
    folder = tmp_path / "series"
    for i, name in enumerate(["c.dcm", "a.dcm", "e.dcm", "b.dcm", "d.dcm"]):
        ds = _make_ct(stored_slices[i], z=2.5 * i, instance=5 - i)  # instances reversed
        _save(ds, folder / name)
    return folder
