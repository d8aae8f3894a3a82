"""Lesion detectors as the wrapper sees them: the adapter protocol, torchvision's models, input.

* :class:`DetectorAdapter` / :class:`DetectorPass`: the protocol (write one for any detector).
* :class:`TorchvisionDetector`: every ``torchvision.models.detection`` model, unchanged.
* :class:`MonaiRetinaNetDetector`: MONAI's 2D RetinaNet (needs ``pip install monai``);
  :func:`monai_retinanet` builds a small one (a run file can name it).
* :class:`DetectorInput`: the denoiser's 1-channel output as the detector's input channels.
* :func:`lesion_faster_rcnn`, :func:`lesion_fcos`: small torchvision detectors sized for the
  built-in phantoms (the shipped pretrained detectors and observers).
"""

from __future__ import annotations

from torch import nn

from lidplug.detectors.base import DetectorAdapter, DetectorPass, unwrap
from lidplug.detectors.input import DEFAULT_WINDOWS_HU, DetectorInput
from lidplug.detectors.lesion import lesion_faster_rcnn, lesion_fcos
from lidplug.detectors.monai_adapter import (
    MonaiRetinaNetDetector,
    is_monai_retinanet,
    monai_retinanet,
)
from lidplug.detectors.torchvision_adapter import TorchvisionDetector, is_torchvision_detector

__all__ = [
    "DEFAULT_WINDOWS_HU",
    "DetectorAdapter",
    "DetectorInput",
    "DetectorPass",
    "MonaiRetinaNetDetector",
    "TorchvisionDetector",
    "adapter_for",
    "lesion_faster_rcnn",
    "lesion_fcos",
    "monai_retinanet",
    "unwrap",
]


def adapter_for(detector: nn.Module) -> DetectorAdapter:
    """The adapter for a detector module, recognised by its structure.

    Raises:
        TypeError: for a module no built-in adapter knows; pass ``adapter=`` to ``wrap`` then.
    """
    if is_torchvision_detector(detector):
        return TorchvisionDetector()
    if is_monai_retinanet(detector):
        return MonaiRetinaNetDetector()
    raise TypeError(
        f"expected a torchvision detection model (with .transform and .backbone) or MONAI's "
        f"RetinaNetDetector, got {type(unwrap(detector)).__name__}; for another detector pass "
        f"adapter=<a lidplug.detectors.DetectorAdapter> to wrap()"
    )
