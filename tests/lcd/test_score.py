"""Scoring by the toolbox's protocol: its numbers on its sample, its reader splits, and the
protocol's settings."""

import json
import math
import re

import numpy as np
import pytest
from lcd_folders import disc_truth, write_layout

from lidplug.lcd import LCDProtocol, score_folder, write_results
from lidplug.lcd.score import reader_splits

#: Mean AUC and d' over 10 readers, seed 0, per disc (14, 7, 5, 3 HU), from the toolbox's own
#: Python code (DIDSR/LCD_CT src/lcdct, measure_LCD with seed_split=0) on the sample: the
#: scratch run of docs/LCD.md.
TOOLBOX_FBP = {
    10: ([0.548, 0.464, 0.688, 0.584], [0.097792, -0.160533, 0.618333, 0.326167]),
    55: ([0.624, 0.796, 0.488, 0.732], [0.50026, 1.315866, -0.333695, 0.793883]),
    100: ([0.512, 0.356, 0.628, 0.700], [0.050193, -0.662761, 0.510701, 0.846548]),
}
TOOLBOX_DL_AUC = {10: [0.468, 0.832, 0.364, 0.732], 55: [0.508, 0.808, 0.744, 0.896],
                  100: [0.852, 0.924, 0.856, 0.820]}


@pytest.fixture(scope="module")
def sample_results(lcd_sample):
    return score_folder(lcd_sample)


def _rows(results, recon, dose):
    return sorted((r for r in results.rows if r["recon"] == recon and r["dose"] == dose),
                  key=lambda r: r["disc"])


def test_sample_scores_are_sane(sample_results):
    r = sample_results
    assert r.recons() == ["fbp", "DL_denoised"] and r.doses() == [10, 55, 100]
    assert len(r.rows) == 2 * 3 * 4
    for row in r.rows:
        assert row["n_present"] == row["n_absent"] == 10
        for key in ("auc", "d_prime"):
            values = row[key]["readers"]
            assert len(values) == 10 and all(math.isfinite(v) for v in values)
            assert row[key]["low"] <= row[key]["mean"] <= row[key]["high"]
        assert all(0 <= v <= 1 for v in row["auc"]["readers"])
    # The 10-mm disc (3 HU, the largest) of FBP: full dose above a tenth of it.
    assert _rows(r, "fbp", 100)[3]["auc"]["mean"] > _rows(r, "fbp", 10)[3]["auc"]["mean"]


def test_sample_matches_the_toolbox(sample_results):
    for dose, (auc, d_prime) in TOOLBOX_FBP.items():
        rows = _rows(sample_results, "fbp", dose)
        assert [row["auc"]["mean"] for row in rows] == pytest.approx(auc, abs=1e-9)
        assert [row["d_prime"]["mean"] for row in rows] == pytest.approx(d_prime, abs=1e-5)
    for dose, auc in TOOLBOX_DL_AUC.items():
        rows = _rows(sample_results, "DL_denoised", dose)
        assert [row["auc"]["mean"] for row in rows] == pytest.approx(auc, abs=1e-9)


def test_sample_offset_is_noted(sample_results):
    # DL_denoised is stored 32768 lower than HU + 1000: noted, and harmless (ROI means removed).
    assert len(sample_results.notes) == 3
    assert all(re.search(r"DL_denoised/dose_\d+: the images' background is -327(69|70) HU", n)
               for n in sample_results.notes)


def test_reader_splits_are_the_toolboxs():
    # scikit-learn's train_test_split(arange(n), train_size=f, random_state=s) for the reader
    # seeds the toolbox draws from seed 0 (85062, 63696, 51113).
    splits = reader_splits(10, 7, 3, 0.5, seed=0)
    assert [sorted(p.tolist()) for p, _ in splits] == [[2, 3, 4, 7, 9], [3, 6, 7, 8, 9],
                                                       [0, 1, 3, 4, 8]]
    assert [len(a) for _, a in splits] == [3, 3, 3]
    other = reader_splits(10, 7, 3, 0.6, seed=0)
    assert [sorted(a.tolist()) for _, a in other] == [[2, 3, 4, 5], [1, 3, 4, 5], [0, 1, 4, 6]]
    assert [p.tolist() for p, _ in reader_splits(10, 7, 3, 0.5, seed=1)] != [
        p.tolist() for p, _ in splits]


