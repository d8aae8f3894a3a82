"""write_dicom: HU round trip, derived-series identity, lossy history, safe writing."""

from __future__ import annotations

import errno

import numpy as np
import pydicom
import pytest
import torch
from dicom_factory import fill_disk_on_file
from pydicom import uid
from pydicom.dataset import Dataset

from lidplug.io import read_dicom, write_dicom


@pytest.fixture
def ct_small(shipped):
    return read_dicom(shipped("CT_small.dcm"))


def _denoised(image: torch.Tensor) -> torch.Tensor:
    """Stand-in for a denoiser output: fractional HU values."""
    return image + torch.linspace(-0.49, 0.49, image.numel()).reshape(image.shape) * 7


def test_round_trip_and_identity(ct_small, tmp_path):
    image, meta = ct_small
    output = _denoised(image)
    paths = write_dicom(output, meta, tmp_path / "out", description="denoised v1")
    assert [p.name for p in paths] == ["0001.dcm"]
    again, meta2 = read_dicom(tmp_path / "out")
    assert (again - output).abs().max() <= 0.5  # slope 1: rounding only
    src, ds = meta.datasets[0], pydicom.dcmread(paths[0])
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID",
                    "StudyDate", "AccessionNumber"):
        assert ds[keyword].value == src[keyword].value, keyword
    assert ds.SeriesInstanceUID != src.SeriesInstanceUID
    assert ds.SOPInstanceUID != src.SOPInstanceUID
    assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == uid.CTImageStorage
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.TransferSyntaxUID == uid.ExplicitVRLittleEndian
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
    assert ds.DerivationDescription == "denoised v1" and ds.SeriesDescription.endswith("denoised v1")
    ref = ds.SourceImageSequence[0]
    assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (src.SOPClassUID,
                                                                         src.SOPInstanceUID)
    assert "ReferencedFrameNumber" not in ref and "LossyImageCompression" not in ds
    assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.SamplesPerPixel == 1
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 16, 15, 0)
    assert ds.pixel_array.dtype == np.uint16 and len(ds.PixelData) == 128 * 128 * 2
    assert meta2.positions == meta.positions and meta2.pixel_spacing == meta.pixel_spacing


def test_series_round_trip_keeps_order_and_uids(series_dir, tmp_path):
    image, meta = read_dicom(series_dir)
    paths = write_dicom(image.unsqueeze(1), meta, tmp_path / "out")  # [N, 1, H, W] accepted
    again, meta2 = read_dicom(tmp_path / "out")
    torch.testing.assert_close(again, image, rtol=0, atol=0.5)
    assert meta2.slice_positions == pytest.approx(meta.slice_positions)
    written = [pydicom.dcmread(p) for p in paths]
    assert len({ds.SeriesInstanceUID for ds in written}) == 1
    assert len({ds.SOPInstanceUID for ds in written}) == 5
    assert [ds.InstanceNumber for ds in written] == [1, 2, 3, 4, 5]
    assert [ds.SourceImageSequence[0].ReferencedSOPInstanceUID for ds in written] == [
        src.SOPInstanceUID for src in meta.datasets]


def test_multiframe_source_references_frames(tmp_path, make_ct, save, stored_slices):
    path = save(make_ct(stored_slices[:3]), tmp_path / "mf.dcm")
    image, meta = read_dicom(path)
    paths = write_dicom(image, meta, tmp_path / "out")
    frames = [pydicom.dcmread(p).SourceImageSequence[0].ReferencedFrameNumber for p in paths]
    assert frames == [1, 2, 3]
    assert "NumberOfFrames" not in pydicom.dcmread(paths[0])


