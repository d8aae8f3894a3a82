"""Volumes and label maps (NIfTI through nibabel, NRRD through pynrrd) in lidplug's axis order."""

import nibabel
import nrrd
import numpy as np
import pytest
from real_data import need

from lidplug.io import read_label_volume, read_volume


def _array():
    """[x=5, y=4, z=3] in file order, each voxel telling its own (x, y, z)."""
    x, y, z = np.meshgrid(np.arange(5), np.arange(4), np.arange(3), indexing="ij")
    return (100 * x + 10 * y + z).astype(np.int16)


def _nifti(path, data, zooms=(0.7, 0.8, 2.5)):
    image = nibabel.Nifti1Image(data, np.diag([*zooms, 1.0]))
    image.header.set_xyzt_units("mm")
    nibabel.save(image, path)
    return path


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_axes_and_spacing(tmp_path, suffix):
    data = _array()
    path = tmp_path / f"vol{suffix}"
    if suffix == ".nrrd":
        nrrd.write(str(path), data, {"space directions": np.diag([0.7, 0.8, 2.5]),
                                     "space": "left-posterior-superior"})
    else:
        _nifti(path, data)
    vol = read_volume(path)
    assert vol.shape == (3, 4, 5)  # [slice, row, column]
    assert vol.spacing == pytest.approx((2.5, 0.8, 0.7))
    # voxel (x=4, y=2, z=1) is slice 1, row 2, column 4
    assert vol.data[1, 2, 4].item() == 421.0
    assert vol.data.dtype.is_floating_point


def test_a_volume_without_spacing_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "bare.nrrd"
    nrrd.write(str(path), _array(), {})  # no space directions, no spacings
    with pytest.raises(ValueError, match=r"bare\.nrrd: expected a voxel size .* got neither"):
        read_volume(path)
    image = nibabel.Nifti1Image(_array(), None)  # no affine: the voxel size is pixdim's
    image.header["pixdim"] = [1, 0, 0, 0, 1, 1, 1, 1]
    image.set_qform(None, code=0)
    image.set_sform(None, code=0)
    nibabel.save(image, tmp_path / "zero.nii.gz")
    with pytest.raises(ValueError, match=r"zero\.nii\.gz: expected a voxel size"):
        read_volume(tmp_path / "zero.nii.gz")


def test_a_mask_of_another_shape_is_refused_naming_it(tmp_path):
    image = read_volume(_nifti(tmp_path / "ct.nii.gz", _array()))
    wrong = _nifti(tmp_path / "mask.nii.gz", np.zeros((5, 4, 2), np.uint8))
    with pytest.raises(ValueError, match=r"mask\.nii\.gz: expected a label map of the image's "
                                         r"shape \[3, 4, 5\] \(ct\.nii\.gz\), got \[2, 4, 5\]"):
        read_label_volume(wrong, like=image)
    coarse = _nifti(tmp_path / "coarse.nii.gz", np.zeros((5, 4, 3), np.uint8), (1.4, 0.8, 2.5))
    with pytest.raises(ValueError, match="voxel size"):
        read_label_volume(coarse, like=image)
    half = _nifti(tmp_path / "half.nii.gz", np.full((5, 4, 3), 0.5, np.float32))
    with pytest.raises(ValueError, match="integer labels"):
        read_label_volume(half)


def test_other_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"notes\.txt: expected a volume file ending in"):
        read_volume(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match="nothing there"):
        read_volume(tmp_path / "absent.nrrd")
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"not a volume")
    with pytest.raises(OSError, match=r"junk\.nii\.gz: cannot read as NIfTI"):
        read_volume(junk)


def test_real_nrrd_volume_and_its_tumour_mask_align():
    image = need("pyradiomics-lung", "lung2_image.nrrd")
    vol = read_volume(image)
    mask = read_label_volume(image.with_name("lung2_label.nrrd"), like=vol).data != 0
    assert vol.shape == (61, 512, 512) and vol.spacing == pytest.approx((5.0, 0.627, 0.627),
                                                                        abs=1e-3)
    assert int(mask.sum()) == 24644
    # The tumour is soft tissue; the lung it sits in is air-filled.
    inside = float(vol.data[mask].mean())
    assert -100 < inside < 150
    k = int(mask.sum(dim=(1, 2)).argmax())
    rows, cols = mask[k].nonzero(as_tuple=True)
    lung_side = vol.data[k, rows.min() - 25:rows.min() - 5, cols.min():cols.max()]
    assert inside - float(lung_side.median()) > 300
