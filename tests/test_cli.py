"""The ``lidplug`` command line, run through ``main([...])`` (and once as a subprocess)."""

import re
import subprocess
import sys

import numpy as np
import pydicom
import pytest
import torch
from cli_checks import error_line
from dicom_factory import CT_SMALL, corrupt_vr, ct_dataset, ct_small_series, save_dataset
from pydicom import uid
from pydicom.fileset import FileSet

from lidplug.cli import main
from lidplug.data import DeepLesionDataset, PhantomDataset, read_png_hu, write_deeplesion


@pytest.fixture
def series(tmp_path):
    """Three slices of pydicom's shipped CT_small.dcm (128x128 CT) at z = 0, 2, 4 mm."""
    if not CT_SMALL.is_file():
        pytest.skip("CT_small.dcm is not shipped with the installed pydicom")
    return ct_small_series(tmp_path / "series", 3)


@pytest.fixture
def deeplesion(tmp_path):
    """A DeepLesion folder of three 64x64 noise-free phantom slices with lesions."""
    phantoms = PhantomDataset(3, size=64, normal_dose=None, lesion_free_fraction=0.0)
    samples = []
    for i in range(3):
        ph = phantoms.phantom(i)
        samples.append({"normal": ph.hu[None], "meta": {"spacing": (6.0, 6.0)},
                        "target": {"boxes": ph.boxes, "labels": torch.ones(len(ph.hosts))}})
    write_deeplesion(samples, tmp_path / "dl")
    return tmp_path / "dl"


def test_help(capsys):
    assert main(["--help"]) == 0
    assert "simulate" in capsys.readouterr().out
    assert main(["simulate", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--dose" in out and "--method" in out and "--overwrite" in out


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        ([], "required: COMMAND"),
        (["frobnicate"], "invalid choice"),
        (["simulate", "IN"], "required: OUT"),
        (["simulate", "IN", "OUT", "--dose", "1.5"], r"--dose: expected .* \[1e-06, 1\], got '1.5'"),
        (["simulate", "IN", "OUT", "--dose", "none"], "--dose"),
        (["simulate", "IN", "OUT", "--seed", "-3"], "--seed: expected a non-negative integer"),
        (["simulate", "IN", "OUT", "--method", "fast"], "--method"),
        (["simulate", "missing-in", "OUT"], "missing-in: expected an input file or folder"),
    ],
)
def test_user_errors_are_one_line(argv, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "IN").mkdir()
    assert main(argv) == 2
    assert re.search(match, error_line(capsys))


def test_refuses_to_write_into_input_or_over_output(series, tmp_path, capsys):
    assert main(["simulate", str(series), str(series / "low")]) == 2
    assert "refusing to write into the input" in error_line(capsys)
    assert main(["simulate", str(series), str(series)]) == 2
    error_line(capsys)
    assert main(["simulate", str(series / "0.dcm"), str(series), "--overwrite"]) == 2
    assert "refusing" in error_line(capsys)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    assert main(["simulate", str(series), str(tmp_path / "full")]) == 2
    assert "--overwrite" in error_line(capsys)
    assert (tmp_path / "full" / "x").read_text() == "keep me"


def test_unreadable_single_file(tmp_path, capsys):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not dicom at all")
    assert main(["simulate", str(bad), str(tmp_path / "out")]) == 2
    assert "cannot read" in error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_simulate_dicom_series(series, tmp_path, capsys):
    from lidplug.io import read_dicom

    out = tmp_path / "low"
    assert main(["simulate", str(series), str(out), "--dose", "0.1", "--seed", "3"]) == 0
    assert "wrote 3 file(s)" in capsys.readouterr().out
    normal, _ = read_dicom(series)
    low, meta = read_dicom(out)
    assert low.shape == normal.shape == (3, 128, 128)
    assert "0.1 dose" in str(meta.datasets[0].SeriesDescription)
    noise = (low - normal).std().item()
    assert 1 < noise < 500
    again = tmp_path / "again"
    assert main(["simulate", str(series), str(again), "--dose", "0.1", "--seed", "3"]) == 0
    assert torch.equal(read_dicom(again)[0], low)  # seeded: reruns are identical
    # A single file, written as a one-slice series into the output folder.
    assert main(["simulate", str(series / "0.dcm"), str(tmp_path / "one"), "--dose", "0.5"]) == 0
    assert read_dicom(tmp_path / "one")[0].shape == (1, 128, 128)


