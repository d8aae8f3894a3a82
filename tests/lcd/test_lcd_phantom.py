"""The digital MITA-LCD phantom: its object, its scans written in the toolbox's layout and read
back, its noise calibration, its seeds and its refusals."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lidplug.io import read_metaimage
from lidplug.lcd import cct189, find_discs, score_folder, write_phantom
from lidplug.lcd.layout import read_truth
from lidplug.lcd.phantom import DEFAULT_PIXEL_MM, DEFAULT_SIZE

N = 8  # images per class: the fewest a 5-channel reader with a half split accepts


def smooth(hu: torch.Tensor) -> torch.Tensor:
    """A stand-in denoiser, HU to HU: a 3 x 3 mean."""
    return F.avg_pool2d(hu, 3, stride=1, padding=1, count_include_pad=False)


@pytest.fixture(scope="module")
def phantom_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom") / "set"
    seconds = write_phantom(out, [0.5, 1.0], N, denoisers={"smooth": smooth}, seed=7)
    return out, seconds


def test_object():
    truth = cct189()
    assert truth.shape == (DEFAULT_SIZE, DEFAULT_SIZE) and truth.dtype == torch.float32
    c = DEFAULT_SIZE // 2
    assert truth[c, c] == 0 and truth[0, 0] == -1000  # water inside, air in the corners
    # The 10-mm disc (+3 HU) at 315 degrees: 40 mm right and down of the centre.
    offset = round(40 / 2**0.5 / DEFAULT_PIXEL_MM)
    assert truth[c + offset, c + offset] == pytest.approx(3.0)
    assert (cct189(discs=False) != truth).sum() < (cct189(discs=False) == truth).sum() / 100
    assert cct189(discs=False).unique().numel() > 2  # the rim has partial volume
    with pytest.raises(ValueError, match="wider than the 200-mm phantom"):
        cct189(256, 0.7)


def test_written_layout_reads_back(phantom_set):
    out, seconds = phantom_set
    assert set(seconds) == {"simulate", "smooth", "write"}
    for recon in ("fbp", "smooth"):
        for dose in ("dose_050", "dose_100"):
            for cls in ("signal_present", "signal_absent"):
                image = read_metaimage(out / recon / dose / cls / f"{cls}.mhd")
                assert image.array.shape == (N, DEFAULT_SIZE, DEFAULT_SIZE)
                assert image.array.dtype == np.int16
                assert image.spacing == pytest.approx((1.0, DEFAULT_PIXEL_MM, DEFAULT_PIXEL_MM))
    truth, spacing = read_truth(out / "fbp" / "ground_truth.mhd", offset=1000)
    assert spacing == pytest.approx((DEFAULT_PIXEL_MM, DEFAULT_PIXEL_MM))
    assert read_metaimage(out / "fbp" / "ground_truth.mhd").array.dtype == np.uint16
    assert [d.contrast_hu for d in find_discs(truth)] == [14.0, 7.0, 5.0, 3.0]
    results = score_folder(out)
    assert results.recons() == ["fbp", "smooth"] and results.doses() == [50, 100]
    assert results.spacing_mm == pytest.approx(DEFAULT_PIXEL_MM)
    assert [d.label(results.spacing_mm) for d in results.discs] == [
        "14 HU, 3.0 mm", "7 HU, 5.0 mm", "5 HU, 7.0 mm", "3 HU, 10.0 mm"]


def _noise(out, recon, dose):
    """Noise std in a 60 x 60 square at the centre of the signal-absent images (HU)."""
    images = read_metaimage(out / recon / dose / "signal_absent" / "signal_absent.mhd").array
    c = DEFAULT_SIZE // 2
    centre = images[:, c - 30:c + 30, c - 30:c + 30].astype(np.float64)
    return float((centre - centre.mean(axis=0)).std() * np.sqrt(N / (N - 1)))


def test_noise_is_the_toolbox_samples(phantom_set):
    out, _ = phantom_set
    # DEFAULT_I0: 24 HU at full dose, as the toolbox's sample (its 10 FBP images: 23.8 HU);
    # noise grows as 1 / sqrt(dose). 8 images of correlated noise: a few percent of spread.
    full, half = _noise(out, "fbp", "dose_100"), _noise(out, "fbp", "dose_050")
    assert full == pytest.approx(24.0, rel=0.08)
    assert half / full == pytest.approx(2**0.5, rel=0.08)
    assert _noise(out, "smooth", "dose_100") < 0.6 * full


def test_seeds(tmp_path, phantom_set):
    out, _ = phantom_set
    again = tmp_path / "again"
    write_phantom(again, [1.0], N, seed=7)
    other = tmp_path / "other"
    write_phantom(other, [1.0], N, seed=8)
    name = "dose_100/signal_present/signal_present.mhd"
    first = read_metaimage(out / "fbp" / name).array
    assert np.array_equal(read_metaimage(again / "fbp" / name).array, first)
    assert not np.array_equal(read_metaimage(other / "fbp" / name).array, first)
    # Present and absent images carry independent noise.
    absent = read_metaimage(out / "fbp" / name.replace("present", "absent")).array
    corner = (slice(None), slice(140, 180), slice(140, 180))
    assert abs(np.corrcoef(first[corner].ravel(), absent[corner].ravel())[0, 1]) < 0.05


@pytest.mark.parametrize(("doses", "images", "denoisers", "message"), [
    ([0.025], N, None, "whole percentages .* got 0.025"),
    ([0.5, 0.5], N, None, "distinct doses"),
    ([1.5], N, None, r"in \(0, 1\]"),
    ([1.0], 1, None, "at least 2 images per class, got 1"),
    ([1.0], N, {"fbp": smooth}, "other than 'fbp'"),
])
def test_refusals(tmp_path, doses, images, denoisers, message):
    with pytest.raises(ValueError, match=message):
        write_phantom(tmp_path / "out", doses, images, denoisers=denoisers)
    assert not (tmp_path / "out").exists()  # nothing written
