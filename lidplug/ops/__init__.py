"""Fused ROI ops, registered with the dispatcher as ``torch.ops.lidplug.*``.

``roi_pool`` is RoIAlign over one level or a whole FPN pyramid; ``roi_perceptual_loss`` is the
mean squared difference of two pyramids' RoIAlign features, fused. The compiled library is
loaded by ``import lidplug`` (or built on first use where no compiled library was installed);
``extension_available()`` says whether it is in use.

The names below load their modules on first access: ``import lidplug`` imports this package to
load the library, and should not pull in torchvision (the reference and the public functions
import it) for that.
"""

import importlib

# Public name -> the module that defines it.
_NAMES = {
    "RoIPerceptualLoss": "lidplug.ops.roi",
    "RoIPyramidAlign": "lidplug.ops.roi",
    "extension_available": "lidplug.ops._extension",
    "extension_error": "lidplug.ops._extension",
    "library_path": "lidplug.ops._extension",
    "roi_perceptual_loss": "lidplug.ops.roi",
    "roi_perceptual_loss_reference": "lidplug.ops._reference",
    "roi_pool": "lidplug.ops.roi",
    "roi_pool_reference": "lidplug.ops._reference",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'lidplug.ops' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
