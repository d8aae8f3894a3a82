"""The detector protocol: what :func:`lidplug.wrap` needs from a lesion detector.

The wrapper talks to detectors only through a :class:`DetectorAdapter`, so any detector works once
it has one. An adapter is stateless: it receives the detector module on every call (possibly
wrapped in ``DistributedDataParallel``), which keeps parameters in one place (the wrapper's
``detector`` attribute) and lets the trainer pass the DDP wrapper when the detector is trained.

The contract, for images ``Tensor[B, C, H, W]`` already in the detector's input units (see
:class:`lidplug.detectors.DetectorInput`) and torchvision-style targets with ``xyxy`` boxes in
pixels of those images (``x`` along columns):

* :meth:`DetectorAdapter.train_pass` runs the detector **once** on ``images`` in training mode and
  returns its losses together with the feature maps those losses were computed from, the boxes
  mapped into the frame of those features and, for two-stage detectors, its proposals. The ROI
  perceptual loss uses exactly these features, so a training step costs one backbone pass with
  grad. Given ``reference`` images (the normal-dose ones) it also returns their feature maps,
  computed without grad in the same frame (same resizing), for the ROI perceptual loss.
* :meth:`DetectorAdapter.predict` returns detections in input-image pixels, torchvision style.
"""

from __future__ import annotations

import abc
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["DetectorAdapter", "DetectorPass", "unwrap"]


@dataclass
class DetectorPass:
    """One training-mode detector pass.

    Attributes:
        losses: the detector's loss terms (scalars), summed into the detection loss.
        features: the feature maps the losses came from, finest first, ``Tensor[B, C, h_l, w_l]``.
        image_size: ``(H, W)`` of the (possibly resized and padded) image batch the features
            belong to; the spatial scale of level ``l`` is ``h_l / H``.
        boxes: per image ``Tensor[L_i, 4]`` ground-truth boxes in that frame.
        proposals: per image ``Tensor[P_i, 4]`` proposals in that frame, best first, or None for
            detectors without a proposal stage.
        reference: feature maps of the reference images (same keys and shapes as ``features``,
            no grad), or None when none were asked for.
    """

    losses: dict[str, Tensor]
    features: OrderedDict[str, Tensor]
    image_size: tuple[int, int]
    boxes: list[Tensor]
    proposals: list[Tensor] | None = None
    reference: OrderedDict[str, Tensor] | None = None


class DetectorAdapter(abc.ABC):
    """Connects one family of detectors to the wrapper (see the module docstring)."""

    @abc.abstractmethod
    def input_channels(self, detector: nn.Module) -> int:
        """Number of image channels the detector expects."""

    def has_proposals(self, detector: nn.Module) -> bool:
        """Whether :meth:`train_pass` returns proposals (needed for ``roi_source="proposals"``)."""
        return False

    def num_classes(self, detector: nn.Module) -> int | None:
        """Classes the detector scores, background (label 0) included, so labels must stay
        below it (a label beyond indexes past the classifier: an IndexError on the CPU, a
        device assert on CUDA); None where the adapter cannot tell."""
        return None

    @abc.abstractmethod
    def train_pass(self, detector: nn.Module, images: Tensor, targets: list[dict[str, Tensor]],
                   reference: Tensor | None = None) -> DetectorPass:
        """One detector forward in training mode (see :class:`DetectorPass`).

        Args:
            detector: the detector, in training mode, possibly inside DDP.
            images: Tensor[B, C, H, W] in the detector's input units.
            targets: per image ``dict(boxes=Tensor[L, 4], labels=Tensor[L])``, boxes in pixels
                of ``images``.
            reference: optional Tensor[B, C, H, W] whose features to return alongside, without
                grad and in the same frame.
        """

    @abc.abstractmethod
    def predict(self, detector: nn.Module, images: Tensor) -> list[dict[str, Tensor]]:
        """Detections ``dict(boxes=Tensor[N, 4], scores=Tensor[N], labels=Tensor[N])`` per image,
        in input-image pixels. The caller puts the detector in eval mode."""

    def default_roi_levels(self, detector: nn.Module, features: OrderedDict[str, Tensor]
                           ) -> tuple[str, ...]:
        """Feature levels the ROI perceptual loss pools from when the user names none."""
        return tuple(features)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` (or similar ``.module``) wrapper."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


@contextmanager
def capture_output(module: nn.Module, store: dict, key: str) -> Iterator[None]:
    """Record ``module``'s forward output in ``store[key]`` while the context is open.

    This is how adapters reuse a detector's own forward (and its losses) while still seeing the
    intermediate results they need, without re-implementing each detector family's forward.
    """

    def hook(_module, _inputs, output):
        store[key] = output

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def keep_running_stats(module: nn.Module) -> Iterator[None]:
    """Restore the BatchNorm running statistics that a forward in training mode would update.

    The reference pass on normal-dose images must not move a trained detector's statistics; in
    the phases where the detector is frozen its norm layers are in eval mode and this is a no-op.
    """
    saved = [(m, {k: b.clone() for k, b in m.named_buffers(recurse=False)})
             for m in module.modules() if isinstance(m, _BatchNorm) and m.training]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in saved:
                for name, value in buffers.items():
                    getattr(m, name).copy_(value)
