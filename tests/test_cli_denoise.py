"""``lidplug denoise``: every way it can fail is one line (exit status 2), never a traceback.

Models are small registry denoisers exported here (RED-CNN needs 21x21 pixels at least);
slices are pydicom's CT_small.dcm (128x128) or synthetic CT from ``dicom_factory``.
"""

from __future__ import annotations

import errno
import json
import pickle
import re
import zipfile

import numpy as np
import pydicom
import pytest
import torch
from cli_checks import error_line
from dicom_factory import (
    CT_SMALL,
    corrupt_vr,
    ct_dataset,
    ct_small_series,
    fill_disk_on_file,
    save_dataset,
)

from lidplug.cli import main
from lidplug.deploy import DeployedDenoiser, export, read_metadata
from lidplug.models import create_denoiser


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """RED-CNN with 4 channels as TorchScript (.pt) and torch.export (.pt2)."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    redcnn = create_denoiser("redcnn", channels=4)
    for suffix in (".pt", ".pt2"):
        export(redcnn, root / f"redcnn{suffix}")
    return root


@pytest.fixture
def series(tmp_path):
    if not CT_SMALL.is_file():
        pytest.skip("CT_small.dcm is not shipped with the installed pydicom")
    return ct_small_series(tmp_path / "series", 3)


def _denoise(src, out, model, *extra):
    return main(["denoise", str(src), str(out), "--model", str(model), *extra])


def test_denoise_a_series(models, series, tmp_path, capsys):
    assert _denoise(series, tmp_path / "out", models / "redcnn.pt") == 0
    assert "wrote 3 slice(s)" in capsys.readouterr().out
    assert len(list((tmp_path / "out").glob("*.dcm"))) == 3


@pytest.mark.parametrize("suffix", [".pt", ".pt2"])
def test_a_slice_smaller_than_the_model_accepts(models, tmp_path, capsys, suffix):
    # Before: a 55-line torch.jit.Error traceback (.pt) or AssertionError 'Guard failed' (.pt2).
    small = save_dataset(ct_dataset(np.zeros((16, 16), np.int16)), tmp_path / "in" / "small.dcm")
    assert _denoise(small, tmp_path / "out", models / f"redcnn{suffix}") == 2
    line = error_line(capsys)
    minimum = 21 if suffix == ".pt" else 22  # torch.export specialises a size-1 intermediate
    assert (f"cannot denoise {small} (1 slice(s) of 16x16 pixels): lidplug denoiser: expected "
            f"slices of at least {minimum}x{minimum} pixels, got 16x16") in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("failure", "match"), [
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
     r"failed on .* \(3 slice\(s\) of 128x128 pixels\): RuntimeError: CUDA out of memory"),
    (torch.full((3, 1, 128, 128), float("nan")),
     r"expected finite values, got NaN or inf in slice\(s\) \[0, 1, 2\] .*nothing was written"),
    (torch.zeros(3, 1, 124, 124),
     r"expected the denoised slices in the input's shape \[3, 1, 128, 128\], got \[3, 1, 124, 124\]"),
], ids=["out-of-memory", "nan", "other-shape"])
def test_other_model_failures(models, series, tmp_path, capsys, monkeypatch, failure, match):
    def denoise_hu(self, hu):
        if isinstance(failure, Exception):
            raise failure
        return failure[: len(hu)]

    monkeypatch.setattr(DeployedDenoiser, "denoise_hu", denoise_hu)
    assert _denoise(series, tmp_path / "out", models / "redcnn.pt") == 2
    assert re.search(match, error_line(capsys))
    assert not (tmp_path / "out").exists()


def test_an_unreadable_file_of_the_folder_is_skipped_and_listed(models, tmp_path, capsys):
    # An unknown VR on the last element (PixelData) escaped read_dicom as NotImplementedError
    # and aborted the whole folder before.
    series = tmp_path / "series"
    for k in range(3):  # explicit VR, so that corrupt_vr hits a VR
        save_dataset(ct_dataset(np.full((32, 32), 1000 + k, np.int16), z=2.0 * k), series / f"{k}.dcm")
    bad = series / "zz.dcm"
    bad.write_bytes((series / "0.dcm").read_bytes())
    corrupt_vr(bad, 0x7FE0, 0x0010)
    assert _denoise(series, tmp_path / "out", models / "redcnn.pt") == 1
    captured = capsys.readouterr()
    assert "wrote 3 slice(s)" in captured.out and "Traceback" not in captured.err
    assert "1 file(s) of" in captured.err
    assert "  zz.dcm: malformed header value: NotImplementedError: Unknown Value Representation 'QQ'" in captured.err
    assert len(list((tmp_path / "out").glob("*.dcm"))) == 3


def _with_metadata(src, dst, edit):
    meta = read_metadata(src)
    edit(meta)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            zout.writestr(item, json.dumps(meta) if item.filename.endswith("/lidplug.json") else data)
    return dst


def test_an_export_missing_its_archive_key(models, series, tmp_path, capsys):
    # Before: a KeyError traceback ('archive').
    model = _with_metadata(models / "redcnn.pt", tmp_path / "edited.pt", lambda m: m.pop("archive"))
    assert _denoise(series, tmp_path / "out", model) == 2
    assert "has an incomplete or invalid lidplug.json: expected 'archive' to be" in error_line(capsys)


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w').close() or ((), {{}})",))


def test_a_crafted_pt2_runs_no_code(models, series, tmp_path, capsys):
    # Before: torch's loader unpickled the sample inputs with weights_only=False: the payload ran.
    marker = tmp_path / "marker"
    crafted = tmp_path / "crafted.pt2"
    with zipfile.ZipFile(models / "redcnn.pt2") as zin, zipfile.ZipFile(crafted, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("/data/sample_inputs/model.pt"):
                data = pickle.dumps(_Payload(marker), protocol=2)
            zout.writestr(item, data)
    assert _denoise(series, tmp_path / "out", crafted) == 2
    line = error_line(capsys)
    assert "refusing" in line and "sample inputs are not plain tensors" in line
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("what", ["checkpoint", "junk"])
def test_a_model_that_is_no_export(models, series, tmp_path, capsys, what):
    model = tmp_path / "model.pt"
    if what == "checkpoint":
        torch.save({"denoiser": create_denoiser("redcnn", channels=4).state_dict()}, model)
    else:
        model.write_bytes(b"\0" * 100)
    assert _denoise(series, tmp_path / "out", model) == 2
    assert "expected a lidplug export" in error_line(capsys)


def test_a_full_disk_while_writing(models, series, tmp_path, capsys, monkeypatch):
    fill_disk_on_file(monkeypatch, 2)
    out = tmp_path / "out"
    assert _denoise(series, out, models / "redcnn.pt") == 2
    line = error_line(capsys)
    assert f"cannot write {out}: [Errno {errno.ENOSPC}]" in line
    assert "cannot write slice 2 of 3 (No space left on device); the 1 file(s) written before it are complete" in line
    assert sorted(p.name for p in out.iterdir()) == ["0001.dcm"]  # no half file, no temporary one
    assert pydicom.dcmread(out / "0001.dcm").pixel_array.shape == (128, 128)


def test_overwrite_leaves_no_slice_of_the_series_before(models, tmp_path, capsys):
    """Regression: 'denoise --overwrite' into a folder holding a longer series left its last
    slices beside the new ones (two series in one folder)."""
    from lidplug.io import read_dicom

    if not CT_SMALL.is_file():
        pytest.skip("CT_small.dcm is not shipped with the installed pydicom")
    long, short = ct_small_series(tmp_path / "long", 5), ct_small_series(tmp_path / "short", 2)
    out = tmp_path / "out"
    assert _denoise(long, out, models / "redcnn.pt") == 0
    (out / "notes.txt").write_text("not a slice: kept")
    assert _denoise(short, out, models / "redcnn.pt", "--overwrite") == 0
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["0001.dcm", "0002.dcm", "notes.txt"]
    with pytest.warns(UserWarning, match="notes.txt"):  # read, and skipped: not a slice
        image, meta = read_dicom(out)
    assert image.shape[0] == 2 and len({str(d.SeriesInstanceUID) for d in meta.datasets}) == 1


@pytest.mark.parametrize("slope", [0.0, -1.0, 1e6])
def test_an_unphysical_rescale_is_refused(models, tmp_path, capsys, slope):
    """Regression: RescaleSlope 0 (every pixel -1024 HU) was denoised and written, exit 0."""
    stored = np.full((64, 64), 1000, np.int16)
    save_dataset(ct_dataset(stored, slope=slope), tmp_path / "in" / "a.dcm")
    assert _denoise(tmp_path / "in" / "a.dcm", tmp_path / "out", models / "redcnn.pt") == 2
    assert re.search("RescaleSlope|expected HU within", error_line(capsys))
    assert not (tmp_path / "out").exists()


def test_a_long_model_name_is_cut_to_fit_the_series_description(series, tmp_path, capsys):
    """Regression: a model name too long for the 64 characters of SeriesDescription made
    'denoise' fail after denoising."""
    long_name = type("A" * 80 + "Denoiser", (torch.nn.Module,), {
        "__init__": lambda self: (torch.nn.Module.__init__(self),
                                  setattr(self, "conv", torch.nn.Conv2d(1, 1, 1)))[0],
        "forward": lambda self, x: x + 0 * self.conv(x)})
    export(long_name(), tmp_path / "long.pt")
    assert _denoise(series, tmp_path / "out", tmp_path / "long.pt") == 0
    capsys.readouterr()
    description = str(pydicom.dcmread(tmp_path / "out" / "0001.dcm").SeriesDescription)
    assert len(description) <= 64 and "lidplug denoised (AAAA" in description
