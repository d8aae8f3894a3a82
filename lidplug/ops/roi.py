"""Public ROI ops: multi-level RoIAlign and the fused ROI perceptual loss.

Both run the compiled ``torch.ops.lidplug.*`` kernels when available (CPU, CUDA), and otherwise
the pure-PyTorch reference with the same semantics: torchvision's ``roi_align`` for one level,
``MultiScaleRoIAlign`` for several, followed by ``F.mse_loss`` for the loss.

As torchvision's ops are, the functions are leaves for ``torch.fx`` (``torch.fx.wrap``: a
symbolic trace records the call instead of tracing into the input checks), so FX-based tools
(``torchvision.models.feature_extraction``) see through a model that holds the modules; and the
modules compile with ``torch.jit.script`` (their scripted forward calls the registered op
directly, so it needs the compiled ops library).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from lidplug.ops import _inputs
from lidplug.ops._extension import extension_available
from lidplug.ops._reference import roi_perceptual_loss_reference, roi_pool_reference

__all__ = ["RoIPerceptualLoss", "RoIPyramidAlign", "roi_perceptual_loss", "roi_pool"]

Features = Tensor | Sequence[Tensor] | Mapping[str, Tensor]
Boxes = Tensor | Sequence[Tensor]

_REDUCTIONS = ("mean", "sum", "none")


# FX leaves (module-level, by name, as torch.fx.wrap requires).
torch.fx.wrap("roi_pool")
torch.fx.wrap("roi_perceptual_loss")


@torch.compiler.assume_constant_result
def _compiled() -> bool:
    # Constant for a process: lets torch.compile trace straight into the registered op.
    return extension_available()


def roi_pool(features: Features, boxes: Boxes, output_size: int | tuple[int, int],
             spatial_scales: float | Sequence[float] | None = None, sampling_ratio: int = 2,
             aligned: bool = False, *, image_size: tuple[int, int] | None = None) -> Tensor:
    """RoIAlign over one feature map or a whole FPN pyramid, in one launch.

    With several levels each box is pooled from one level, chosen by torchvision's
    MultiScaleRoIAlign rule: ``floor(4 + log2(sqrt(area) / 224))`` clamped to the pyramid.

    Args:
        features: Tensor[B, C, H, W], or a sequence / OrderedDict of levels, finest first.
        boxes: Tensor[K, 5] of (batch_index, x1, y1, x2, y2), or a list of Tensor[L_i, 4] per
            image; coordinates in input-image pixels.
        output_size: PH = PW, or (PH, PW).
        spatial_scales: one scale per level (feature size / image size). If None,
            ``image_size`` must be given and the scales are inferred as MultiScaleRoIAlign does.
        sampling_ratio: samples per bin and axis; 0 = adaptive (ceil(box size / bins)).
        aligned: shift boxes by -0.5 pixel (pixel-centre convention), as in roi_align.
        image_size: (H, W) of the input image, used only to infer ``spatial_scales``.

    Returns:
        Tensor[K, C, PH, PW] in the features' dtype.
    """
    levels = _inputs.as_levels(features)
    rois = _inputs.as_rois(boxes, levels[0])
    ph, pw = _inputs.as_output_size(output_size)
    scales = _inputs.as_scales(spatial_scales, levels, image_size)
    if _compiled():
        return torch.ops.lidplug.roi_pool(levels, rois, scales, ph, pw, sampling_ratio, aligned)
    _inputs.check_canonical(levels, None, rois, scales)
    out = roi_pool_reference(levels, rois, (ph, pw), scales, sampling_ratio, aligned)
    return out.to(levels[0].dtype)


def roi_perceptual_loss(features: Features, ref_features: Features, boxes: Boxes,
                        output_size: int | tuple[int, int] = 7,
                        spatial_scales: float | Sequence[float] | None = None,
                        sampling_ratio: int = 2, aligned: bool = False, reduction: str = "mean",
                        *, image_size: tuple[int, int] | None = None) -> Tensor:
    """Mean squared difference of two pyramids' RoIAlign features, fused.

    Equals ``F.mse_loss(pool(features), pool(ref_features))`` with ``pool`` as in
    :func:`roi_pool`, but the compiled kernel never materialises both pooled tensors: the
    forward samples both pyramids at once and pools their difference, and the backward writes
    the gradient of ``features`` (and of ``ref_features`` if it requires grad) in one pass.
    Accumulation is float32 (float64 for float64 features). K = 0 gives 0 and zero gradients.
    Under ``torch.use_deterministic_algorithms(True)`` the backward uses no atomics.

    Args:
        features: the pyramid of the denoised image: Tensor[B, C, H, W], or a sequence /
            OrderedDict of levels, finest first.
        ref_features: the reference (normal-dose) pyramid, same shapes, dtype and device.
        boxes: Tensor[K, 5] (batch_index, x1, y1, x2, y2) or a list of Tensor[L_i, 4].
        output_size: pooled size, int or (PH, PW).
        spatial_scales: one scale per level; None infers them from ``image_size``.
        sampling_ratio: samples per bin and axis; 0 = adaptive.
        aligned: pixel-centre box convention of roi_align.
        reduction: ``"mean"`` (scalar), ``"sum"`` (scalar) or ``"none"`` (Tensor[K]: the mean
            over C x PH x PW of each box).
        image_size: (H, W) of the input image, to infer ``spatial_scales``.

    Returns:
        A float32 scalar, or Tensor[K] for ``reduction="none"`` (float64 for float64 input).
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
    levels = _inputs.as_levels(features)
    ref_levels = _inputs.as_levels(ref_features, "ref_features")
    rois = _inputs.as_rois(boxes, levels[0])
    ph, pw = _inputs.as_output_size(output_size)
    scales = _inputs.as_scales(spatial_scales, levels, image_size)
    if _compiled():
        return torch.ops.lidplug.roi_perceptual_loss(
            levels, ref_levels, rois, scales, ph, pw, sampling_ratio, aligned, reduction)
    _inputs.check_canonical(levels, ref_levels, rois, scales)
    return roi_perceptual_loss_reference(levels, ref_levels, rois, (ph, pw), scales,
                                         sampling_ratio, aligned, reduction)