def test_folder_of_written_images(tmp_path):
    root = write_layout(tmp_path / "set", disc_truth(), n=40, doses=(10, 100),
                        recons=("fbp", "smooth"))
    results = score_folder(root, LCDProtocol(readers=20, seed=3))
    assert results.roi_size == 2 * 12 + 1 and results.spacing_mm is None
    low, full = _rows(results, "fbp", 10), _rows(results, "fbp", 100)
    # 12 HU over 8 px and 4 HU over 12 px in 5 HU of white noise: clear at full dose, and the
    # fainter the lower the dose.
    assert all(row["auc"]["mean"] > 0.95 for row in full)
    assert low[1]["auc"]["mean"] < full[1]["auc"]["mean"]
    assert not results.notes
    paths = write_results(results, tmp_path / "out")
    data = json.loads(paths[0].read_text())
    assert data["protocol"]["readers"] == 20 and data["protocol"]["roi_size"] == 25
    assert [d["contrast_hu"] for d in data["discs"]] == [12.0, 4.0]
    assert data["discs"][0]["channel_width_px"] == pytest.approx(8 * 2 / 3)
    csv_lines = paths[1].read_text().splitlines()
    assert csv_lines[0].startswith("observer,recon,insert_HU,dose_level,snr,auc,reader")
    assert len(csv_lines) == 1 + 2 * 2 * 2 * 20
    page = paths[2].read_text()
    assert page.count("<svg") == 2 and "smooth" in page and "Disc 2: 4 HU" in page


def test_settings_change_the_observer(tmp_path):
    root = write_layout(tmp_path / "set", disc_truth(), n=24, doses=(100,))
    base = score_folder(root)
    wider = score_folder(root, LCDProtocol(channels=3, channel_width=1.0, roi_size=21))
    assert wider.roi_size == 21
    d_base = np.array([r["d_prime"]["readers"] for r in base.rows])
    assert not np.allclose([r["d_prime"]["readers"] for r in wider.rows], d_base)
    more = score_folder(root, LCDProtocol(readers=30, train_fraction=0.75, seed=5))
    assert [len(r["d_prime"]["readers"]) for r in more.rows] == [30, 30]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("channels", 0, "channels: expected a positive int"),
    ("roi_size", 20, "roi_size: expected None or an odd int"),
    ("train_fraction", 1.0, r"train_fraction: expected a number in \(0, 1\)"),
    ("channel_width", -1.0, "channel_width: expected a positive number"),
    ("readers", 2.5, "readers: expected a positive int"),
    ("offset", math.nan, "offset: expected a finite number"),
])
def test_bad_protocol(field, value, message):
    with pytest.raises(ValueError, match=message):
        LCDProtocol(**{field: value})


def test_too_few_images_or_too_large_roi(tmp_path):
    root = write_layout(tmp_path / "few", disc_truth(), n=4, doses=(100,))
    with pytest.raises(ValueError, match=r"dose_100: split_hotelling: expected .* 7 training "
                                         "ROIs in all"):
        score_folder(root)
    root = write_layout(tmp_path / "roi", disc_truth(), n=12, doses=(100,))
    with pytest.raises(ValueError, match=r"ROI of the disc at .* reaching outside"):
        score_folder(root, LCDProtocol(roi_size=51))


def test_constant_offset_changes_nothing(tmp_path):
    truth = disc_truth()
    a = score_folder(write_layout(tmp_path / "a", truth, n=16, doses=(100,)))
    b = score_folder(write_layout(tmp_path / "b", truth, n=16, doses=(100,), image_offset=1300))
    assert [r["auc"]["readers"] for r in a.rows] == [r["auc"]["readers"] for r in b.rows]
    np.testing.assert_allclose([r["d_prime"]["mean"] for r in a.rows],
                               [r["d_prime"]["mean"] for r in b.rows], rtol=1e-9)
    assert len(b.notes) == 1 and "300 HU" in b.notes[0]
