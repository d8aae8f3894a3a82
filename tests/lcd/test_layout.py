"""The toolbox's folder layout: what is found, and one clear error per bad folder."""

import shutil

import numpy as np
import pytest
from lcd_folders import disc_truth, write_layout

from lidplug.io import write_metaimage
from lidplug.lcd import find_recons, score_folder
from lidplug.lcd.layout import dose_folder_name, read_images


def test_recons_doses_and_truths(tmp_path):
    root = write_layout(tmp_path / "set", disc_truth(), doses=(10, 55, 100),
                        recons=("zeta", "fbp", "alpha"))
    recons = find_recons(root)
    assert [r.name for r in recons] == ["fbp", "alpha", "zeta"]  # FBP, the reference, first
    assert [d.percent for d in recons[0].doses] == [10, 55, 100]
    assert recons[1].truth == root / "alpha" / "ground_truth.mhd"
    # A recon without a truth of its own uses ROOT's; ROOT may be one recon folder.
    shutil.copy(root / "fbp" / "ground_truth.mhd", root / "ground_truth.mhd")
    shutil.copy(root / "fbp" / "ground_truth.raw", root / "ground_truth.raw")
    (root / "zeta" / "ground_truth.mhd").unlink()
    assert find_recons(root)[2].truth == root / "ground_truth.mhd"
    assert [r.name for r in find_recons(root / "fbp")] == ["fbp"]
    assert dose_folder_name(10) == "dose_010" and dose_folder_name(2.5) == "dose_002.5"


def test_one_file_per_image_is_one_stack(tmp_path):
    folder = tmp_path / "signal_present"
    folder.mkdir()
    for k in range(3):
        write_metaimage(np.full((8, 8), 1000 + k, np.int16), folder / f"img_{k:02d}.mhd")
    stack = read_images(folder, (8, 8), offset=1000)
    assert stack.shape == (3, 8, 8) and stack[:, 0, 0].tolist() == [0.0, 1.0, 2.0]


def test_sample_classes_decode(lcd_sample):
    # FBP is little-endian, DL_denoised big-endian with slices in files named by a pattern.
    for recon, water in (("fbp", 0.0), ("DL_denoised", -32768.0)):
        absent = read_images(lcd_sample / recon / "dose_100" / "signal_absent", (256, 256),
                             offset=1000)
        centre = absent[:, 100:156, 100:156]
        assert absent.shape == (10, 256, 256)
        assert abs(float(np.median(centre)) - water) < 5  # DL_denoised: another offset
        assert 15 < float(centre.std()) < 30  # about 24 and 21 HU: decoded, not byte-swapped


def _set(tmp_path):
    return write_layout(tmp_path / "set", disc_truth(), n=12, doses=(25, 100))


def test_missing_class_folder(tmp_path):
    root = _set(tmp_path)
    shutil.rmtree(root / "fbp" / "dose_025" / "signal_absent")
    with pytest.raises(ValueError, match=r"fbp/dose_025: expected the folders signal_present "
                                         "and signal_absent, signal_absent is missing"):
        score_folder(root)


def test_mismatched_image_size(tmp_path):
    root = _set(tmp_path)
    folder = root / "fbp" / "dose_100" / "signal_present"
    write_metaimage(np.zeros((4, 32, 32), np.int16), folder / "signal_present.mhd")
    with pytest.raises(ValueError, match=r"dose_100/signal_present/signal_present.mhd: expected "
                                         "images of 64x64 pixels \\(the ground truth's\\), got "
                                         "32x32"):
        score_folder(root)


def test_no_discs_in_the_truth(tmp_path):
    root = write_layout(tmp_path / "set", disc_truth(contrasts=()), doses=(100,))
    with pytest.raises(ValueError, match=r"fbp/ground_truth.mhd: expected low-contrast discs in "
                                         "the ground truth .* found none"):
        score_folder(root)


@pytest.mark.parametrize(("damage", "message"), [
    ("no_doses", "expected recon folders holding dose_XXX folders"),
    ("no_truth", r"fbp: expected ground_truth.mhd in it or in .*, found neither"),
    ("no_images", r"signal_absent: expected MetaImage files \(\*.mhd, \*.mha\), found none"),
    ("broken_raw", r"signal_absent.mhd: cannot read this MetaImage \(.*data"),
    ("other_truth", r"other/ground_truth.mhd: expected the same phantom as"),
])
def test_other_bad_folders(tmp_path, damage, message):
    root = _set(tmp_path)
    absent = root / "fbp" / "dose_100" / "signal_absent"
    if damage == "no_doses":
        for dose in root.glob("fbp/dose_*"):
            dose.rename(dose.with_name("d" + dose.name))
    elif damage == "no_truth":
        (root / "fbp" / "ground_truth.mhd").unlink()
    elif damage == "no_images":
        for f in absent.iterdir():
            f.unlink()
    elif damage == "broken_raw":
        (absent / "signal_absent.raw").write_bytes(b"\0" * 10)
    else:
        write_layout(root, disc_truth(contrasts=(12.0,)), recons=("other",))
    with pytest.raises(ValueError, match=message):
        score_folder(root)


def test_not_a_folder(tmp_path):
    with pytest.raises(ValueError, match=r"expected a folder in the LCD-CT layout .* got "
                                         "nothing there"):
        find_recons(tmp_path / "missing")
