"""lidplug: lesion-aware training for any CT denoiser (the LIDnet method as a plugin).

    from lidplug import wrap
    model = wrap(my_denoiser, my_detector)   # any nn.Module denoiser, any torchvision detector

The import loads one thing eagerly: the compiled ops library (``lidplug._C``, when installed),
so that ``torch.ops.lidplug.roi_pool`` and the other ops exist right after ``import lidplug``,
as torchvision's ops do after ``import torchvision``. TorchScript and exported models that call
them, ``torch.compile`` and C++-style callers of ``torch.ops`` need them registered before any
lidplug function runs. That costs importing torch; a first-use build of the ops (no compiled
library installed) takes minutes, and still waits for their first use.

Everything else loads on first access, so ``import lidplug`` (and the CLI's ``--help``) stays as
light as torch itself: ``lidplug.ops``' functions pull in torchvision, ``lidplug.io`` pydicom,
and so on.
"""

import importlib

from lidplug.ops._extension import load_prebuilt as _load_prebuilt_ops
from lidplug.version import __version__

_load_prebuilt_ops()

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
