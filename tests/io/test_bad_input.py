"""read_dicom on bad input: each error names the file and says what was expected."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest
from dicom_factory import corrupt_vr
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_fragmented_frames

from lidplug.io import read_dicom


def _non_image(sop_class: uid.UID, modality: str) -> Dataset:
    """A dataset of a non-image IOD (RTSTRUCT, SR...): identity, no pixel data."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, uid.generate_uid(), modality
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID, ds.StudyInstanceUID = "LID001", uid.generate_uid()
    return ds


@pytest.fixture
def ct_bytes(shipped):
    return shipped("CT_small.dcm").read_bytes()


@pytest.mark.parametrize("cut", [800, 20000])  # inside a header value, inside the pixel data
def test_truncated_file(tmp_path, ct_bytes, cut):
    (tmp_path / "cut.dcm").write_bytes(ct_bytes[:cut])
    with pytest.raises(OSError, match=r"cut\.dcm: truncated file: expected \d+ bytes of .*got"):
        read_dicom(tmp_path / "cut.dcm")


def test_not_dicom(tmp_path):
    (tmp_path / "notes.dcm").write_bytes(b"just some text, not DICOM\n" * 20)
    with pytest.raises(OSError, match=r"notes\.dcm: not a DICOM file: expected the 'DICM' prefix"):
        read_dicom(tmp_path / "notes.dcm")