def test_simulate_deeplesion_folder_continues_past_bad_files(deeplesion, tmp_path, capsys):
    bad = deeplesion / "Images_png" / "000009_01_01" / "001.png"
    bad.parent.mkdir()
    bad.write_bytes(b"\x89PNG broken")
    out = tmp_path / "dl_low"
    assert main(["simulate", str(deeplesion), str(out), "--seed", "2"]) == 1
    captured = capsys.readouterr()
    assert "wrote 3 file(s)" in captured.out
    assert "1 input(s) failed" in captured.err and "000009_01_01/001.png" in captured.err
    assert (out / "DL_info.csv").read_text() == (deeplesion / "DL_info.csv").read_text()
    # The copy holds exactly the low-dose images DeepLesionDataset simulates with that seed.
    ds = DeepLesionDataset(deeplesion, split=None, seed=2)
    for i in range(len(ds)):
        written = read_png_hu(out / ds.records[i]["image"])
        assert (written - ds[i]["low"].round()).abs().max() == 0
        assert not torch.equal(written, ds[i]["normal"])


def test_console_entry_point_runs_as_a_module(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lidplug.cli", "simulate", str(tmp_path / "nope"), "out"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"lidplug: error: {tmp_path / 'nope'}: expected an input file or folder, got nothing there"]


def test_simulate_png_file(deeplesion, tmp_path):
    png = next((deeplesion / "Images_png").rglob("*.png"))
    assert main(["simulate", str(png), str(tmp_path / "low.png"), "--method", "full"]) == 0
    low = read_png_hu(tmp_path / "low.png")
    assert low.shape == read_png_hu(png).shape
    assert not np.array_equal(low.numpy(), read_png_hu(png).numpy())


def _no_traceback(err: str) -> None:
    assert "Traceback" not in err, err


def test_simulate_dicom_folder_continues_past_bad_files(series, tmp_path, capsys):
    (series / "junk.dcm").write_bytes(b"not dicom at all")
    bad = series / "zz_vr.dcm"  # parses, but a header value cannot be decoded
    bad.write_bytes((series / "0.dcm").read_bytes())
    corrupt_vr(bad, 0x0018, 0x0050)
    out = tmp_path / "low"
    assert main(["simulate", str(series), str(out)]) == 1
    captured = capsys.readouterr()
    _no_traceback(captured.err)
    assert "wrote 3 file(s)" in captured.out
    assert "2 input(s) failed" in captured.err
    assert "./junk.dcm: " in captured.err and "./zz_vr.dcm: malformed header value" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["0001.dcm", "0002.dcm", "0003.dcm"]


def test_simulation_refusals_are_reported_per_input(series, tmp_path, capsys):
    root = tmp_path / "study"
    root.mkdir()
    series.rename(root / "good")
    # 6x6 pixels (too small to simulate) and 7-mm pixels (the body would not fit the scanner).
    save_dataset(ct_dataset(np.zeros((6, 6), np.int16)), root / "tiny" / "a.dcm")
    save_dataset(ct_dataset(np.zeros((128, 128), np.int16), spacing=(7.0, 7.0)),
                 root / "huge" / "a.dcm")
    out = tmp_path / "low"
    assert main(["simulate", str(root), str(out)]) == 1
    captured = capsys.readouterr()
    _no_traceback(captured.err)
    assert "wrote 3 file(s)" in captured.out and "2 input(s) failed" in captured.err
    assert "  tiny: hu: expected H, W >= 8" in captured.err
    assert "  huge: source_isocenter_mm: expected more than" in captured.err
    assert len(list((out / "good").iterdir())) == 3
    assert main(["simulate", str(root / "tiny" / "a.dcm"), str(tmp_path / "one")]) == 2
    assert "cannot simulate" in error_line(capsys)


def test_dicomdir_at_the_root_is_ignored(tmp_path, capsys):
    fs = FileSet()
    fs.add(CT_SMALL)
    fs.write(tmp_path / "media")
    assert main(["simulate", str(tmp_path / "media"), str(tmp_path / "low")]) == 0
    captured = capsys.readouterr()
    _no_traceback(captured.err)
    assert "wrote 1 file(s)" in captured.out and "failed" not in captured.err
    assert (tmp_path / "low" / "PT000000" / "ST000000" / "SE000000" / "0001.dcm").is_file()
    assert not (tmp_path / "low" / "0001.dcm").exists()


def test_folder_of_several_series_is_split(series, tmp_path, capsys):
    from lidplug.io import read_dicom

    other = uid.generate_uid()
    for k in range(2):
        ds = pydicom.dcmread(series / f"{k}.dcm")
        ds.SeriesInstanceUID = other
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid.generate_uid()
        ds.save_as(series / f"other{k}.dcm")
    first = str(pydicom.dcmread(series / "2.dcm").SeriesInstanceUID)
    out = tmp_path / "low"
    assert main(["simulate", str(series), str(out)]) == 0
    assert "wrote 5 file(s)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted([first, other])
    assert read_dicom(out / first)[0].shape == (3, 128, 128)
    assert read_dicom(out / other)[0].shape == (2, 128, 128)


@pytest.mark.parametrize("crafted", ["../../victim", "/ABSOLUTE", "a/b", "..", "x\0y", "7" * 300],
                         ids=["dotdot", "absolute", "separator", "parent", "nul", "long"])
def test_series_uids_never_become_paths(series, tmp_path, crafted, capsys):
    """A SeriesInstanceUID is text from a file: it must never steer where files are written
    (regression: '../../victim' wrote outside OUT and replaced a file there)."""
    from lidplug.io import read_dicom

    if crafted == "/ABSOLUTE":
        crafted = str(tmp_path / "victim")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "0001.dcm").write_bytes(b"precious")
    for k in range(2):
        ds = pydicom.dcmread(series / f"{k}.dcm")
        ds.SeriesInstanceUID = crafted
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid.generate_uid()
        ds.save_as(series / f"crafted{k}.dcm")
    out = tmp_path / "work" / "low"
    code = main(["simulate", str(series), str(out)])
    _no_traceback(capsys.readouterr().err)
    assert code == 0
    assert (victim / "0001.dcm").read_bytes() == b"precious"
    assert sorted(p.name for p in victim.iterdir()) == ["0001.dcm"]
    written = sorted(p for p in tmp_path.rglob("*.dcm") if series not in p.parents
                     and victim not in p.parents)
    assert len(written) == 5 and all(out in p.parents for p in written)
    # Every series still lands in a folder of its own under OUT, one level down.
    folders = sorted(p for p in out.iterdir())
    assert len(folders) == 2 and all(f.is_dir() for f in folders)
    assert sorted(len(read_dicom(f)[0]) for f in folders) == [2, 3]


def test_symlinked_folders_are_not_followed(series, tmp_path, capsys):
    """Regression: simulate followed symlinked folders and wrote the same series three times."""
    root = tmp_path / "study"
    root.mkdir()
    series.rename(root / "real")
    (root / "link").symlink_to(root / "real", target_is_directory=True)
    (root / "deeper").mkdir()
    (root / "deeper" / "link").symlink_to(root / "real", target_is_directory=True)
    out = tmp_path / "low"
    assert main(["simulate", str(root), str(out)]) == 0
    assert "wrote 3 file(s)" in capsys.readouterr().out
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.dcm")) == [
        "real/0001.dcm", "real/0002.dcm", "real/0003.dcm"]


def test_a_vanishing_dose_is_refused_naming_it(series, tmp_path, capsys):
    """Regression: --dose 1e-300 was refused with 'got [0.0]'."""
    assert main(["simulate", str(series), str(tmp_path / "low"), "--dose", "1e-300"]) == 2
    assert "1e-300" in error_line(capsys)
