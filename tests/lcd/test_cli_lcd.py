"""``lidplug lcd score`` and ``lidplug lcd phantom`` through ``main([...])``."""

import json
import re
import shutil

import pytest
import torch
from cli_checks import error_line
from lcd_folders import disc_truth, write_layout
from torch import nn

import lidplug
from lidplug.cli import main
from lidplug.lcd import LCDProtocol


def test_score_the_sample(lcd_sample, tmp_path, capsys):
    assert main(["lcd", "score", str(lcd_sample), "--out", str(tmp_path / "out")]) == 0
    out, err = capsys.readouterr()
    assert re.search(r"fbp 100%\s+0\.512\s+0\.356\s+0\.628\s+0\.700", out)  # the toolbox's
    assert "wrote lcd.json, lcd.csv, lcd.html" in out
    assert err.count("note:") == 3  # DL_denoised's offset
    data = json.loads((tmp_path / "out" / "lcd.json").read_text())
    assert data["recons"] == ["fbp", "DL_denoised"] and len(data["results"]) == 24


def test_score_options_reach_the_protocol(tmp_path, capsys):
    root = write_layout(tmp_path / "set", disc_truth(), n=16, doses=(100,))
    args = ["lcd", "score", str(root), "--out", str(tmp_path / "out"), "--readers", "4",
            "--channels", "3", "--channel-width", "0.5", "--roi-size", "31",
            "--train-fraction", "0.75", "--seed", "2", "--offset", "1000"]
    assert main(args) == 0
    protocol = json.loads((tmp_path / "out" / "lcd.json").read_text())["protocol"]
    assert {k: protocol[k] for k in ("readers", "channels", "channel_width", "roi_size",
                                     "train_fraction", "seed")} == {
        "readers": 4, "channels": 3, "channel_width": 0.5, "roi_size": 31,
        "train_fraction": 0.75, "seed": 2}


def test_score_help_states_the_protocols_defaults(capsys):
    assert main(["lcd", "score", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    d = LCDProtocol()
    for option, value in (("channels", d.channels), ("readers", d.readers),
                          ("train-fraction", d.train_fraction), ("seed", d.seed),
                          ("offset", f"{d.offset:g}")):
        assert re.search(rf"--{option} \S+ .*?\(default: {value}\)", text), option
    assert d.channel_width == pytest.approx(2 / 3) and "(default: 2/3)" in text


@pytest.mark.parametrize(("damage", "message"), [
    ("missing_class", "signal_absent is missing"),
    ("no_discs", "expected low-contrast discs"),
    ("even_roi", "roi_size: expected None or an odd int"),
    ("missing_root", "expected a folder in the LCD-CT layout"),
    ("bad_fraction", r"--train-fraction: expected a fraction in \(0, 1\), got '1'"),
])
def test_score_user_errors(tmp_path, capsys, damage, message):
    root = write_layout(tmp_path / "set", disc_truth(contrasts=() if damage == "no_discs"
                                                      else (12.0, 4.0)), doses=(100,))
    extra = []
    if damage == "missing_class":
        shutil.rmtree(root / "fbp" / "dose_100" / "signal_absent")
    elif damage == "even_roi":
        extra = ["--roi-size", "20"]
    elif damage == "missing_root":
        root = tmp_path / "nothing"
    elif damage == "bad_fraction":
        extra = ["--train-fraction", "1"]
    assert main(["lcd", "score", str(root), "--out", str(tmp_path / "out"), *extra]) == 2
    assert re.search(message, error_line(capsys))


@pytest.fixture(scope="module")
def smoothing_model(tmp_path_factory):
    """An exported denoiser (lidplug.export): a 3 x 3 mean, in window units."""
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1 / 9)
    path = tmp_path_factory.mktemp("model") / "mean3.pt"
    lidplug.export(conv, path)
    return path


def test_phantom_with_a_denoiser_then_score(smoothing_model, tmp_path, capsys):
    out = tmp_path / "set"
    args = ["lcd", "phantom", str(out), "--doses", "1.0", "--images", "8",
            "--denoiser", f"smooth={smoothing_model}", "--denoiser", str(smoothing_model)]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert re.search(r"wrote 16 images per recon \(3 recon\(s\)\) .* smooth \d", said)
    assert sorted(p.name for p in out.iterdir()) == ["fbp", "mean3", "smooth"]
    assert main(["lcd", "score", str(out), "--out", str(tmp_path / "scores")]) == 0
    data = json.loads((tmp_path / "scores" / "lcd.json").read_text())
    assert data["recons"] == ["fbp", "mean3", "smooth"] and data["doses"] == [100]
    assert [d["label"] for d in data["discs"]][-1] == "3 HU, 10.0 mm"


@pytest.mark.parametrize(("args", "message"), [
    (["--doses", "0.025", "--images", "8"], "whole percentages"),
    (["--doses", "0", "--images", "8"], r"--doses: expected a fraction of the scan's dose"),
    (["--doses", "1.0", "--images", "0"], "--images: expected a positive integer"),
    (["--doses", "1.0", "--images", "8", "--denoiser", "nothere.pt"],
     "--denoiser nothere.pt: expected an exported model file"),
    (["--doses", "1.0", "--images", "8", "--denoiser", "CKPT"], "lidplug.load: expected"),
    (["--doses", "1.0", "--images", "8", "--pixel-size", "0.5"], "wider than the 200-mm"),
])
def test_phantom_user_errors(tmp_path, capsys, args, message):
    checkpoint = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(1)}, checkpoint)
    args = [str(checkpoint) if a == "CKPT" else a for a in args]
    assert main(["lcd", "phantom", str(tmp_path / "out"), *args]) == 2
    assert re.search(message, error_line(capsys))


def test_phantom_refuses_a_full_folder(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    assert main(["lcd", "phantom", str(tmp_path / "out"), "--doses", "1", "--images", "8"]) == 2
    assert "already exists and is not empty" in error_line(capsys)
