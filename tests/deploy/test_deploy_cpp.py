"""The C++ program lidplug_denoise (CMakeLists.txt, examples/cpp) against Python's output.

Skipped unless LIDPLUG_DENOISE_BIN points to the built program (CI sets it after its CMake build).
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
import torch
from deploy_models import OpsDenoiser, ScriptableDenoiser

from lidplug.deploy import export, hu_like_slices, load

BIN = os.environ.get("LIDPLUG_DENOISE_BIN")
pytestmark = pytest.mark.skipif(not BIN, reason="set LIDPLUG_DENOISE_BIN to a built lidplug_denoise")

# Python and C++ run the same TorchScript graph on the same libtorch: equal within 1e-4 in window
# units, i.e. 1e-4 x the window's 4096 HU span for HU outputs.
ATOL = 1e-4


def _run(*args):
    return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("cpp")
    torch.manual_seed(0)
    paths = {}
    for name, model in [("plain", ScriptableDenoiser()), ("ops", OpsDenoiser())]:
        paths[name] = root / f"{name}.pt"
        export(model, paths[name])
    return paths


@pytest.fixture(scope="module")
def hu_slice():
    return hu_like_slices((2, 1, 96, 80), generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize(("name", "units", "layout"), [
    ("plain", "hu", "npy-hw"), ("plain", "window", "npy-bhw"), ("plain", "hu", "raw"),
    ("ops", "hu", "npy-bchw"), ("ops", "window", "raw"),
])
def test_cpp_output_equals_python(tmp_path, models, hu_slice, name, units, layout):
    model = load(models[name])
    data = hu_slice if units == "hu" else model.window(hu_slice)
    with torch.no_grad():
        expected = model.denoise_hu(data) if units == "hu" else model(data)
    array = data.numpy()
    shape_arg = []
    if layout == "npy-hw":
        array, expected = array[0, 0], expected[:1]
    elif layout == "npy-bhw":
        array = array[:, 0]
    if layout == "raw":
        src, dst = tmp_path / "in.raw", tmp_path / "out.raw"
        array.astype("<f4").tofile(src)
        shape_arg = ["--shape", "x".join(map(str, array.shape))]
    else:
        src, dst = tmp_path / "in.npy", tmp_path / "out.npy"
        np.save(src, np.ascontiguousarray(array, dtype="<f4"))
    out = _run(models[name], src, dst, "--units", units, *shape_arg)
    assert out.returncode == 0, out.stderr
    got = np.fromfile(dst, dtype="<f4").reshape(array.shape) if layout == "raw" else np.load(dst)
    assert got.shape == array.shape and got.dtype == np.float32
    scale = 4096.0 if units == "hu" else 1.0
    np.testing.assert_allclose(got.reshape(expected.shape), expected.numpy(), rtol=0,
                               atol=ATOL * scale)


def test_cpp_bad_input(tmp_path, models):
    good = tmp_path / "in.npy"
    np.save(good, np.zeros((16, 16), dtype=np.float32))
    np.save(tmp_path / "f64.npy", np.zeros((16, 16)))
    np.save(tmp_path / "fortran.npy", np.asfortranarray(np.zeros((16, 8), dtype=np.float32)))
    np.save(tmp_path / "4d3c.npy", np.zeros((1, 3, 8, 8), dtype=np.float32))
    (tmp_path / "in.raw").write_bytes(b"\0" * 100)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    torch.save({"w": torch.zeros(1)}, tmp_path / "ckpt.pt")
    out = tmp_path / "out.npy"
    cases = [
        ((models["plain"], tmp_path / "f64.npy", out), 1, "expected dtype float32 little-endian ('<f4'), got '<f8'"),
        ((models["plain"], tmp_path / "fortran.npy", out), 1, "expected C order"),
        ((models["plain"], tmp_path / "4d3c.npy", out), 1, "expected a Tensor[B, 1, H, W], got shape [1, 3, 8, 8]"),
        ((models["plain"], tmp_path / "in.raw", out, "--shape", "16x16"), 1, "expected 1024 bytes (float32, shape (16, 16)), got 100"),
        ((models["plain"], tmp_path / "in.raw", out), 2, "needs --shape"),
        ((models["plain"], good, out, "--shape", "16xa"), 2, "expected --shape as positive sizes"),
        ((models["plain"], good, out, "--units", "mu"), 2, "expected --units hu or window, got 'mu'"),
        ((models["plain"], good, out, "--shape", "8x8"), 2, "does not match the .npy's shape (16, 16)"),
        ((models["plain"], tmp_path / "missing.npy", out), 1, "cannot open"),
        ((tmp_path / "missing.pt", good, out), 1, "cannot open model"),
        ((tmp_path / "junk.pt", good, out), 1, "cannot load"),
        ((tmp_path / "ckpt.pt", good, out), 1, "cannot load"),
        ((models["plain"], good), 2, "expected MODEL INPUT OUTPUT"),
    ]
    for args, code, message in cases:
        result = _run(*args)
        assert result.returncode == code, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Segmentation" not in result.stderr


@pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning")
def test_cpp_rejects_torchscript_that_lidplug_did_not_write(tmp_path):
    torch.jit.save(torch.jit.script(ScriptableDenoiser()), tmp_path / "plain.pt")
    np.save(tmp_path / "in.npy", np.zeros((16, 16), dtype=np.float32))
    result = _run(tmp_path / "plain.pt", tmp_path / "in.npy", tmp_path / "out.npy")
    assert result.returncode == 1 and "not a lidplug export" in result.stderr, result.stderr