def test_enhanced_source_geometry_from_functional_groups(tmp_path, make_enhanced, save,
                                                          stored_slices):
    path = save(make_enhanced(stored_slices[:3], [1.0, 2.0, 0.5], [-1024.0, -2048.0, -500.0]),
                tmp_path / "e.dcm")
    image, meta = read_dicom(path)
    paths = write_dicom(image, meta, tmp_path / "out")
    again, meta2 = read_dicom(tmp_path / "out")
    torch.testing.assert_close(again, image, rtol=0, atol=0.5)
    assert meta2.slice_positions == pytest.approx(meta.slice_positions)
    assert meta2.pixel_spacing == (0.8, 0.7) and meta2.slice_thickness == 2.0
    ds = pydicom.dcmread(paths[0])
    ref = ds.SourceImageSequence[0]
    assert ref.ReferencedSOPClassUID == uid.EnhancedCTImageStorage
    assert ref.ReferencedFrameNumber == 3  # lowest z is the file's last frame
    assert "PerFrameFunctionalGroupsSequence" not in ds and ds.SOPClassUID == uid.CTImageStorage


@pytest.mark.parametrize("low, high", [(-3024.0, 3071.0), (-33792.0, 31743.0)])
def test_rescale_covers_the_range(ct_small, tmp_path, low, high):
    _, meta = ct_small
    image = torch.linspace(low, high, 128 * 128).reshape(1, 128, 128)
    paths = write_dicom(image, meta, tmp_path)
    again, _ = read_dicom(tmp_path)
    assert (again - image).abs().max() <= 0.5  # the stored precision: 1 HU steps
    ds = pydicom.dcmread(paths[0])
    assert float(ds.RescaleIntercept) == min(low, -1024.0)
    assert float(ds.RescaleSlope) == 1.0


