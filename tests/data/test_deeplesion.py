import numpy as np
import pytest
import torch

from lidplug.data import (
    UNKNOWN_LESION_LABEL,
    DeepLesionDataset,
    PhantomDataset,
    read_dl_info,
    read_png_hu,
    write_deeplesion,
    write_png_hu,
)


def test_read_dl_info_groups_rows_of_one_key_slice(deeplesion_root):
    records = read_dl_info(deeplesion_root / "DL_info.csv")
    assert [r["file_name"] for r in records] == [
        "000001_01_01_109.png", "000002_01_01_017.png", "000003_02_01_050.png"]
    first = records[0]
    assert first["image"] == "Images_png/000001_01_01/109.png"
    assert first["boxes"] == [[2.5, 3.25, 10, 12], [20, 21, 30, 31]]
    assert first["types"] == [4, 5]
    assert first["spacing"] == (0.8, 0.7)  # (row, col) from the CSV's "x, y, z"
    assert first["slice_interval"] == 5 and first["key_slice"] == 109
    assert [r["split"] for r in records] == [1, 2, 3]
    assert [r["noisy"] for r in records] == [False, False, True]


def test_read_dl_info_reports_bad_rows(tmp_path):
    bad = tmp_path / "DL_info.csv"
    bad.write_text("File_name,Bounding_boxes,Coarse_lesion_type,Spacing_mm_px_,Train_Val_Test\n"
                   "000001_01_01_109.png,\"1, 2, 3\",1,\"1, 1, 5\",1\n")
    with pytest.raises(ValueError, match=r"DL_info.csv:2 Bounding_boxes: expected 4"):
        read_dl_info(bad)
    bad.write_text("File_name,Bounding_boxes\n")
    with pytest.raises(ValueError, match="missing"):
        read_dl_info(bad)


@pytest.mark.parametrize(("row", "match"), [
    ('"10, 10, 5, 20",1,"1, 1, 5",1', "x1 < x2"),                 # inverted box
    ('"1, 2, nan, 4",1,"1, 1, 5",1', "finite"),                   # NaN coordinate
    ('"1, 2, 3, 4",1,"0, 1, 5",1', "positive"),                   # zero spacing
    ('"1, 2, 3, 4",1,"1, inf, 5",1', "finite"),
    ('"1, 2, 3, 4",1', "missing"),                                # a short row
    ('"1, 2, 3, 4",1,"1, 1, 5",1,extra', "extra"),                # a long one
])
def test_read_dl_info_refuses_bad_values_naming_the_row(tmp_path, row, match):
    bad = tmp_path / "DL_info.csv"
    bad.write_text("File_name,Bounding_boxes,Coarse_lesion_type,Spacing_mm_px_,Train_Val_Test\n"
                   f"000001_01_01_109.png,{row}\n")
    with pytest.raises(ValueError, match=match) as info:
        read_dl_info(bad)
    assert "DL_info.csv:2" in str(info.value)


def test_png_hu_round_trip(tmp_path):
    hu = torch.tensor([[-32768.0, -1024.5, 0.4], [3071.0, 32767.0, 40000.0]])
    path = write_png_hu(hu, tmp_path / "a" / "1.png")
    back = read_png_hu(path)
    assert back.shape == (1, 2, 3) and back.dtype == torch.float32
    assert back[0].tolist() == [[-32768, -1024, 0], [3071, 32767, 32767]]  # rounded, clipped
    with pytest.raises(FileExistsError, match="overwrite"):
        write_png_hu(hu, path)
    from PIL import Image

    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "8bit.png")
    with pytest.raises(ValueError, match="16-bit"):
        read_png_hu(tmp_path / "8bit.png")


