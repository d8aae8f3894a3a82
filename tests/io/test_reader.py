"""read_dicom on good input: shipped CT, ordered series, MONOCHROME1, multi-frame, enhanced CT."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import torch
from pydicom.dataset import Dataset

from lidplug.io import DicomMeta, read_dicom


def test_ct_small_reads_in_hu(shipped):
    path = shipped("CT_small.dcm")
    image, meta = read_dicom(path)
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert image.shape == (1, 128, 128) and image.dtype == torch.float32
    np.testing.assert_array_equal(image[0].numpy(), expected)
    assert isinstance(meta, DicomMeta) and len(meta) == 1
    assert meta.paths == [path] and meta.frames == [0] and meta.modality == "CT"
    assert meta.pixel_spacing == pytest.approx((0.661468, 0.661468))
    assert meta.rescales == [(1.0, -1024.0)] and meta.skipped == []
    assert "PixelData" not in meta.datasets[0]  # header only: the bulk is in `image`


def test_series_ordered_by_position_not_name_or_instance(series_dir, stored_slices):
    image, meta = read_dicom(series_dir)
    assert image.shape == (5, 12, 10)
    np.testing.assert_array_equal(image.numpy(), stored_slices.astype(np.float32) - 1024)
    assert meta.slice_positions == pytest.approx([0.0, 2.5, 5.0, 7.5, 10.0])
    assert meta.slice_spacing == pytest.approx(2.5)
    assert [p.name for p in meta.paths] == ["c.dcm", "a.dcm", "e.dcm", "b.dcm", "d.dcm"]


def test_position_is_projected_on_the_slice_normal(tmp_path, make_ct, save, stored_slices):
    # Sagittal slices: normal is -x for rows along y and columns along -z; z is constant.
    for i in range(3):
        ds = make_ct(stored_slices[i], orientation=(0, 1, 0, 0, 0, -1))
        ds.ImagePositionPatient = [float(10 - 4 * i), 0.0, 0.0]  # x = 10, 6, 2
        save(ds, tmp_path / f"{i}.dcm")
    image, meta = read_dicom(tmp_path)
    np.testing.assert_array_equal(image.numpy(), stored_slices[:3].astype(np.float32) - 1024)
    assert meta.slice_positions == pytest.approx([-10.0, -6.0, -2.0])


def test_falls_back_to_instance_number(tmp_path, make_ct, save, stored_slices):
    for i, name in enumerate("cab"):
        save(make_ct(stored_slices[i], orientation=None, instance=3 - i), tmp_path / f"{name}.dcm")
    image, meta = read_dicom(tmp_path)
    np.testing.assert_array_equal(image.numpy(), stored_slices[2::-1].astype(np.float32) - 1024)
    assert meta.slice_positions is None and meta.positions == [None] * 3


def test_monochrome1_keeps_hu(tmp_path, make_ct, save, stored_slices):
    # Rescale gives HU whatever the photometric interpretation (MONOCHROME1 is about display).
    save(make_ct(stored_slices[0], photometric="MONOCHROME1"), tmp_path / "m1.dcm")
    save(make_ct(stored_slices[0]), tmp_path / "m2.dcm")
    m1, _ = read_dicom(tmp_path / "m1.dcm")
    m2, _ = read_dicom(tmp_path / "m2.dcm")
    torch.testing.assert_close(m1, m2, rtol=0, atol=0)


def test_legacy_multiframe_file(tmp_path, make_ct, save, stored_slices):
    path = save(make_ct(stored_slices, slope=2.0, intercept=-2048.0), tmp_path / "mf.dcm")
    image, meta = read_dicom(path)
    np.testing.assert_array_equal(image.numpy(), stored_slices * 2.0 - 2048)
    assert meta.frames == [0, 1, 2, 3, 4] and len(set(map(id, meta.datasets))) == 1
    assert meta.slice_positions is None  # one top-level position cannot place 5 frames


def test_enhanced_ct_per_frame_rescale(tmp_path, make_enhanced, save, stored_slices):
    slopes, intercepts = [1.0, 2.0, 0.5], [-1024.0, -2048.0, -500.0]
    path = save(make_enhanced(stored_slices[:3], slopes, intercepts), tmp_path / "e.dcm")
    image, meta = read_dicom(path)
    expected = [stored_slices[i] * slopes[i] + intercepts[i] for i in range(3)]
    # Frames are sorted by position: frame 2 (z=10) first.
    np.testing.assert_allclose(image.numpy(), np.stack(expected[::-1]))
    assert meta.frames == [2, 1, 0] and meta.rescales == list(zip(slopes, intercepts, strict=True))[::-1]
    assert meta.pixel_spacing == (0.8, 0.7) and meta.slice_thickness == 2.0
    assert meta.slice_positions == pytest.approx([10.0, 20.0, 30.0])


def test_enhanced_ct_shared_rescale(tmp_path, make_enhanced, save, stored_slices):
    ds = make_enhanced(stored_slices[:2], [1.0, 1.0], [0.0, 0.0])
    for item in ds.PerFrameFunctionalGroupsSequence:
        del item.PixelValueTransformationSequence
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept = 1.0, -1000.0
    ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence = [transform]
    image, _ = read_dicom(save(ds, tmp_path / "e.dcm"))
    np.testing.assert_array_equal(image.numpy(), stored_slices[1::-1].astype(np.float32) - 1000)


def test_non_ct_allowed_on_request(shipped):
    image, meta = read_dicom(shipped("MR_small.dcm"), allow_non_ct=True)
    assert image.shape == (1, 64, 64) and meta.modality == "MR"
    assert meta.rescales == [(1.0, 0.0)]  # no rescale tags outside CT: identity


def test_series_uid_selects_one_series(tmp_path, make_ct, save, stored_slices):
    for i in range(4):
        series = "1.2.3.4" if i % 2 else "1.2.3.5"
        save(make_ct(stored_slices[i], z=float(i), series_uid=series), tmp_path / f"{i}.dcm")
    with pytest.raises(ValueError, match=r"expected one series, got 2: .*series_uid="):
        read_dicom(tmp_path)
    image, _ = read_dicom(tmp_path, series_uid="1.2.3.4")
    np.testing.assert_array_equal(image.numpy(), stored_slices[[1, 3]].astype(np.float32) - 1024)
    with pytest.raises(ValueError, match=r"expected series '9\.9', got only"):
        read_dicom(tmp_path, series_uid="9.9")