@pytest.mark.parametrize("low, high", [(-1024.0, 200000.0), (-1024.0, 2e9), (-70000.0, 0.0)])
def test_never_writes_hu_it_cannot_store_to_half_a_unit(ct_small, tmp_path, low, high):
    """Regression: HU spanning more than 16 bits were written with a coarser slope (2e9 HU:
    off by up to 16,704 HU) without a word."""
    _, meta = ct_small
    image = torch.linspace(low, high, 128 * 128).reshape(1, 128, 128)
    with pytest.raises(ValueError, match="65535 HU"):
        write_dicom(image, meta, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_lossy_source_stays_marked(shipped, tmp_path):
    image, meta = read_dicom(shipped("693_J2KI.dcm"))
    ds = pydicom.dcmread(write_dicom(image, meta, tmp_path)[0])
    src = meta.datasets[0]
    assert ds.LossyImageCompression == "01"
    for keyword in ("LossyImageCompressionRatio", "LossyImageCompressionMethod"):
        if keyword in src:
            assert ds[keyword].value == src[keyword].value


def test_refuses_to_overwrite(ct_small, tmp_path):
    image, meta = ct_small
    (first,) = write_dicom(image, meta, tmp_path)
    before = first.read_bytes()
    with pytest.raises(FileExistsError, match=r"0001\.dcm: expected no existing file, got one "
                                              r"\(pass overwrite=True"):
        write_dicom(image + 1, meta, tmp_path)
    assert first.read_bytes() == before
    write_dicom(image + 1, meta, tmp_path, overwrite=True)
    assert read_dicom(first)[0].equal(image + 1)


def test_never_replaces_a_source_file(tmp_path, make_ct, save, stored_slices):
    save(make_ct(stored_slices[0]), tmp_path / "0001.dcm")
    image, meta = read_dicom(tmp_path / "0001.dcm")
    before = (tmp_path / "0001.dcm").read_bytes()
    with pytest.raises(FileExistsError, match=r"0001\.dcm: refusing to replace a source file"):
        write_dicom(image, meta, tmp_path, overwrite=True)
    assert (tmp_path / "0001.dcm").read_bytes() == before


def test_failed_write_leaves_no_file(ct_small, tmp_path, monkeypatch):
    image, meta = ct_small

    def fail_midway(self, fh, **kwargs):
        fh.write(b"DICM half a file")
        raise OSError("disk full")

    monkeypatch.setattr(Dataset, "save_as", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        write_dicom(image, meta, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # no target, no temporary file


def test_full_disk_part_way_names_the_slice_and_keeps_the_files_before(series_dir, tmp_path,
                                                                       monkeypatch):
    image, meta = read_dicom(series_dir)
    fill_disk_on_file(monkeypatch, 3)
    with pytest.raises(OSError, match=r"0003\.dcm: cannot write slice 3 of 5 \(No space left on "
                                      r"device\); the 2 file\(s\) written before it are complete") as err:
        write_dicom(image, meta, tmp_path / "out")
    assert err.value.errno == errno.ENOSPC
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0001.dcm", "0002.dcm"]
    for name in ("0001.dcm", "0002.dcm"):
        assert pydicom.dcmread(tmp_path / "out" / name).pixel_array.shape == (12, 10)


def test_bad_arguments(ct_small, shipped, tmp_path):
    image, meta = ct_small
    with pytest.raises(ValueError, match=r"expected image of shape \[N, H, W\] = \[1, 128, 128\] "
                                         r".*got \[1, 64, 64\]"):
        write_dicom(image[:, :64, :64], meta, tmp_path)
    bad = image.clone()
    bad[0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match=r"expected finite HU values, got NaN or inf in "
                                         r"slice\(s\) \[0\]"):
        write_dicom(bad, meta, tmp_path)
    mr_image, mr_meta = read_dicom(shipped("MR_small.dcm"), allow_non_ct=True)
    with pytest.raises(ValueError, match=r"expected a CT source .*got Modality 'MR'"):
        write_dicom(mr_image, mr_meta, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_long_source_description_keeps_the_marker(ct_small, tmp_path):
    image, meta = ct_small
    meta.datasets[0].SeriesDescription = "Thorax 1mm " * 5 + "axial"  # 60 characters
    ds = pydicom.dcmread(write_dicom(image, meta, tmp_path / "a", description="lidplug x")[0])
    assert ds.SeriesDescription.endswith(" lidplug x") and len(ds.SeriesDescription) <= 64
    assert ds.SeriesDescription.startswith("Thorax 1mm Thorax")
    with pytest.raises(ValueError, match=r"description: expected at most 64 .*, got 65"):
        write_dicom(image, meta, tmp_path / "b", description="d" * 65)


def test_missing_geometry_is_computed(tmp_path, make_ct, save, stored_slices):
    # A legacy multi-frame file: its top-level position describes frame 0 only, so the
    # frames have none; a slice without any geometry gets an axial orientation too.
    save(make_ct(stored_slices[:3], instance=1), tmp_path / "mf" / "mf.dcm")
    save(make_ct(stored_slices[0], orientation=None), tmp_path / "bare" / "bare.dcm")
    for name, expected_z in (("mf", [0.0, 1.0, 2.0]), ("bare", [0.0])):
        image, meta = read_dicom(tmp_path / name)
        assert all(p is None for p in meta.positions)
        paths = write_dicom(image, meta, tmp_path / f"{name}_out")
        written = [pydicom.dcmread(p) for p in paths]
        assert [list(map(float, ds.ImagePositionPatient)) for ds in written] == [
            [0.0, 0.0, z] for z in expected_z]  # stepped by the 1-mm slice thickness
        assert all(list(map(float, ds.ImageOrientationPatient)) == [1, 0, 0, 0, 1, 0]
                   for ds in written)
        again, _ = read_dicom(tmp_path / f"{name}_out")
        torch.testing.assert_close(again, image, rtol=0, atol=0.5)


@pytest.mark.parametrize("syntax", [uid.JPEG2000Lossless, uid.JPEG2000])
def test_reversible_jpeg2000_source_is_not_marked_lossy(shipped, tmp_path, syntax):
    ds = pydicom.dcmread(shipped("CT_small.dcm"))
    ds.compress(uid.JPEG2000Lossless, encoding_plugin="pylibjpeg")
    # A reversible codestream is valid under both syntaxes; .91 allows lossy ones as well,
    # so only the source's LossyImageCompression (absent here) could say it was lossy.
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(tmp_path / "j2k.dcm")
    image, meta = read_dicom(tmp_path / "j2k.dcm")
    written = pydicom.dcmread(write_dicom(image, meta, tmp_path / "out")[0])
    assert "LossyImageCompression" not in written
    meta.datasets[0].LossyImageCompression = "01"
    written = pydicom.dcmread(write_dicom(image, meta, tmp_path / "out2")[0])
    assert written.LossyImageCompression == "01"
    method = "ISO_15444_1" if syntax == uid.JPEG2000 else None  # none for a lossless syntax
    assert written.get("LossyImageCompressionMethod") == method