def test_write_deeplesion_reads_back(tmp_path):
    phantoms = PhantomDataset(6, size=64, seed=1, normal_dose=None, lesion_free_fraction=0.3,
                              labels="coarse")
    samples = []
    for i in range(len(phantoms)):  # noise-free HU images + boxes, no dose simulation needed
        ph = phantoms.phantom(i)
        samples.append({"normal": ph.hu[None], "meta": {"spacing": (ph.spacing, ph.spacing)},
                        "target": {"boxes": ph.boxes, "labels": torch.tensor([4] * len(ph.hosts))}})
    write_deeplesion(samples, tmp_path, split="val", coarse=True)
    records = read_dl_info(tmp_path / "DL_info.csv")
    with_lesions = [s for s in samples if len(s["target"]["boxes"])]
    assert 0 < len(records) == len(with_lesions) < len(samples)
    for rec, s in zip(records, with_lesions, strict=True):
        assert torch.tensor(rec["boxes"]).equal(s["target"]["boxes"])
        assert rec["split"] == 2 and rec["types"] == [4] * len(rec["boxes"])
        png = read_png_hu(tmp_path / rec["image"])
        assert (png - s["normal"].round()).abs().max() == 0
    with pytest.raises(FileExistsError):
        write_deeplesion(samples, tmp_path)


def test_dataset_selects_split_and_skips_missing(deeplesion_root):
    assert len(DeepLesionDataset(deeplesion_root, split="train")) == 1
    assert len(DeepLesionDataset(deeplesion_root, split=None)) == 3
    assert len(DeepLesionDataset(deeplesion_root, split=None, drop_noisy=True)) == 2
    (deeplesion_root / "Images_png/000002_01_01/017.png").unlink()
    with pytest.warns(UserWarning, match="skipping 1 key slice"):
        assert len(DeepLesionDataset(deeplesion_root, split=None)) == 2
    with pytest.raises(FileNotFoundError, match="1 key slice"):
        DeepLesionDataset(deeplesion_root, split="val", missing="error")
    with pytest.raises(ValueError, match="split"):
        DeepLesionDataset(deeplesion_root, split="training")
    with pytest.raises(FileNotFoundError, match=r"DL_info\.csv"):
        DeepLesionDataset(deeplesion_root / "Images_png")


def test_dataset_sample(deeplesion_root):
    ds = DeepLesionDataset(deeplesion_root, split=None, labels="coarse", dose=0.25, seed=5)
    s = ds[0]
    assert s["normal"].shape == s["low"].shape == (1, 32, 32)
    ramp = np.arange(32 * 32).reshape(32, 32) % 50
    assert s["normal"][0].numpy().tolist() == (-1000 + ramp).tolist()  # HU = PNG - 32768
    assert s["target"]["boxes"].tolist() == [[2.5, 3.25, 10, 12], [20, 21, 30, 31]]
    assert s["target"]["labels"].tolist() == [4, 5]
    assert ds[1]["target"]["labels"].tolist() == [UNKNOWN_LESION_LABEL]  # type -1
    assert s["meta"]["id"] == "000001_01_01_109.png" and s["meta"]["spacing"] == (0.8, 0.7)
    assert s["meta"]["split"] == "train" and s["meta"]["dose"] == 0.25
    assert not torch.equal(s["low"], s["normal"])
    assert torch.equal(ds[0]["low"], s["low"])  # the same noise every time (seeded per slice)
    assert torch.equal(DeepLesionDataset(deeplesion_root, split="train", seed=5)[0]["low"],
                       s["low"])  # ... whatever the split/index
    lesion = DeepLesionDataset(deeplesion_root, split=None)
    assert lesion[0]["target"]["labels"].tolist() == [1, 1]


@pytest.mark.parametrize("field", ["inf", "1e400", "-inf"])
def test_read_dl_info_refuses_infinite_integers(tmp_path, field):
    """Regression: 'inf' in an integer column raised a raw OverflowError."""
    bad = tmp_path / "DL_info.csv"
    bad.write_text("File_name,Bounding_boxes,Coarse_lesion_type,Spacing_mm_px_,Train_Val_Test\n"
                   f'000001_01_01_109.png,"1, 2, 3, 4",{field},"1, 1, 5",1\n')
    with pytest.raises(ValueError, match=r"DL_info\.csv:2: expected integer"):
        read_dl_info(bad)