# What TorchScript can type of Features and Boxes (eager accepts any sequence or mapping).
ScriptFeatures = Tensor | list[Tensor] | dict[str, Tensor]
ScriptBoxes = Tensor | list[Tensor]


def _script_levels(features: ScriptFeatures) -> list[Tensor]:
    """:func:`_inputs.as_levels` for a scripted module (its checks are the op's own)."""
    if isinstance(features, Tensor):
        return [features]
    if isinstance(features, list):
        return features
    return list(features.values())


def _script_rois(boxes: ScriptBoxes, like: Tensor) -> Tensor:
    """:func:`_inputs.as_rois` for a scripted module."""
    if isinstance(boxes, Tensor):
        return boxes
    rows: list[Tensor] = []
    for i, b in enumerate(boxes):
        rows.append(torch.cat([torch.full_like(b[:, :1], float(i)), b], dim=1))
    return torch.cat(rows, dim=0) if len(rows) > 0 else like.new_zeros((0, 5))


def _script_scales(scales: list[float] | None, levels: list[Tensor],
                   image_size: tuple[int, int] | None) -> list[float]:
    """The module's scales, or inferred from ``image_size`` as :func:`_inputs.as_scales`
    (and MultiScaleRoIAlign) infer them."""
    if scales is not None:
        return scales
    if image_size is None:
        raise ValueError("spatial_scales: expected one scale per level (feature size / image "
                         "size), or image_size=(H, W) to infer them from, got neither")
    # math.log rather than math.log2, which TorchScript lacks.
    return [2.0 ** float(round(math.log(level.shape[-2] / image_size[0]) / math.log(2.0)))
            for level in levels]


class RoIPyramidAlign(nn.Module):
    """Module form of :func:`roi_pool` with fixed pooling parameters.

    Scriptable (``torch.jit.script``, with the compiled ops) and an FX leaf, as torchvision's
    ``MultiScaleRoIAlign`` is.

    Args:
        output_size: pooled size, int or (PH, PW).
        spatial_scales: one scale per level, or None to infer them from ``image_size`` at call.
        sampling_ratio: samples per bin and axis; 0 = adaptive.
        aligned: pixel-centre box convention.
    """

    def __init__(self, output_size: int | tuple[int, int],
                 spatial_scales: float | Sequence[float] | None = None,
                 sampling_ratio: int = 2, aligned: bool = False):
        super().__init__()
        self.output_size = _inputs.as_output_size(output_size)
        self.spatial_scales = spatial_scales
        # One float per level (or None), the form the scripted forward passes the op.
        self._scales: list[float] | None = None if spatial_scales is None else (
            _inputs.as_scales(spatial_scales, []))
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, features: ScriptFeatures, boxes: ScriptBoxes,
                image_size: tuple[int, int] | None = None) -> Tensor:
        if torch.jit.is_scripting():
            levels = _script_levels(features)
            return torch.ops.lidplug.roi_pool(
                levels, _script_rois(boxes, levels[0]),
                _script_scales(self._scales, levels, image_size), self.output_size[0],
                self.output_size[1], self.sampling_ratio, self.aligned)
        return self._eager(features, boxes, image_size)

    @torch.jit.unused
    def _eager(self, features: Features, boxes: Boxes,
               image_size: tuple[int, int] | None) -> Tensor:
        return roi_pool(features, boxes, self.output_size, self.spatial_scales,
                        self.sampling_ratio, self.aligned, image_size=image_size)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scales={self.spatial_scales}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")


class RoIPerceptualLoss(RoIPyramidAlign):
    """Module form of :func:`roi_perceptual_loss`; ``reduction`` as there."""

    def __init__(self, output_size: int | tuple[int, int] = 7,
                 spatial_scales: float | Sequence[float] | None = None,
                 sampling_ratio: int = 2, aligned: bool = False, reduction: str = "mean"):
        super().__init__(output_size, spatial_scales, sampling_ratio, aligned)
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def forward(self, features: ScriptFeatures, ref_features: ScriptFeatures,
                boxes: ScriptBoxes, image_size: tuple[int, int] | None = None) -> Tensor:
        if torch.jit.is_scripting():
            levels = _script_levels(features)
            return torch.ops.lidplug.roi_perceptual_loss(
                levels, _script_levels(ref_features), _script_rois(boxes, levels[0]),
                _script_scales(self._scales, levels, image_size), self.output_size[0],
                self.output_size[1], self.sampling_ratio, self.aligned, self.reduction)
        return self._eager_loss(features, ref_features, boxes, image_size)

    @torch.jit.unused
    def _eager_loss(self, features: Features, ref_features: Features, boxes: Boxes,
                    image_size: tuple[int, int] | None) -> Tensor:
        return roi_perceptual_loss(features, ref_features, boxes, self.output_size,
                                   self.spatial_scales, self.sampling_ratio, self.aligned,
                                   self.reduction, image_size=image_size)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", reduction={self.reduction!r}"
