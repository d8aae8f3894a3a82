"""MetaImage files through SimpleITK: round trip, the toolbox's own variants, clear errors."""

import numpy as np
import pytest

from lidplug.io import read_metaimage, write_metaimage


def test_round_trip_keeps_values_type_and_spacing(tmp_path):
    volume = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4) - 7
    path = write_metaimage(volume, tmp_path / "v.mhd", spacing=(2.5, 0.7, 0.6))
    assert (tmp_path / "v.raw").stat().st_size == volume.nbytes
    image = read_metaimage(path)
    assert image.array.dtype == np.int16 and np.array_equal(image.array, volume)
    assert image.spacing == pytest.approx((2.5, 0.7, 0.6))
    flat = read_metaimage(write_metaimage(np.ones((3, 5), np.float32), tmp_path / "f.mhd"))
    assert flat.array.shape == (3, 5) and flat.spacing == (1.0, 1.0)


def test_big_endian_slices_named_by_a_pattern(tmp_path):
    # The toolbox sample's DL_denoised headers: MSB order, one file per slice by a pattern.
    slices = [np.full((4, 6), 1000 + 100 * k, dtype=">i2") for k in range(3)]
    for k, s in enumerate(slices, start=1):
        s.tofile(tmp_path / f"img_{k:03d}.raw")
    (tmp_path / "img.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 6 4 3\nElementType = MET_SHORT\n"
        "ElementSpacing = 1 1 1\nElementByteOrderMSB = True\n"
        "ElementDataFile = img_%03d.raw 1 3 1\n")
    image = read_metaimage(tmp_path / "img.mhd")
    assert image.array.shape == (3, 4, 6)
    assert image.array[:, 0, 0].tolist() == [1000, 1100, 1200]


@pytest.mark.parametrize(("header", "raw", "message"), [
    ("NDims = 2\nDimSize = 4 4\nElementType = MET_SHORT\nElementDataFile = gone.raw\n", None,
     r"cannot read this MetaImage \(MetaImage: Read: Cannot open data file\)"),
    ("NDims = 2\nDimSize = 4 4\nElementType = MET_SHORT\nElementDataFile = short.raw\n",
     b"\0" * 20, "data not read completely"),
    ("hello\n", None, "NDims required"),
])
def test_unreadable_files_name_themselves(tmp_path, capfd, header, raw, message):
    path = tmp_path / "bad.mhd"
    path.write_text(header)
    if raw is not None:
        (tmp_path / "short.raw").write_bytes(raw)
    with pytest.raises(ValueError, match=message) as err:
        read_metaimage(path)
    assert str(path) in str(err.value)
    assert capfd.readouterr().err == ""  # ITK's own complaints do not reach the terminal


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"expected a MetaImage header \(.mhd or .mha\)"):
        read_metaimage(tmp_path / "x.raw")
    with pytest.raises(FileNotFoundError, match="got nothing there"):
        read_metaimage(tmp_path / "x.mhd")
    with pytest.raises(ValueError, match="expected a 2-D or 3-D array"):
        write_metaimage(np.zeros(3), tmp_path / "x.mhd")
    with pytest.raises(ValueError, match="expected 2 positive spacings"):
        write_metaimage(np.zeros((3, 3)), tmp_path / "x.mhd", spacing=(1.0,))
    with pytest.raises(ValueError, match=r"expected a \.mhd path"):
        write_metaimage(np.zeros((3, 3)), tmp_path / "x.nii")
