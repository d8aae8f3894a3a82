import numpy as np
import pytest
import torch
from dicom_factory import enhanced_ct_dataset, save_dataset

from lidplug.data import PairedDicomDataset, collate

H = W = 16


@pytest.fixture
def mayo_root(tmp_path, ct_series):
    """Two patients; slice k of patient p has normal HU 100*p + k and low HU 100*p + k + 50."""
    root = tmp_path / "mayo"
    for p, n in ((1, 3), (2, 2)):
        normal = np.stack([np.full((H, W), 100.0 * p + k) for k in range(n)])
        ct_series(root / f"L00{p}" / "full_1mm", normal, z0=-10.0 * p)
        ct_series(root / f"L00{p}" / "quarter_1mm", normal + 50, z0=-10.0 * p)
    return root


def test_pairs_slices_by_position(mayo_root):
    ds = PairedDicomDataset(mayo_root)
    assert len(ds) == 5
    values = [(ds[i]["normal"].mean().item(), ds[i]["low"].mean().item()) for i in range(5)]
    assert values == [(100, 150), (101, 151), (102, 152), (200, 250), (201, 251)]
    s = ds[0]
    assert s["normal"].shape == (1, H, W) and s["low"].dtype == torch.float32
    assert s["target"]["boxes"].shape == (0, 4)
    # Files are named against z order: the id is the file holding the lowest slice.
    assert s["meta"]["id"] == "L001/full_1mm/s003.dcm"
    assert s["meta"]["spacing"] == (0.7, 0.7) and s["meta"]["dose"] == 0.25
    assert s["meta"]["patient"] == "L001" and s["meta"]["slice"] == 0


def test_boxes_csv_with_several_boxes_per_slice(mayo_root, tmp_path):
    csv = tmp_path / "boxes.csv"
    csv.write_text("image,x1,y1,x2,y2,label\n"
                   "L001/full_1mm/s002.dcm,1,2,5,6,4\n"
                   "L002/full_1mm/s001.dcm,0,0,3,3,\n"
                   "L001/full_1mm/s002.dcm,8,8,16,12,6\n")
    ds = PairedDicomDataset(mayo_root, boxes_csv=csv, labels="coarse")
    s = ds[1]  # s002 of L001 is its middle slice
    assert s["target"]["boxes"].tolist() == [[1, 2, 5, 6], [8, 8, 16, 12]]
    assert s["target"]["labels"].tolist() == [4, 6]
    assert ds[4]["target"]["labels"].tolist() == [9]  # no label: unknown type
    only = PairedDicomDataset(mayo_root, boxes_csv=csv, annotated_only=True)
    assert [only[i]["meta"]["id"] for i in range(len(only))] == [
        "L001/full_1mm/s002.dcm", "L002/full_1mm/s001.dcm"]
    assert collate([only[0], only[1]])["low"].shape == (2, 1, H, W)
    csv.write_text("image,x1,y1,x2,y2\nL001/full_1mm/nope.dcm,1,2,5,6\n")
    with pytest.raises(ValueError, match="unknown"):
        PairedDicomDataset(mayo_root, boxes_csv=csv)


def test_mismatched_series_are_refused(mayo_root, ct_series):
    ct_series(mayo_root / "L003" / "full_1mm", np.zeros((2, H, W)))
    ct_series(mayo_root / "L003" / "quarter_1mm", np.zeros((3, H, W)))
    with pytest.raises(ValueError, match="same number of slices, got 2 and 3"):
        PairedDicomDataset(mayo_root)


def test_shifted_positions_are_refused(tmp_path, ct_series):
    ct_series(tmp_path / "P" / "full", np.zeros((2, H, W)), z0=0.0)
    ct_series(tmp_path / "P" / "quarter", np.zeros((2, H, W)), z0=1.0)
    with pytest.raises(ValueError, match="same positions"):
        PairedDicomDataset(tmp_path)


def test_layout_errors(tmp_path, ct_series):
    with pytest.raises(FileNotFoundError, match="no pair"):
        PairedDicomDataset(tmp_path)
    ct_series(tmp_path / "P" / "Full Dose Images", np.zeros((1, H, W)))
    with pytest.raises(ValueError, match="as many"):
        PairedDicomDataset(tmp_path, normal_pattern="*full dose*", low_pattern="*low dose*")
    ct_series(tmp_path / "P" / "study" / "Low Dose Images", np.zeros((1, H, W)))
    ds = PairedDicomDataset(tmp_path, normal_pattern="*full dose*", low_pattern="*low dose*")
    assert len(ds) == 1


def test_multi_frame_files_give_the_frame_at_each_position(tmp_path):
    # Frames are stored in descending z, so sorted slice k is frame 2 - k of the file.
    stored = np.stack([np.full((H, W), 1024 + 10 * f, np.int16) for f in range(3)])
    ones, air = [1.0] * 3, [-1024.0] * 3
    save_dataset(enhanced_ct_dataset(stored, ones, air), tmp_path / "P" / "full" / "ct.dcm")
    save_dataset(enhanced_ct_dataset(stored + 50, ones, air), tmp_path / "P" / "quarter" / "ct.dcm")
    csv = tmp_path / "boxes.csv"
    csv.write_text("image,x1,y1,x2,y2\nP/full/ct.dcm#0,1,2,5,6\n")
    ds = PairedDicomDataset(tmp_path, boxes_csv=csv)
    assert [(ds[k]["normal"].mean().item(), ds[k]["low"].mean().item()) for k in range(3)] == [
        (20, 70), (10, 60), (0, 50)]
    assert [ds[k]["meta"]["id"] for k in range(3)] == [
        "P/full/ct.dcm#2", "P/full/ct.dcm#1", "P/full/ct.dcm#0"]
    assert [len(ds[k]["target"]["boxes"]) for k in range(3)] == [0, 0, 1]
