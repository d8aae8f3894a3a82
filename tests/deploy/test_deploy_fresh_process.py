"""An export runs in a fresh process that never imports lidplug: plain torch.jit.load.

A model whose graph calls torch.ops.lidplug.* needs the ops library loaded first
(``torch.ops.load_library``), which is what the docs of lidplug.deploy say; without it the load
fails naming the op.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from deploy_models import OpsDenoiser, ScriptableDenoiser

from lidplug.deploy import export, hu_like_slices
from lidplug.ops import extension_available, extension_error, library_path

_CHECK = """
import sys, warnings
import torch
warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
plain, ops, data, library = sys.argv[1:]
x, expected_plain, expected_ops, hu, expected_hu = torch.load(data, weights_only=True)
extra = {"lidplug.json": ""}
model = torch.jit.load(plain, _extra_files=extra)
assert b'"format": "lidplug-denoiser"' in extra["lidplug.json"]
assert torch.allclose(model(x), expected_plain, atol=1e-6, rtol=0)
assert torch.allclose(model.denoise_hu(hu), expected_hu, atol=1e-3, rtol=0)
try:
    torch.jit.load(ops)
    print("ops model loaded without its library")
except RuntimeError as exc:
    print("without library:", " ".join(str(exc).split())[:400])
torch.ops.load_library(library)
assert torch.allclose(torch.jit.load(ops)(x), expected_ops, atol=1e-6, rtol=0)
assert not [m for m in sys.modules if m.startswith("lidplug")]
print("fresh-process-ok")
"""


def test_plain_torch_jit_load_in_a_fresh_process(tmp_path):
    assert extension_available(), extension_error()
    if library_path().startswith("jit:"):
        pytest.skip("the ops were built on first use; no single library file to load")
    plain, ops = ScriptableDenoiser().eval(), OpsDenoiser().eval()
    export(plain, tmp_path / "plain.pt")
    export(ops, tmp_path / "ops.pt")
    hu = hu_like_slices((2, 1, 40, 48))
    x = (hu + 1024.0) / 4096.0
    with torch.no_grad():
        expected_hu = plain(x) * 4096.0 - 1024.0
        torch.save((x, plain(x), ops(x), hu, expected_hu), tmp_path / "data.pt")
    out = subprocess.run(
        [sys.executable, "-c", _CHECK, str(tmp_path / "plain.pt"), str(tmp_path / "ops.pt"),
         str(tmp_path / "data.pt"), library_path()],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "fresh-process-ok" in out.stdout
    assert "without library:" in out.stdout and "lidplug::roi_pool" in out.stdout, out.stdout
