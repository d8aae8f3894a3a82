"""lidplug: lesion-aware training for any CT denoiser (the LIDnet method as a plugin).

Submodules load on first access, so ``import lidplug`` (and the CLI's ``--help``) stays fast:
``lidplug.ops`` pulls in torch's compiler stack, ``lidplug.io`` pydicom, and so on.
"""

import importlib

from lidplug.version import __version__

_SUBMODULES = ("data", "io", "ops", "simulation")

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"lidplug.{name}")
    raise AttributeError(f"module 'lidplug' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
