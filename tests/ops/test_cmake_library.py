"""The CMake build (CMakeLists.txt) and the CUDA build, as CI produces them."""

import os
import subprocess
import sys

import pytest
import torch

from lidplug.ops import extension_available, library_path


@pytest.mark.skipif("LIDPLUG_CMAKE_LIBRARY" not in os.environ,
                    reason="set LIDPLUG_CMAKE_LIBRARY to a CMake-built liblidplug_ops.so")
def test_cmake_library_registers_the_ops_for_libtorch_users():
    # A fresh process that never imports lidplug: what a C++/TorchScript user gets.
    code = (
        "import sys, torch\n"
        "torch.ops.load_library(sys.argv[1])\n"
        "f = [torch.randn(1, 2, 16, 16)]\n"
        "rois = torch.tensor([[0., 1., 1., 9., 9.]])\n"
        "print(torch.ops.lidplug.roi_pool(f, rois, [0.5], 3, 3, 2, False).shape)\n"
        "print(float(torch.ops.lidplug.roi_perceptual_loss(f, f, rois, [0.5])))\n"
        "print('CUDA: registered' in torch._C._dispatch_dump('lidplug::roi_pool'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, os.environ["LIDPLUG_CMAKE_LIBRARY"]],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[:2] == ["torch.Size([1, 2, 3, 3])", "0.0"]
    if os.environ.get("LIDPLUG_EXPECT_CUDA_KERNELS") == "1":
        assert lines[2] == "True", "expected the CMake library built with its CUDA kernels"


@pytest.mark.skipif(os.environ.get("LIDPLUG_EXPECT_CUDA_KERNELS") != "1",
                    reason="set LIDPLUG_EXPECT_CUDA_KERNELS=1 where the build must include CUDA")
def test_installed_extension_has_cuda_kernels():
    assert extension_available()
    assert not library_path().startswith("jit:"), "expected the extension compiled at install"
    dump = torch._C._dispatch_dump("lidplug::_roi_perceptual_loss_forward")
    assert "\nCUDA: registered" in dump, dump


@pytest.mark.slow
def test_first_use_build_when_no_compiled_extension(tmp_path):
    # An install without lidplug._C compiles the shipped sources with ninja on first use.
    code = (
        "import torch\n"
        "from lidplug import ops\n"
        "assert ops.extension_available(), ops.extension_error()\n"
        "assert ops.library_path().startswith('jit:'), ops.library_path()\n"
        "f = [torch.randn(1, 2, 16, 16, requires_grad=True)]\n"
        "loss = ops.roi_perceptual_loss(f, [torch.zeros(1, 2, 16, 16)],\n"
        "                               torch.tensor([[0., 1., 1., 9., 9.]]), 3, 0.5)\n"
        "loss.backward()\n"
        "assert f[0].grad.abs().sum() > 0\n"
        "print('jit-ok')\n"
    )
    env = dict(os.environ, LIDPLUG_FORCE_JIT="1", LIDPLUG_EXTENSION_DIR=str(tmp_path),
               CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "jit-ok" in out.stdout
