"""The real-lung run end to end on the real samples, shrunk to tiny models and a few slices:
sub-run models trained first and reused, hybrid and real-lesion evaluations, the report."""

import json
import os
import warnings
from pathlib import Path

import pytest
from cli_checks import check_metrics_file
from real_data import need

from lidplug.pipeline import SHIPPED_RUNS, evaluate, load_run, run

TINY = Path(__file__).with_name("tiny_hybrid")


def _spec(root):
    observers = json.dumps([{"run": str(TINY / "detector.toml")},
                            {"run": str(TINY / "observer.toml")}])
    spec, folder = load_run(SHIPPED_RUNS["real-lung"], [
        "--data.root", str(root), "--data.train", "8", "--data.test", "3", "--threads", "1",
        "--train.rounds", "1", "--train.denoiser_steps", "2", "--train.detector_steps", "1",
        "--train.batch_size", "2", "--train.progress", "false", "--evaluate.bootstrap", "20",
        "--denoiser.run", str(TINY / "denoiser.toml"),
        "--detector.run", str(TINY / "detector.toml"), "--evaluate.observers", observers])
    spec.data.options["patch"] = 64
    return spec, folder


@pytest.mark.slow
def test_real_lung_run_end_to_end(tmp_path):
    root = need("lidc-nodule-vois").parent
    need("lung-pet-ct-dx"), need("pyradiomics-lung"), need("deeplesion-sample")
    spec, folder = _spec(root)
    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run(spec, out, folder, progress=False)
    pretrained = out / "pretrained"
    assert sorted(p.name for p in pretrained.iterdir()) == ["denoiser", "detector", "observer"]
    metrics = check_metrics_file(out / "metrics.json", "test")
    protocol = metrics["protocol"]
    assert "hybrid" in protocol["reference"] and protocol["n_slices"] == 3
    assert protocol["n_lesions_scored"] >= 1
    for row in protocol["noise"]:  # each scan's own noise, the target and what was measured
        assert 4 < row["normal_dose_noise_hu"] < 25
        assert row["low_dose_noise_hu_target"] == pytest.approx(
            row["normal_dose_noise_hu"] / protocol["dose"] ** 0.5, rel=0.01)
    # Exact contrast from the known signal: the input keeps all of it, as the reference does.
    for name in ("low_dose", "normal_dose"):
        assert metrics[name]["lesion_contrast_recovery"]["mean"] == pytest.approx(1.0, abs=1e-5)
    assert {"observer_cpm", "lesion_contrast_recovery", "rmse_hu"} <= set(
        metrics["lidnet_minus_baseline"])
    real = check_metrics_file(out / "metrics-real-lesions.json", "test")
    assert "annotated, never inserted" in real["protocol"]["reference"]
    assert real["protocol"]["lesions"] == "real" and real["protocol"]["n_slices"] == 3
    html = (out / "report.html").read_text()
    assert "Real tumours of the held-out patients" in html
    assert "lung window W1500/L-600" in html and "soft-tissue window W400/L40" in html
    assert "real chest CT with real LIDC nodules inserted" in html

    # A second command reuses the pretrained models instead of training them again.
    stamps = {p: p.stat().st_mtime_ns for p in pretrained.rglob("latest.pt")}
    spec, folder = _spec(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate(spec, out, folder, progress=False)
    assert {p: p.stat().st_mtime_ns for p in pretrained.rglob("latest.pt")} == stamps
    # ... and refuses a folder holding a pretraining run of another description.
    record = pretrained / "denoiser" / "run.json"
    data = json.loads(record.read_text())
    data["run"]["train"]["warmup_steps"] = 99
    record.write_text(json.dumps(data))
    spec, folder = _spec(root)
    with pytest.raises(ValueError, match="another description"):
        evaluate(spec, out, folder, progress=False)
    assert os.path.isfile(pretrained / "denoiser" / "pretrain" / "latest.pt")
