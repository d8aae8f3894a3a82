"""``lidplug train`` / ``evaluate`` / ``export`` / ``denoise`` on a tiny phantom run file."""

import json
import subprocess
import sys

import pydicom
import pytest
import torch
from cli_checks import error_line
from dicom_factory import CT_SMALL, ct_small_series

from lidplug.cli import main

RUN_FILE = """
[data]
kind = "phantom"
options = { length = 4, size = 64, spacing = 4.5, simulate_kwargs = { views = 180 } }

[evaluate]
options = { length = 3 }

[denoiser]
name = "redcnn"
options = { channels = 4 }

[detector]
name = "demo"
options = { image_size = 64, fpn_channels = 16 }

[wrap]
det_weight = 0.01
roi_weight = 0.1

[train]
detector_pretrain_steps = 1
warmup_steps = 1
rounds = 1
denoiser_steps = 1
detector_steps = 1
batch_size = 2
device = "cpu"
progress = false
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny training run: (run file, output folder)."""
    root = tmp_path_factory.mktemp("run")
    config = root / "tiny.toml"
    config.write_text(RUN_FILE)
    assert main(["train", "--config", str(config), "--out", str(root / "out")]) == 0
    return config, root / "out"


@pytest.mark.parametrize("command", ["train", "evaluate", "denoise", "export", "demo"])
def test_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert "usage: lidplug " + command in capsys.readouterr().out


def test_train_writes_checkpoint_and_model(trained):
    _, out = trained
    for name in ("latest.pt", "denoiser.pt", "log.csv", "history.json", "run.toml"):
        assert (out / name).is_file(), name
    model = torch.jit.load(str(out / "denoiser.pt"))
    assert model(torch.rand(1, 1, 64, 64)).shape == (1, 1, 64, 64)
    assert len(json.loads((out / "history.json").read_text())) == 4  # 1 + 1 + (1 + 1) steps


def test_train_json_run_file(tmp_path):
    import tomllib

    config = tmp_path / "run.json"
    config.write_text(json.dumps(tomllib.loads(RUN_FILE)))
    assert main(["train", "--config", str(config)]) == 0
    assert (tmp_path / "run" / "latest.pt").is_file()  # default --out: the file's stem


def test_train_refuses_to_overwrite_a_checkpoint(trained, capsys):
    config, out = trained
    assert main(["train", "--config", str(config), "--out", str(out)]) == 2
    assert "--resume" in error_line(capsys)


@pytest.mark.parametrize(("text", "expected"), [
    ("[data]\nkind = 'mri'\n", "kind"),
    ("[data]\nkind = 'phantom'\n[trian]\nrounds = 1\n", "unknown table"),
    ("[data]\nkind = 'phantom'\n[train]\nrounds = -1\n", "rounds"),
    ("[data]\nkind = 'phantom'\n[wrap]\nroi_wieght = 1\n", "roi_wieght"),
    ("[data]\nkind = 'deeplesion'\nroot = 'nowhere'\n", "root"),
    ("[data\n", "TOML"),
    ("[data]\nkind = 'phantom'\n[denoiser]\nname = 'nope'\n", "create_denoiser"),
])
def test_train_user_errors(tmp_path, capsys, text, expected):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    assert expected in error_line(capsys)


def test_train_missing_run_file(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "none.toml")]) == 2
    assert "none.toml" in error_line(capsys)


def test_evaluate(trained, tmp_path, capsys):
    config, out = trained
    target = tmp_path / "metrics.json"
    assert main(["evaluate", "--config", str(config), "--checkpoint", str(out / "latest.pt"),
                 "--out", str(target), "--resamples", "10"]) == 0
    metrics = json.loads(target.read_text())
    assert list(metrics) == ["low_dose", "denoised"]
    assert set(metrics["denoised"]["psnr"]) == {"mean", "low", "high"}
    assert list(metrics["denoised"]["froc_sensitivity"]) == ["0.125", "0.25", "0.5", "1", "2",
                                                             "4", "8"]
    assert "denoised" in capsys.readouterr().out


def test_evaluate_user_error(trained, tmp_path, capsys):
    config, _ = trained
    assert main(["evaluate", "--config", str(config), "--checkpoint",
                 str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt" in error_line(capsys)


def test_export(trained, tmp_path):
    config, out = trained
    target = tmp_path / "exported.pt"
    assert main(["export", str(target), "--config", str(config), "--checkpoint",
                 str(out / "latest.pt")]) == 0
    model = torch.jit.load(str(target))
    x = torch.rand(1, 1, 64, 64)
    assert torch.allclose(model(x), torch.jit.load(str(out / "denoiser.pt"))(x), atol=1e-5)


def test_export_user_error(trained, capsys):
    config, out = trained
    # The output exists already (the checkpoint itself): refused without --overwrite.
    assert main(["export", str(out / "denoiser.pt"), "--config", str(config), "--checkpoint",
                 str(out / "latest.pt")]) == 2
    assert "--overwrite" in error_line(capsys)


@pytest.fixture
def series(tmp_path):
    if not CT_SMALL.is_file():
        pytest.skip("CT_small.dcm is not shipped with the installed pydicom")
    return ct_small_series(tmp_path / "series", 2)


def test_denoise_series(trained, series, tmp_path, capsys):
    _, out = trained
    target = tmp_path / "denoised"
    assert main(["denoise", str(series), str(target), "--model", str(out / "denoiser.pt")]) == 0
    files = sorted(target.glob("*.dcm"))
    assert len(files) == 2
    ds = pydicom.dcmread(files[0])
    assert "DERIVED" in ds.ImageType and "lidplug denoised" in ds.SeriesDescription
    assert "wrote 2 slice(s)" in capsys.readouterr().out


def test_denoise_user_errors(trained, series, tmp_path, capsys):
    _, out = trained
    assert main(["denoise", str(series), str(tmp_path / "o"), "--model",
                 str(tmp_path / "nope.pt")]) == 2
    assert "nope.pt" in error_line(capsys)
    assert main(["denoise", str(series), str(series / "inside"), "--model",
                 str(out / "denoiser.pt")]) == 2
    assert "inside" in error_line(capsys)


def test_console_script_error_is_one_line(tmp_path):
    # As a program (python -m lidplug.cli): the commands' CLIError must still be caught there.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    run = subprocess.run([sys.executable, "-m", "lidplug.cli", "demo", "--out", str(blocker)],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "Traceback" not in run.stderr