@pytest.mark.parametrize("damage", ["half", "zeros"])
def test_corrupt_compressed_pixel_data(tmp_path, shipped, damage):
    ds = pydicom.dcmread(shipped("CT_small.dcm"))
    ds.compress(uid.JPEG2000Lossless, encoding_plugin="pylibjpeg")
    frame = b"".join(next(generate_fragmented_frames(ds.PixelData)))
    frame = frame[: len(frame) // 2] if damage == "half" else bytes(len(frame))
    ds.PixelData = encapsulate([frame])
    ds.save_as(tmp_path / "bad.dcm")
    with pytest.raises(OSError, match=r"bad\.dcm: cannot decode pixel data \(JPEG 2000.*got corrupt"):
        read_dicom(tmp_path / "bad.dcm")


@pytest.mark.parametrize("sop_class, modality, name", [
    (uid.RTStructureSetStorage, "RTSTRUCT", "RT Structure Set Storage"),
    (uid.BasicTextSRStorage, "SR", "Basic Text SR Storage"),
])
def test_no_image(tmp_path, save, sop_class, modality, name):
    path = save(_non_image(sop_class, modality), tmp_path / "obj.dcm")
    with pytest.raises(ValueError, match=rf"obj\.dcm: expected an image with PixelData, got "
                                         rf"{name} \(Modality '{modality}'\) without pixel data"):
        read_dicom(path)


def test_shipped_rtstruct_without_preamble(shipped):
    with pytest.raises(ValueError, match=r"rtstruct\.dcm: expected an image.*RT Structure Set"):
        read_dicom(shipped("rtstruct.dcm"))


def test_non_ct_refused(shipped):
    with pytest.raises(ValueError, match=r"MR_small\.dcm: expected Modality 'CT', got 'MR' "
                                         r"\(pass allow_non_ct=True"):
        read_dicom(shipped("MR_small.dcm"))


def test_colour_refused(shipped):
    with pytest.raises(ValueError, match=r"SC_rgb_rle\.dcm: expected a grey-scale image .*got 3 "
                                         r"sample\(s\), 'RGB'"):
        read_dicom(shipped("SC_rgb_rle.dcm"), allow_non_ct=True)


@pytest.mark.parametrize("missing", ["slope", "intercept"])
def test_ct_without_rescale(tmp_path, make_ct, save, stored_slices, missing):
    path = save(make_ct(stored_slices[0], **{missing: None}), tmp_path / "raw.dcm")
    with pytest.raises(ValueError, match=r"raw\.dcm: expected RescaleSlope and RescaleIntercept"):
        read_dicom(path)


@pytest.mark.parametrize(("slope", "intercept", "match"), [
    (0.0, -1024.0, "RescaleSlope"), (-1.0, -1024.0, "RescaleSlope"),
    (1e6, -1024.0, "expected HU within"), (1.0, -1e9, "expected HU within")])
def test_ct_rescale_outside_physics(tmp_path, make_ct, save, stored_slices, slope, intercept,
                                    match):
    """Regression: RescaleSlope 0 (every pixel -1024 HU) was read, denoised and written; slopes
    of -1 and 1e6 (HU of 2e9) were accepted."""
    path = save(make_ct(stored_slices[0], slope=slope, intercept=intercept), tmp_path / "r.dcm")
    with pytest.raises(ValueError, match=rf"r\.dcm: .*{match}"):
        read_dicom(path)


def test_unknown_transfer_syntax(tmp_path, make_ct, stored_slices):
    ds = make_ct(stored_slices[0])
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6"
    path = tmp_path / "odd.dcm"
    ds.save_as(path, implicit_vr=False, little_endian=True, enforce_file_format=True)
    with pytest.raises(OSError, match=r"odd\.dcm: expected a known transfer syntax, got"):
        read_dicom(path)


def test_malformed_geometry(tmp_path, make_ct, save, stored_slices):
    ds = make_ct(stored_slices[0])
    ds.ImagePositionPatient = [1.0, 2.0]
    path = save(ds, tmp_path / "geo.dcm")
    with pytest.raises(ValueError, match=r"geo\.dcm: expected 3 values in ImagePositionPatient, "
                                         r"got 2"):
        read_dicom(path)


def test_mixed_sizes(tmp_path, make_ct, save, stored_slices):
    save(make_ct(stored_slices[0], z=0.0), tmp_path / "a.dcm")
    save(make_ct(stored_slices[1, :8, :8], z=1.0), tmp_path / "b.dcm")
    with pytest.raises(ValueError, match=r"b\.dcm: expected 12x10 pixels like a\.dcm, got 8x8"):
        read_dicom(tmp_path)


def test_mixed_spacing(tmp_path, make_ct, save, stored_slices):
    save(make_ct(stored_slices[0], z=0.0), tmp_path / "a.dcm")
    save(make_ct(stored_slices[1], z=1.0, spacing=(0.7, 0.7)), tmp_path / "b.dcm")
    with pytest.raises(ValueError, match=r"b\.dcm: expected PixelSpacing \[0\.5, 0\.5\] like "
                                         r"a\.dcm, got \[0\.7, 0\.7\]"):
        read_dicom(tmp_path)


def test_folder_skips_bad_files_with_one_warning(series_dir, stored_slices, ct_bytes, save,
                                                 shipped):
    (series_dir / "zz_cut.dcm").write_bytes(ct_bytes[:20000])
    (series_dir / "README.txt").write_text("not DICOM")
    save(_non_image(uid.BasicTextSRStorage, "SR"), series_dir / "report.dcm")
    (series_dir / "mr.dcm").write_bytes(shipped("MR_small.dcm").read_bytes())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image, meta = read_dicom(series_dir)
    np.testing.assert_array_equal(image.numpy(), stored_slices.astype(np.float32) - 1024)
    reasons = {path.name: reason for path, reason in meta.skipped}
    assert sorted(reasons) == ["README.txt", "mr.dcm", "report.dcm", "zz_cut.dcm"]
    assert reasons["mr.dcm"].startswith("expected Modality 'CT', got 'MR'")
    assert reasons["zz_cut.dcm"].startswith("truncated file")
    ours = [w for w in caught if str(w.message).startswith(str(series_dir))]
    assert len(ours) == 1 and "skipped 4 unreadable file(s)" in str(ours[0].message)


def test_folder_with_nothing_readable(tmp_path, ct_bytes, save):
    (tmp_path / "cut.dcm").write_bytes(ct_bytes[:20000])
    save(_non_image(uid.RTStructureSetStorage, "RTSTRUCT"), tmp_path / "rt.dcm")
    with pytest.raises(ValueError, match=r"expected at least one readable image, got none of 2 "
                                         r"file\(s\):\n  cut\.dcm: truncated.*\n  rt\.dcm: expected"):
        read_dicom(tmp_path)


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere: expected a DICOM file or a series"):
        read_dicom(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: expected DICOM files in the folder"):
        read_dicom(tmp_path / "empty")


def test_malformed_header_number(tmp_path, make_ct, save, stored_slices):
    path = save(make_ct(stored_slices[0], slope=9.75), tmp_path / "num.dcm")
    path.write_bytes(path.read_bytes().replace(b"9.75", b"ab;c"))  # pydicom can't write it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's own warning about the invalid DS
        with pytest.raises(ValueError, match=r"num\.dcm: malformed header value: .*'ab;c'"):
            read_dicom(path)


def test_unknown_vr_is_a_named_value_error(tmp_path, series_dir, make_ct, save, stored_slices):
    # pydicom raises NotImplementedError for an unknown VR, and only when the value is read.
    path = corrupt_vr(save(make_ct(stored_slices[0]), tmp_path / "vr.dcm"), 0x0018, 0x0050)
    with pytest.raises(ValueError, match=r"vr\.dcm: malformed header value: .*'QQ'.*0018,0050"):
        read_dicom(path)
    (series_dir / "vr.dcm").write_bytes(path.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image, meta = read_dicom(series_dir)
    assert len(image) == 5
    assert [(p.name, "'QQ'" in reason) for p, reason in meta.skipped] == [("vr.dcm", True)]


def _read_folder_quietly(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skipped files are checked in meta.skipped
        return read_dicom(folder)


def test_unknown_vr_on_the_last_element(tmp_path, series_dir, make_ct, save, stored_slices):
    # The last element (PixelData) is read by the truncation check, which ran before the
    # conversion of pydicom's errors: a NotImplementedError without the file's name escaped.
    path = corrupt_vr(save(make_ct(stored_slices[0]), tmp_path / "last.dcm"), 0x7FE0, 0x0010)
    with pytest.raises(ValueError, match=r"last\.dcm: malformed header value: .*'QQ'.*7FE0,0010"):
        read_dicom(path)
    (series_dir / "last.dcm").write_bytes(path.read_bytes())
    image, meta = _read_folder_quietly(series_dir)
    assert len(image) == 5  # the folder is read; the file is skipped and listed
    assert [(p.name, "'QQ'" in reason) for p, reason in meta.skipped] == [("last.dcm", True)]


def test_unknown_vr_inside_a_sequence_item(tmp_path, series_dir, make_ct, save, stored_slices):
    # A corrupt value inside a sequence the writer copies (de-identification codes) was read
    # lazily, so the file passed and its derived series carried the corrupt element on.
    ds = make_ct(stored_slices[0])
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "113100", "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = [code]
    path = corrupt_vr(save(ds, tmp_path / "seq.dcm"), 0x0008, 0x0104)
    with pytest.raises(ValueError, match=r"seq\.dcm: malformed header value: .*'QQ'.*0008,0104"):
        read_dicom(path)
    (series_dir / "seq.dcm").write_bytes(path.read_bytes())
    image, meta = _read_folder_quietly(series_dir)
    assert len(image) == 5
    assert [p.name for p, _ in meta.skipped] == ["seq.dcm"]
