"""Finds, or builds, the compiled ops library and registers it with the dispatcher.

Order of preference:
1. ``lidplug._C``, compiled by ``pip install`` (setup.py), loaded by ``import lidplug``
   (:func:`load_prebuilt`) so that ``torch.ops.lidplug.*`` exist from then on;
2. a just-in-time build of ``csrc/`` with ``torch.utils.cpp_extension.load`` (ninja), cached in
   ``$LIDPLUG_EXTENSION_DIR`` (default: torch's extension cache), for installs that skipped it;
   it takes minutes, so it waits for the first use of the ops;
3. nothing: the ops fall back to the pure-PyTorch reference, after one warning that says why
   and how to fix it.

``LIDPLUG_DISABLE_EXTENSION=1`` forces the fallback and ``LIDPLUG_FORCE_JIT=1`` skips the
prebuilt library (both for tests of those paths).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings
from pathlib import Path

import torch

__all__ = ["cuda_include_dirs", "extension_available", "extension_error", "library_path",
           "load_prebuilt", "prefer_cuda_toolkit_home"]

_PACKAGE = Path(__file__).resolve().parent.parent
_state: dict[str, str | None] = {"error": None, "path": None}


def _source_dir() -> Path | None:
    # An installed wheel carries the sources in lidplug/_csrc; a checkout has them beside the package.
    for candidate in (_PACKAGE / "_csrc", _PACKAGE.parent / "csrc"):
        if (candidate / "ops" / "roi_ops.cpp").is_file():
            return candidate
    return None


def prefer_cuda_toolkit_home() -> None:
    """Points CUDA_HOME at ``/usr/local/cuda`` when the user set none and it exists.

    torch guesses CUDA_HOME from the ``nvcc`` on PATH; where that is a wrapper script (for
    example ``/usr/local/bin/nvcc``), the guess is ``/usr/local`` and linking ``-lcudart`` fails.
    Must run before ``torch.utils.cpp_extension`` is first imported.
    """
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    if Path("/usr/local/cuda/bin/nvcc").is_file():
        os.environ["CUDA_HOME"] = "/usr/local/cuda"


def cuda_include_dirs() -> list[str]:
    """Header folders of the CUDA libraries that come as pip wheels (nvidia-*).

    torch's CUDA headers include cuSPARSE, cuBLAS and cuSOLVER headers, which a CUDA build of
    torch from pip ships in ``site-packages/nvidia/*/include`` rather than in the toolkit that
    nvcc comes from; a minimal toolkit (compiler and runtime only) lacks them.
    """
    try:
        import nvidia
    except ImportError:
        return []
    dirs = []
    for root in nvidia.__path__:
        dirs += sorted(str(p) for p in Path(root).glob("*/include") if p.is_dir())
    return dirs


def _load_prebuilt() -> str | None:
    spec = importlib.util.find_spec("lidplug._C")
    if spec is None or spec.origin is None:
        return None
    torch.ops.load_library(spec.origin)
    return spec.origin


def _jit_build() -> str:
    prefer_cuda_toolkit_home()
    from torch.utils.cpp_extension import CUDA_HOME, load

    src = _source_dir()
    if src is None:
        raise RuntimeError(f"no C++ sources found next to {_PACKAGE}")
    sources = sorted(str(p) for p in (src / "ops").glob("*.cpp"))
    sources += sorted(str(p) for p in (src / "ops" / "cpu").glob("*.cpp"))
    with_cuda = torch.cuda.is_available() and CUDA_HOME is not None
    if with_cuda:
        sources += sorted(str(p) for p in (src / "ops" / "cuda").glob("*.cu"))
    build_dir = os.environ.get("LIDPLUG_EXTENSION_DIR")
    if build_dir:
        os.makedirs(build_dir, exist_ok=True)
    load(
        name="lidplug_ops_cuda" if with_cuda else "lidplug_ops",
        sources=sources,
        extra_cflags=["-O3", "-fopenmp"],  # at::parallel_for is serial without OpenMP
        extra_ldflags=["-fopenmp"],
        extra_cuda_cflags=["-O3"],
        extra_include_paths=cuda_include_dirs() if with_cuda else None,
        build_directory=build_dir,
        is_python_module=False,
        verbose=False,
    )
    return "jit:" + ",".join(Path(s).name for s in sources)


def _activate(path: str) -> None:
    # The library registered the schemas, kernels and autograd; Python adds the fake kernels.
    from lidplug.ops._register import register

    register()
    _state["path"] = path


def _loaders() -> tuple[tuple, str | None]:
    """The ways allowed to get the library, in order, and why there are none (the switches)."""
    if os.environ.get("LIDPLUG_DISABLE_EXTENSION", "") == "1":
        return (), "LIDPLUG_DISABLE_EXTENSION=1 is set"
    if os.environ.get("LIDPLUG_FORCE_JIT", "") == "1":
        return (_jit_build,), None
    return (_load_prebuilt, _jit_build), None


def _registering(loader) -> str | None:
    """Run ``loader``; its library's path when that registered the ops, else None (raises what
    the loader raises)."""
    path = loader()
    return path if path is not None and hasattr(torch.ops.lidplug, "roi_perceptual_loss") \
        else None


def load_prebuilt() -> None:
    """Loads ``lidplug._C`` and registers the ops' Python parts, when that library is installed.

    Run by ``import lidplug``, so that TorchScript, ``torch.compile``, ``torch.export`` and models
    that call ``torch.ops.lidplug.*`` find the ops right after the import, as torchvision's do.
    Never raises and never builds: a missing or broken library is reported, and the first-use
    build tried, when the ops are first used (:func:`extension_available`).
    """
    if _load_prebuilt not in _loaders()[0]:
        return
    try:
        path = _registering(_load_prebuilt)
    except Exception:  # reported with its reason by the first use, which tries again
        return
    if path is not None:
        _activate(path)


@functools.cache
def _load() -> bool:
    if _state["path"] is not None:  # loaded at import
        return True
    loaders, reason = _loaders()
    errors = [reason] if reason else []
    for loader in loaders:
        try:
            path = _registering(loader)
        except Exception as exc:  # any build or load failure means: try the next way
            errors.append(f"{loader.__name__.strip('_')}: {type(exc).__name__}: {exc}")
            continue
        if path is not None:
            _activate(path)
            return True
    _state["error"] = "; ".join(errors) or "no compiled library found"
    warnings.warn(
        "lidplug: the compiled ops are unavailable, so lidplug.ops runs its pure-PyTorch "
        f"reference (slower, same results). Why: {_state['error']}. Fix: reinstall with "
        "`pip install --no-build-isolation .` on a machine with a C++17 compiler and ninja, "
        "or set LIDPLUG_EXTENSION_DIR to a writable folder for the first-use build.",
        RuntimeWarning,
        stacklevel=3,
    )
    return False


def extension_available() -> bool:
    """Whether ``torch.ops.lidplug.*`` is registered (loading or building it on first call)."""
    return _load()


def extension_error() -> str | None:
    """Why the compiled ops are unavailable, or None when they are loaded."""
    _load()
    return _state["error"]


def library_path() -> str | None:
    """The shared library that registered the ops (``jit:...`` for a first-use build)."""
    _load()
    return _state["path"]
