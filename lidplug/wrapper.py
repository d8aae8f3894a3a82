"""``wrap(denoiser, detector)``: any denoiser trained with lesion-detector feedback (LIDnet).

The wrapped model is an ``nn.Module`` holding the user's two modules unchanged
(``model.denoiser is denoiser``, ``model.detector is detector``; a denoiser given its own
``units``, fixed ``forward_kwargs`` or ``identity_start`` sits inside the adapter
:func:`lidplug.models.adapt_denoiser` builds, which is then ``model.denoiser``):

* training mode, ``model(low, clean, targets)``: the LIDnet objective for the denoiser, a dict with
  ``loss`` (backpropagate this), ``output`` (the denoised batch) and the terms ``pixel``,
  ``detection``, ``roi_perceptual`` (float32 scalars), plus ``detector_losses`` (the detector's
  own terms). One detector pass with grad: the ROI perceptual loss pools the features the
  detection loss was computed from; the normal-dose features come from a second pass without grad.
* eval mode, ``model(low)``: exactly ``denoiser(low)``.

Which model learns. After ``wrap`` the detector is frozen: its parameters have
``requires_grad=False`` and its normalisation layers stay in eval mode while the wrapper is in
training mode (it still runs in training mode to return losses), yet gradients flow *through* it
into the denoiser. So a plain loop with an optimiser over ``model.denoiser.parameters()`` trains
the denoiser phase of LIDnet. :meth:`LesionAwareDenoiser.set_trainable` changes that;
:class:`lidplug.training.CollaborativeTrainer` runs the whole alternating schedule.

Units. ``low``/``clean`` are ``Tensor[B, 1, H, W]`` in the denoiser's normalised window
(``window``, by default :class:`lidplug.data.HUWindow`); ``input_adapter`` maps them to the
detector's input (by default :class:`lidplug.detectors.DetectorInput`: one CT display window per
channel the detector expects). Boxes are ``xyxy`` pixels of ``low`` (x along columns).

Defaults (``WrapConfig``). The paper publishes no weights, layers or schedule, so every default is
ours. By default the feedback is **balanced** (:mod:`lidplug.balance`): each term's weight is set
so that its gradient on the denoised image has the norm of the pixel term's (``det_fraction =
roi_fraction = 1``), measured every 10 steps. That was chosen on the validation split of the
demo's task, among fixed weights and four balanced settings (``docs/RESULTS.md``, "How the
demo's LIDnet options were chosen"): it gave the largest gain in the observers' CPM at no
measurable cost in RMSE, while the fixed weights cost 1.3-1.7% RMSE. Fixed weights remain
(``balance=False``): ``det_weight=1e-5`` and ``roi_weight=2e-5`` balance a fresh Faster R-CNN
against the pixel term in HUWindow units (``benchmarks/feedback_gradients.py`` measures the
ratio: 4e4-6e4x and 2e4-5e4x per unit weight); a trained detector, other units or image sizes
move it by orders of magnitude, which is why balancing is the default. The
rest: ground-truth boxes, 7x7 pooling with 2 samples per bin, the levels the detector's own box
head pools (for one-stage detectors the FPN's levels without its extra maps; SSD's finest level,
its levels differing in width: see ``TorchvisionDetector.default_roi_levels``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase

from lidplug.balance import FeedbackBalancer
from lidplug.data.boxes import make_target
from lidplug.data.transforms import HUWindow
from lidplug.detectors import DetectorAdapter, DetectorInput, DetectorPass, adapter_for
from lidplug.losses import PIXEL_LOSSES, ROI_SOURCES, pixel_loss, roi_boxes, roi_feedback

__all__ = ["LesionAwareDenoiser", "WrapConfig", "wrap"]


@dataclasses.dataclass
class WrapConfig:
    """Options of the LIDnet objective (all defaults are ours; see the module docstring).

    Attributes:
        pixel_loss: ``"mse"`` or ``"l1"`` between the denoised and the normal-dose image.
        det_weight: weight of the detector's loss on the denoised image, when ``balance`` is
            off (0 then disables it; with ``balance`` on, ``det_fraction`` decides).
        roi_weight: weight of the ROI perceptual loss, when ``balance`` is off (0 then disables
            it and the reference pass; with ``balance`` on, ``roi_fraction`` decides).
        roi_source: boxes the ROI loss pools: ``"gt"`` lesion boxes, the detector's
            ``"proposals"`` (two-stage detectors) or ``"both"``.
        roi_levels: names of the detector feature levels to pool from, of one channel count;
            None = the adapter's default (the levels the detector's box head uses; see
            ``TorchvisionDetector.default_roi_levels``).
        roi_output_size: pooled size per box side.
        roi_sampling_ratio: RoIAlign samples per bin and axis.
        num_proposals: proposals per image for ``roi_source`` ``"proposals"``/``"both"``.
        clip_boxes: clip boxes reaching outside the image (with a warning) instead of raising.
        balance: set the feedback weights automatically, each term's gradient on the denoised
            image a fixed fraction of the pixel term's (:mod:`lidplug.balance`); ``det_weight``
            and ``roi_weight`` are then unused.
        det_fraction, roi_fraction: with ``balance``, those fractions (0 turns a term off).
        balance_every: with ``balance``, steps between two measurements of the gradients.
    """

    pixel_loss: str = "mse"
    det_weight: float = 1e-5
    roi_weight: float = 2e-5
    roi_source: str = "gt"
    roi_levels: tuple[str, ...] | None = None
    roi_output_size: int = 7
    roi_sampling_ratio: int = 2
    num_proposals: int = 16
    clip_boxes: bool = False
    balance: bool = True
    det_fraction: float = 1.0
    roi_fraction: float = 1.0
    balance_every: int = 10

    def __post_init__(self) -> None:
        if self.pixel_loss not in PIXEL_LOSSES:
            raise ValueError(f"pixel_loss: expected one of {PIXEL_LOSSES}, got {self.pixel_loss!r}")
        if self.roi_source not in ROI_SOURCES:
            raise ValueError(f"roi_source: expected one of {ROI_SOURCES}, got {self.roi_source!r}")
        for name in ("det_weight", "roi_weight", "det_fraction", "roi_fraction"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and not isinstance(value, bool)
                    and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
        # Upper bounds: each is a size allocated per box or step; beyond them, a typo that
        # would ask for terabytes.
        for name, low, high in (("roi_output_size", 1, 64), ("num_proposals", 1, 10_000),
                                ("balance_every", 1, 10**9), ("roi_sampling_ratio", 0, 64)):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool)
                    and low <= value <= high):
                raise ValueError(f"{name}: expected an int in [{low}, {high}], got {value!r}")
        if self.roi_levels is not None:
            if isinstance(self.roi_levels, str) or not all(
                    isinstance(n, str) for n in self.roi_levels) or not self.roi_levels:
                raise ValueError(f"roi_levels: expected a non-empty sequence of level names, got "
                                 f"{self.roi_levels!r}")
            self.roi_levels = tuple(self.roi_levels)

    @property
    def uses_detection(self) -> bool:
        """Whether the detection term is on (a weight, or a balanced fraction, above 0)."""
        return (self.det_fraction if self.balance else self.det_weight) > 0

    @property
    def uses_roi(self) -> bool:
        """Whether the ROI perceptual term is on."""
        return (self.roi_fraction if self.balance else self.roi_weight) > 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able copy (for checkpoints and export metadata)."""
        out = dataclasses.asdict(self)
        out["roi_levels"] = list(self.roi_levels) if self.roi_levels is not None else None
        return out


