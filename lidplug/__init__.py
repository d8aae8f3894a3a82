"""lidplug: lesion-aware training for any CT denoiser (the LIDnet method as a plugin).

    from lidplug import wrap
    model = wrap(my_denoiser, my_detector)   # any nn.Module denoiser, any torchvision detector

Submodules and the top-level names load on first access, so ``import lidplug`` (and the CLI's
``--help``) stays fast: ``lidplug.ops`` pulls in torch's compiler stack, ``lidplug.io`` pydicom,
and so on.
"""

import importlib

from lidplug.version import __version__

_SUBMODULES = ("data", "deploy", "detectors", "io", "losses", "metrics", "models", "ops",
               "simulation", "training")
# Top-level names -> the module that defines them.
_NAMES = {
    "wrap": "lidplug.wrapper",
    "LesionAwareDenoiser": "lidplug.wrapper",
    "WrapConfig": "lidplug.wrapper",
    "CollaborativeTrainer": "lidplug.training",
    "TrainConfig": "lidplug.training",
    "export": "lidplug.deploy",
    "load": "lidplug.deploy",
}

__all__ = ["__version__", *_SUBMODULES, *_NAMES]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"lidplug.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'lidplug' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
