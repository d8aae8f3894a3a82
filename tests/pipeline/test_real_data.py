"""The pipeline on real-data layouts: a DeepLesion folder, split by its own column."""

import csv
import json
from pathlib import Path

import pytest
import torch

from lidplug.data import PhantomDataset, write_deeplesion
from lidplug.pipeline import evaluate, load_run, train

TINY = Path(__file__).with_name("tiny.toml")


@pytest.fixture(scope="module")
def deeplesion(tmp_path_factory):
    """Nine 64x64 phantom key slices as a DeepLesion folder, splits 1/2/3 in turn."""
    root = tmp_path_factory.mktemp("dl")
    phantoms = PhantomDataset(9, size=64, spacing=4.5, normal_dose=None,
                              lesion_free_fraction=0.0)
    samples = []
    for i in range(9):
        ph = phantoms.phantom(i)
        samples.append({"normal": ph.hu[None], "meta": {"spacing": (4.5, 4.5)},
                        "target": {"boxes": ph.boxes, "labels": torch.ones(len(ph.hosts))}})
    info = write_deeplesion(samples, root)
    rows = list(csv.DictReader(info.open()))
    for row in rows:
        row["Train_Val_Test"] = 1 + (int(row["Patient_index"]) - 1) % 3
    with info.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_deeplesion_trains_and_is_scored_against_normal_dose(deeplesion, tmp_path):
    run_file = tmp_path / "dl.toml"
    text = TINY.read_text().replace("[data]\nsize = 64\nspacing = 4.5\ntrain = 8\nvalidation = 4\n"
                                    "test = 6\n", "[data]\nkind = 'deeplesion'\n"
                                    f"root = '{deeplesion}'\ntrain = 3\n")
    assert "deeplesion" in text
    run_file.write_text(text)
    spec, folder = load_run(run_file, ["--simulation.dose", "0.25",
                                       "--train.batch_size", "1"])
    arms = train(spec, tmp_path / "out", folder, progress=False)
    assert set(arms) == {"baseline", "lidnet"}
    evaluate(spec, tmp_path / "out", folder, arms=arms, progress=False)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert "normal-dose" in metrics["protocol"]["reference"]
    assert metrics["protocol"]["n_slices"] == 3
    assert "noise_free" not in metrics and "lesion_contrast_recovery" not in metrics["baseline"]
    assert {"rmse_hu", "psnr", "ssim", "observer_cpm"} <= set(metrics["lidnet_minus_baseline"])
    assert (tmp_path / "out" / "report.html").is_file()


@pytest.mark.parametrize("kind", ["deeplesion", "hybrid", "paired_dicom"])
def test_a_run_without_its_data_root_is_refused_before_training(kind, tmp_path):
    """A shipped run file may leave data.root to --data.root: without one, nothing trains."""
    spec, folder = load_run(TINY, ["--data.kind", kind])
    with pytest.raises(ValueError, match=r"data\.root: expected the dataset folder .*--data\.root"):
        train(spec, tmp_path / "out", folder, progress=False)
    assert not (tmp_path / "out").exists()


def test_a_missing_dataset_folder_is_named(tmp_path):
    spec, folder = load_run(TINY, ["--data.kind", "deeplesion", "--data.root",
                                   str(tmp_path / "nowhere")])
    with pytest.raises(ValueError, match="nowhere"):
        train(spec, tmp_path / "out", folder, progress=False)
