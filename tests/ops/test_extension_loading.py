"""When the compiled ops get registered: at ``import lidplug``, as torchvision registers its ops."""

import os
import subprocess
import sys

import pytest

from lidplug.ops import extension_available, extension_error, library_path

_AT_IMPORT = """
import sys
import lidplug
import torch
assert hasattr(torch.ops.lidplug, "roi_pool"), "torch.ops.lidplug.roi_pool missing after import"
f = torch.randn(1, 2, 16, 16, requires_grad=True)
rois = torch.tensor([[0.0, 1.0, 1.0, 9.0, 9.0]])
out = torch.ops.lidplug.roi_pool([f], rois, [0.5], 3, 3, 2, False)
out.sum().backward()  # the autograd formula is registered with the library
assert f.grad.abs().sum() > 0
meta = torch.ops.lidplug.roi_pool([f.to("meta")], rois.to("meta"), [0.5], 3, 3, 2, False)
assert meta.shape == (1, 2, 3, 3)  # so are the fake kernels
# Still light: the library and its registration, not the package's other modules.
light = {"lidplug", "lidplug.version", "lidplug.ops", "lidplug.ops._extension",
         "lidplug.ops._register", "lidplug.ops._inputs"}
heavy = sorted(m for m in sys.modules
               if m.startswith("torchvision") or (m.startswith("lidplug") and m not in light))
assert not heavy, heavy
print("registered-at-import")
"""

_DISABLED = """
import lidplug
import torch
assert not hasattr(torch.ops.lidplug, "roi_pool"), "loaded despite LIDPLUG_DISABLE_EXTENSION=1"
print("not-loaded")
"""


def _run(code, cwd, **env):
    # Run outside the checkout: `python -c` puts the working folder first on sys.path, which
    # would import the source tree's lidplug (no compiled library) instead of the installed one.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, **env), cwd=cwd)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_ops_are_registered_right_after_import(tmp_path):
    assert extension_available(), extension_error()
    if library_path().startswith("jit:"):
        pytest.skip("no prebuilt library (the ops were built on first use, which import defers)")
    assert "registered-at-import" in _run(_AT_IMPORT, tmp_path)


def test_import_respects_disable_extension(tmp_path):
    assert "not-loaded" in _run(_DISABLED, tmp_path, LIDPLUG_DISABLE_EXTENSION="1")


_LIBRARY_ALONE = """
import sys
import torch
torch.ops.load_library(sys.argv[1])  # what a libtorch or TorchScript user loads: no lidplug
f = [torch.randn(2, 3, 16, 16, requires_grad=True), torch.randn(2, 3, 8, 8, requires_grad=True)]
ref = [torch.randn(2, 3, 16, 16), torch.randn(2, 3, 8, 8)]
rois = torch.tensor([[0.0, 1.0, 1.0, 30.0, 20.0], [1.0, 2.0, 3.0, 9.0, 9.0]])
loss = torch.ops.lidplug.roi_perceptual_loss(f, ref, rois, [0.5, 0.25])
pooled = torch.ops.lidplug.roi_pool(f, rois, [0.5, 0.25], 3, 3, 2, False)
(loss + pooled.sum()).backward()
assert all(t.grad is not None for t in f) and f[0].grad.abs().sum() > 0
print("autograd-in-library")
"""


def test_the_library_alone_carries_autograd(tmp_path):
    # The backward formulas are registered in C++: a process that loads the library without
    # importing lidplug trains through the ops too.
    assert extension_available(), extension_error()
    if library_path().startswith("jit:"):
        pytest.skip("no prebuilt library to load on its own")
    out = subprocess.run([sys.executable, "-c", _LIBRARY_ALONE, library_path()],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "autograd-in-library" in out.stdout