def _detection_loss(det_pass: DetectorPass) -> Tensor:
    # The detector's terms summed in float32, whatever the autocast dtype.
    return sum(v.float() for v in det_pass.losses.values())


def _check_output_dtype(output: Tensor, low: Tensor) -> None:
    """The denoiser's output in the input's dtype, or autocast's: another dtype (a model that
    casts to float64 or float16) fails later inside the detector with a raw dtype error."""
    allowed = {low.dtype}
    if torch.is_autocast_enabled(low.device.type):
        allowed.add(torch.get_autocast_dtype(low.device.type))
    if output.dtype not in allowed:
        expected = " or ".join(sorted(str(d).replace("torch.", "") for d in allowed))
        raise TypeError(f"denoiser: expected an output of dtype {expected} (the input's), got "
                        f"{str(output.dtype).replace('torch.', '')}")


def _set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def _eval_norm_layers(module: nn.Module) -> None:
    # Norm layers with running statistics (BatchNorm, InstanceNorm with tracking) keep them.
    for m in module.modules():
        if isinstance(m, _NormBase):
            m.eval()


class LesionAwareDenoiser(nn.Module):
    """A denoiser trained with lesion-detector feedback; build it with :func:`wrap`.

    Attributes:
        denoiser: the user's denoiser, ``Tensor[B, 1, H, W] -> Tensor[B, 1, H, W]``.
        detector: the user's detector.
        input_adapter: maps denoiser units to the detector's input channels.
        adapter: the :class:`~lidplug.detectors.DetectorAdapter` for the detector.
        window: the denoiser's normalisation window (for export and metrics), or None.
        config: the :class:`WrapConfig`.
    """

    def __init__(self, denoiser: nn.Module, detector: nn.Module, *, adapter: DetectorAdapter,
                 input_adapter: nn.Module, window: HUWindow | None, config: WrapConfig) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.detector = detector
        self.input_adapter = input_adapter
        self.adapter = adapter
        self.window = window
        self.config = config
        # Automatic feedback weights (lidplug.balance); its state is saved with checkpoints.
        self.balancer = FeedbackBalancer(
            {"detection": config.det_fraction, "roi_perceptual": config.roi_fraction},
            every=config.balance_every) if config.balance else None
        self._trainable = {"denoiser": True, "detector": False}
        self.set_trainable(denoiser=True, detector=False)

    # ---- which model learns ---------------------------------------------------------------

    @property
    def trainable(self) -> dict[str, bool]:
        """Which of ``denoiser`` / ``detector`` currently learn."""
        return dict(self._trainable)

    def set_trainable(self, *, denoiser: bool, detector: bool) -> LesionAwareDenoiser:
        """Choose which model learns; a frozen one gets no gradient and keeps its statistics.

        A frozen denoiser runs in eval mode; a frozen detector runs in training mode (so it
        returns losses) with its norm layers in eval mode. Gradients still flow through both.
        """
        self._trainable = {"denoiser": bool(denoiser), "detector": bool(detector)}
        _set_requires_grad(self.denoiser, bool(denoiser))
        _set_requires_grad(self.detector, bool(detector))
        return self.train(self.training)

    def train(self, mode: bool = True) -> LesionAwareDenoiser:
        super().train(mode)
        if mode and not self._trainable["denoiser"]:
            self.denoiser.eval()
        if mode and not self._trainable["detector"]:
            _eval_norm_layers(self.detector)
        return self

    # ---- inputs ----------------------------------------------------------------------------

    def _check_images(self, name: str, x: Tensor, like: Tensor | None = None) -> None:
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 1:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name}: expected Tensor[B, 1, H, W], got {got}")
        if x.shape[0] == 0:
            raise ValueError(f"{name}: expected at least one image, got a batch of 0 "
                             f"{tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got {x.dtype}")
        if like is not None and x.shape != like.shape:
            raise ValueError(f"{name}: expected the shape of low {tuple(like.shape)}, got "
                             f"{tuple(x.shape)}")

    def check_targets(self, targets: Sequence[Mapping[str, Tensor]], images: Tensor
                      ) -> list[dict[str, Tensor]]:
        """Validate torchvision-style targets for ``images`` and move them to its device.

        Boxes must be ``xyxy`` inside the image with ``x1 < x2``, ``y1 < y2`` (``clip_boxes``
        clips instead, with a warning), labels whole numbers ``>= 1`` and below the detector's
        class count (where its adapter tells it), one target per image; an image may have no
        boxes. Other keys (e.g. ``masks``) pass through.
        """
        batch, (height, width) = images.shape[0], images.shape[-2:]
        if not isinstance(targets, Sequence) or isinstance(targets, str | Mapping):
            raise TypeError(f"targets: expected a list of dicts (one per image), got "
                            f"{type(targets).__name__}")
        if len(targets) != batch:
            raise ValueError(f"targets: expected {batch} (one per image of the batch), got "
                             f"{len(targets)}")
        classes = self.adapter.num_classes(self.detector)
        out = []
        for i, t in enumerate(targets):
            if not isinstance(t, Mapping) or "boxes" not in t or "labels" not in t:
                raise ValueError(f"targets[{i}]: expected a dict with 'boxes' and 'labels', got "
                                 f"{sorted(t) if isinstance(t, Mapping) else type(t).__name__}")
            checked = make_target(torch.as_tensor(t["boxes"]).detach().cpu(),
                                  torch.as_tensor(t["labels"]).cpu(), (height, width),
                                  clip=self.config.clip_boxes, name=f"targets[{i}]")
            if classes is not None and bool((checked["labels"] >= classes).any()):
                raise ValueError(f"targets[{i}]: expected labels below {classes} (the "
                                 f"detector's classes, background 0 included), got "
                                 f"{checked['labels'].tolist()}")
            extra = {k: v for k, v in t.items() if k not in ("boxes", "labels")}
            out.append({**extra, **{k: v.to(images.device) for k, v in checked.items()}})
        return out

    # ---- forward ---------------------------------------------------------------------------

    def forward(self, low: Tensor, clean: Tensor | None = None,
                targets: Sequence[Mapping[str, Tensor]] | None = None):
        """Eval mode: ``denoiser(low)``. Training mode: :meth:`denoiser_objective`."""
        if not self.training:
            return self.denoiser(low)
        if clean is None or targets is None:
            raise ValueError("in training mode expected model(low, clean, targets) (normal-dose "
                             "images and lesion targets); call model.eval() to denoise only")
        return self.denoiser_objective(low, clean, targets)

    def denoiser_objective(self, low: Tensor, clean: Tensor,
                           targets: Sequence[Mapping[str, Tensor]], *,
                           denoiser: nn.Module | None = None,
                           detector: nn.Module | None = None) -> dict[str, Any]:
        """The LIDnet objective of the denoiser on one batch.

        Args:
            low: Tensor[B, 1, H, W] low-dose images (denoiser units).
            clean: Tensor[B, 1, H, W] their normal-dose counterparts.
            targets: per image ``dict(boxes=Tensor[L, 4] xyxy, labels=Tensor[L])``.
            denoiser, detector: modules to call instead of ``self.denoiser`` / ``self.detector``
                (the trainer passes their DDP wrappers); same parameters.

        Returns:
            dict with ``loss``, ``output`` (Tensor[B, 1, H, W]), ``pixel``, ``detection``,
            ``roi_perceptual`` and ``detector_losses`` (dict of the detector's terms).
        """
        cfg = self.config
        self._check_images("low", low)
        self._check_images("clean", clean, like=low)
        targets = self.check_targets(targets, low)
        # A loss meant to train (grad on) a denoiser with nothing to train would fail only at
        # the user's backward ("element 0 of tensors does not require grad").
        if (torch.is_grad_enabled() and self._trainable["denoiser"]
                and next(self.denoiser.parameters(), None) is None):
            raise ValueError(f"denoiser: expected parameters to train, got none "
                             f"({type(self.denoiser).__name__}); freeze it "
                             "(set_trainable(denoiser=False)) to score the detector alone")
        output = (denoiser or self.denoiser)(low)
        if not isinstance(output, Tensor) or output.shape != low.shape:
            got = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
            raise ValueError(f"denoiser: expected an output of the input's shape "
                             f"{tuple(low.shape)}, got {got}")
        _check_output_dtype(output, low)
        pixel = pixel_loss(output, clean, cfg.pixel_loss)
        zero = pixel.new_zeros(())
        result = {"output": output, "pixel": pixel, "detection": zero, "roi_perceptual": zero,
                  "detector_losses": {}}
        if not (cfg.uses_detection or cfg.uses_roi):
            result["loss"] = pixel
            return result
        reference = self.input_adapter(clean) if cfg.uses_roi else None
        det_pass = self.adapter.train_pass(detector or self.detector, self.input_adapter(output),
                                           targets, reference=reference)
        result["detection"] = _detection_loss(det_pass)
        result["detector_losses"] = dict(det_pass.losses)
        if cfg.uses_roi:
            levels = cfg.roi_levels or self.adapter.default_roi_levels(self.detector,
                                                                       det_pass.features)
            boxes = roi_boxes(det_pass, cfg.roi_source, cfg.num_proposals)
            result["roi_perceptual"] = roi_feedback(det_pass, levels, boxes,
                                                    cfg.roi_output_size, cfg.roi_sampling_ratio)
        weights = self.feedback_weights(pixel, result, output)
        result["loss"] = (pixel + weights["detection"] * result["detection"]
                          + weights["roi_perceptual"] * result["roi_perceptual"])
        result["weights"] = weights
        return result

    def feedback_weights(self, pixel: Tensor, terms: Mapping[str, Tensor], output: Tensor
                         ) -> dict[str, float]:
        """This step's weights of the feedback terms: the fixed ones, or the balancer's."""
        cfg = self.config
        if self.balancer is None:
            return {"detection": cfg.det_weight, "roi_perceptual": cfg.roi_weight}
        return self.balancer(pixel, {k: terms[k] for k in ("detection", "roi_perceptual")
                                     if cfg.uses_roi or k == "detection"}, output)

    def detector_objective(self, images: Tensor, targets: Sequence[Mapping[str, Tensor]], *,
                           detector: nn.Module | None = None) -> dict[str, Any]:
        """The detector's own loss on ``images`` (denoiser units: clean or denoised slices).

        Returns:
            dict with ``loss`` (= ``detection``, float32) and ``detector_losses``.
        """
        self._check_images("images", images)
        targets = self.check_targets(targets, images)
        det_pass = self.adapter.train_pass(detector or self.detector, self.input_adapter(images),
                                           targets)
        detection = _detection_loss(det_pass)
        return {"loss": detection, "detection": detection,
                "detector_losses": dict(det_pass.losses)}

    @torch.no_grad()
    def detect(self, images: Tensor) -> list[dict[str, Tensor]]:
        """Detections on ``images`` (denoiser units), per image ``dict(boxes, scores, labels)``
        in pixels of ``images``; runs the detector in eval mode and restores its mode after."""
        self._check_images("images", images)
        was_training = self.detector.training
        self.detector.eval()
        try:
            return self.adapter.predict(self.detector, self.input_adapter(images))
        finally:
            self.detector.train(was_training)
            self.train(self.training)


