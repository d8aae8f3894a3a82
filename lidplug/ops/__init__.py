"""Fused ROI ops, registered with the dispatcher as ``torch.ops.lidplug.*``.

``roi_pool`` is RoIAlign over one level or a whole FPN pyramid; ``roi_perceptual_loss`` is the
mean squared difference of two pyramids' RoIAlign features, fused. The compiled library is
loaded (or built) on first use; ``extension_available()`` says whether it is in use.
"""

from lidplug.ops._extension import extension_available, extension_error, library_path
from lidplug.ops._reference import roi_perceptual_loss_reference, roi_pool_reference
from lidplug.ops.roi import RoIPerceptualLoss, RoIPyramidAlign, roi_perceptual_loss, roi_pool

__all__ = [
    "RoIPerceptualLoss",
    "RoIPyramidAlign",
    "extension_available",
    "extension_error",
    "library_path",
    "roi_perceptual_loss",
    "roi_perceptual_loss_reference",
    "roi_pool",
    "roi_pool_reference",
]
