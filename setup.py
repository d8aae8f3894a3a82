"""Builds lidplug and its compiled ops library, ``lidplug._C``.

``lidplug._C`` is a CUDAExtension when a CUDA toolkit and a CUDA build of torch are present,
a CppExtension otherwise. ``LIDPLUG_CUDA=1`` forces CUDA (and fails without a toolkit),
``LIDPLUG_CUDA=0`` disables it. ``LIDPLUG_NO_EXTENSION=1`` skips compiling altogether: the ops
are then compiled on first use (see ``lidplug/ops/_extension.py``).

Without a GPU to ask, the CUDA code is built for Ampere and Hopper (+PTX for newer cards);
``TORCH_CUDA_ARCH_LIST`` overrides that.
"""

import glob
import os
import runpy
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
CSRC = ROOT / "csrc"
# Build helpers shared with the first-use (JIT) build, defined once in the package.
_HELPERS = runpy.run_path(str(ROOT / "lidplug" / "ops" / "_extension.py"))


def _want_cuda():
    import torch
    from torch.utils.cpp_extension import CUDA_HOME

    flag = os.environ.get("LIDPLUG_CUDA", "").strip().lower()
    if flag in {"0", "false", "no", "off"}:
        return False
    available = torch.version.cuda is not None and CUDA_HOME is not None
    if flag in {"1", "true", "yes", "on"}:
        if not available:
            raise RuntimeError(
                "LIDPLUG_CUDA=1 asks for the CUDA kernels, but "
                f"torch.version.cuda={torch.version.cuda!r} and CUDA_HOME={CUDA_HOME!r}"
            )
        return True
    return available


def _extensions():
    if os.environ.get("LIDPLUG_NO_EXTENSION", "") == "1":
        return [], {}
    _HELPERS["prefer_cuda_toolkit_home"]()  # before cpp_extension reads CUDA_HOME
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    sources = sorted(glob.glob("csrc/ops/*.cpp") + glob.glob("csrc/ops/cpu/*.cpp"))
    # No -std flag: torch.utils.cpp_extension picks the standard this torch needs (C++17 or 20).
    # -fopenmp: at::parallel_for is a header template that runs serially without it.
    cxx = ["-O3", "-fopenmp"]
    if _want_cuda():
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")
        sources += sorted(glob.glob("csrc/ops/cuda/*.cu"))
        ext = CUDAExtension(
            "lidplug._C",
            sources,
            include_dirs=_HELPERS["cuda_include_dirs"](),
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3"]},
            extra_link_args=["-fopenmp"],
        )
    else:
        ext = CppExtension("lidplug._C", sources, extra_compile_args={"cxx": cxx},
                           extra_link_args=["-fopenmp"])
    return [ext], {"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)}


class _BuildPyWithSources(build_py):
    """Ships ``csrc/`` inside the package so an install can still JIT-compile the ops."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "lidplug" / "_csrc"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(CSRC, target)


ext_modules, cmdclass = _extensions()
cmdclass["build_py"] = _BuildPyWithSources
setup(ext_modules=ext_modules, cmdclass=cmdclass)