def _adapted_denoiser(denoiser: nn.Module, window: HUWindow, units: Any,
                      forward_kwargs: Mapping[str, Any] | None, identity_start: bool,
                      example_input: Tensor | None, check: bool) -> nn.Module:
    """The denoiser training calls (adapted to ``window`` units), tried once on a small batch."""
    from lidplug.models import adapt_denoiser, check_denoiser

    adapted = adapt_denoiser(denoiser, units=units, forward_kwargs=forward_kwargs,
                             identity_start=identity_start, window=window)
    if check:
        check_denoiser(adapted, example_input)
    return adapted


def wrap(denoiser: nn.Module, detector: nn.Module, *, adapter: DetectorAdapter | None = None,
         input_adapter: nn.Module | None = None, window: HUWindow | None = None,
         units: Any = None, forward_kwargs: Mapping[str, Any] | None = None,
         identity_start: bool = False, example_input: Tensor | None = None, check: bool = True,
         **options: Any) -> LesionAwareDenoiser:
    """Wrap a denoiser and a lesion detector into one LIDnet-trainable module.

    The denoiser is tried once on ``example_input`` (:func:`lidplug.models.check_denoiser`:
    its ``forward`` signature, then the output's shape, dtype and values), so that one that
    training could not use fails here with what to change.

    Args:
        denoiser: any ``nn.Module`` mapping Tensor[B, 1, H, W] to Tensor[B, 1, H, W] (in
            ``window`` units, or in its own ``units``).
        detector: a torchvision detection model (any builder of
            ``torchvision.models.detection``: Faster/Mask R-CNN, RetinaNet, FCOS, SSD, any
            backbone; Keypoint R-CNN with targets that carry ``keypoints``), MONAI's 2D
            ``RetinaNetDetector``, or any module with an ``adapter``.
        adapter: a :class:`~lidplug.detectors.DetectorAdapter`; None = recognised from the detector.
        input_adapter: module mapping denoiser output to detector input; None =
            :class:`~lidplug.detectors.DetectorInput` with the default windows for the channel
            count the detector expects.
        window: the normalisation the data (and the wrapped model's ``denoiser``) are in;
            None = ``HUWindow()``.
        units: the denoiser's own input units, when they are not ``window``'s: a
            :class:`lidplug.models.HUUnits` or a table in HU, ``{"mean": m, "std": s}`` (the
            model sees ``(HU - m) / s``) or ``{"window": (lo, hi)}`` (``lo..hi`` HU to 0..1);
            e.g. :data:`lidplug.models.LDCT_BENCHMARK_UNITS` for ldct-benchmark's networks.
        forward_kwargs: fixed keyword arguments of the denoiser's ``forward`` besides the image
            (e.g. ``{"sigma": 0.05}`` for deepinv's DRUNet), in the denoiser's units.
        identity_start: start the denoiser as the identity behind a zero-initialised gate
            (:class:`lidplug.models.IdentityStart`), for a third-party model that does not.
        example_input: the probe batch, Tensor[B, 1, H, W] in ``window`` units (default
            1x1x64x64 water slices with noise); use one of your slices' size for a model that
            takes only some sizes.
        check: try the denoiser on the probe batch (False skips it).
        **options: fields of :class:`WrapConfig` (``pixel_loss``, ``det_weight``, ``roi_weight``,
            ``roi_source``, ``roi_levels``, ``roi_output_size``, ``roi_sampling_ratio``,
            ``num_proposals``, ``clip_boxes``, ``balance``, ``det_fraction``,
            ``roi_fraction``, ``balance_every``).

    Returns:
        A :class:`LesionAwareDenoiser`, detector frozen (see the module docstring). Its
        ``denoiser`` is ``denoiser`` itself, or, given ``units``, ``forward_kwargs`` or
        ``identity_start``, the module :func:`lidplug.models.adapt_denoiser` builds around it
        (so training, evaluation and :func:`lidplug.export` all see the same units).

    Raises:
        TypeError, ValueError: bad options, or a denoiser that fails its check (one message
            naming what was expected and what came).
    """
    if not isinstance(denoiser, nn.Module):
        raise TypeError(f"denoiser: expected an nn.Module, got {type(denoiser).__name__}")
    if not isinstance(detector, nn.Module):
        raise TypeError(f"detector: expected an nn.Module, got {type(detector).__name__}")
    fields = {f.name for f in dataclasses.fields(WrapConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise TypeError(f"wrap: unknown option(s) {unknown}; expected some of {sorted(fields)}")
    config = WrapConfig(**options)
    adapter = adapter if adapter is not None else adapter_for(detector)
    window = window if window is not None else HUWindow()
    denoiser = _adapted_denoiser(denoiser, window, units, forward_kwargs, identity_start,
                                 example_input, check)
    channels = adapter.input_channels(detector)
    if input_adapter is None:
        input_adapter = DetectorInput(channels=channels, units=window)
    elif getattr(input_adapter, "channels", channels) != channels:
        raise ValueError(f"input_adapter: the detector expects {channels} input channel(s), "
                         f"the adapter gives {input_adapter.channels}")
    if config.roi_source != "gt" and not adapter.has_proposals(detector):
        raise ValueError(f"roi_source={config.roi_source!r} needs a detector with a proposal stage "
                         f"(an RPN); {type(detector).__name__} has none: use roi_source='gt'")
    return LesionAwareDenoiser(denoiser, detector, adapter=adapter, input_adapter=input_adapter,
                               window=window, config=config)
