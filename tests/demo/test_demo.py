"""``lidplug demo`` end to end on the ``tiny`` preset (seconds): files, metrics.json, the model."""

import json

import pytest
import torch

from lidplug.cli import main
from lidplug.experiments import ARMS, PRESETS, format_summary, preset, run_demo

FP_RATES = ["0.125", "0.25", "0.5", "1", "2", "4", "8"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return run_demo(preset("tiny", progress=False), out), out


def _is_interval(value) -> bool:
    return (isinstance(value, dict) and set(value) == {"mean", "low", "high"}
            and all(isinstance(v, float) for v in value.values()))


def test_writes_every_file(demo):
    _, out = demo
    for name in ("metrics.json", "report.html", "lidnet_denoiser.pt", "run.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name


def test_metrics_json_structure(demo):
    _, out = demo
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == list(ARMS) == ["low_dose", "baseline", "lidnet"]
    for arm, m in metrics.items():
        for key in ("psnr", "ssim", "rmse_hu", "map50", "cpm"):
            assert _is_interval(m[key]), (arm, key, m[key])
        assert list(m["froc_sensitivity"]) == FP_RATES
        assert all(_is_interval(v) for v in m["froc_sensitivity"].values())
        for key in ("psnr", "ssim", "rmse_hu"):
            assert m[key]["low"] <= m[key]["mean"] <= m[key]["high"], (arm, key)


def test_exported_model_runs_with_plain_torch(demo):
    _, out = demo
    model = torch.jit.load(str(out / "lidnet_denoiser.pt"))
    x = torch.rand(2, 1, 64, 64) * 0.1 + 0.22
    y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    hu = model.denoise_hu(torch.full((1, 1, 64, 64), 40.0))
    assert hu.shape == (1, 1, 64, 64)


def test_report_is_self_contained(demo):
    _, out = demo
    html = (out / "report.html").read_text()
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html
    assert html.count("data:image/png;base64,") == 4 * PRESETS["tiny"]["examples"]
    assert html.count("<svg") >= 3  # FROC + loss curves


def test_summary_table_lists_the_arms(demo):
    result, _ = demo
    table = format_summary(result["metrics"])
    assert all(arm in table for arm in ARMS) and "PSNR" in table


def test_cli_demo_runs_and_prints_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(PRESETS, "quick", PRESETS["tiny"])  # the CLI's default, made tiny
    assert main(["demo", "--out", str(tmp_path / "d"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "lidnet" in printed and "report.html" in printed
    assert (tmp_path / "d" / "metrics.json").is_file()


def test_cli_demo_help(capsys):
    assert main(["demo", "--help"]) == 0
    assert "--full" in capsys.readouterr().out


def test_cli_demo_user_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["demo", "--out", str(blocker)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lidplug: error: ") and "folder" in err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cli_demo_cuda_without_gpu(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CUDA" in err[0]
