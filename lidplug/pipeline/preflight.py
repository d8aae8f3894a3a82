"""Checks before training: what would otherwise fail in the first step of an arm, or after the
first arm has trained for an hour, fails first, in one message naming the arm.

* Each arm's schedule: at least one step (``rounds = 0`` alone trains and writes nothing), no
  steps for a model without parameters, at least one batch of training slices.
* Memory: the first step's needs, estimated without allocating (weights, gradients and Adam's
  two moments; the batch with the detector's 3-channel inputs; the denoiser's activations,
  from a forward on the meta device), against the memory free on the run's device. It is a
  lower bound (the detector's activations are not counted): a run refused by it could not
  have trained; one it lets through may still be too large.
* A dry step per arm, on one training slice, without gradients and on copies of the models:
  the denoiser's output (shape, dtype), the detector's losses, the ROI levels and boxes; any
  failure (a detector given as the denoiser raises torchvision's AssertionError, a label the
  detector has no class for an IndexError) becomes one ValueError naming the arm.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from lidplug.data import collate
from lidplug.pipeline.build import available_memory, tensor_bytes
from lidplug.pipeline.spec import ArmSpec, RunSpec
from lidplug.pipeline.train import wrap_options
from lidplug.training.schedule import build_schedule, updates_per_model
from lidplug.wrapper import wrap

__all__ = ["check_before_training", "first_step_bytes"]

_GIB = 1 << 30
# Images of one step: low and normal dose (1 channel), the detector's inputs for the denoised
# and the normal-dose slices (3 channels each).
_IMAGE_CHANNELS = 2 + 2 * 3


def _activation_bytes(model: nn.Module, shape: Sequence[int]) -> int:
    """Bytes of the outputs of ``model``'s leaf modules on a batch of ``shape`` (what autograd
    keeps for the backward), from a forward on the meta device: nothing is allocated. 0 when
    the model cannot run there."""
    total = 0

    def count(_module, _inputs, output) -> None:
        nonlocal total
        if isinstance(output, Tensor):
            total += output.numel() * output.element_size()

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        tensors = {name: torch.empty_like(t, device="meta") for name, t in
                   itertools.chain(model.named_parameters(), model.named_buffers())}
        torch.func.functional_call(model, tensors, (torch.empty(*shape, device="meta"),))
    except Exception:  # an op without a meta kernel, a check that reads values: no estimate
        return 0
    finally:
        for h in handles:
            h.remove()
    return total


def first_step_bytes(spec: RunSpec, denoiser: nn.Module, detector: nn.Module,
                     size: tuple[int, int]) -> dict[str, int]:
    """The first training step's memory, by part (see the module docstring), for slices of
    ``size`` ``(H, W)`` and the largest batch of the run's arms."""
    batch = max(spec.arm_train(a).batch_size for a in spec.arms)
    h, w = size
    return {
        "weights, gradients and optimiser state": 4 * (tensor_bytes(denoiser)
                                                      + tensor_bytes(detector)),
        f"a batch of {batch} slices of {h}x{w}": batch * h * w * 4 * _IMAGE_CHANNELS,
        "the denoiser's activations": _activation_bytes(denoiser, (batch, 1, h, w)),
    }


def _check_memory(spec: RunSpec, denoiser: nn.Module, detector: nn.Module,
                  size: tuple[int, int]) -> None:
    parts = first_step_bytes(spec, denoiser, detector, size)
    need, free = sum(parts.values()), available_memory(spec.train.device)
    if free is not None and need > free:
        listed = "; ".join(f"{k} {v / _GIB:.1f} GiB" for k, v in parts.items())
        raise ValueError(f"train: expected a first step that fits in memory, got one needing at "
                         f"least {need / _GIB:.1f} GiB ({listed}) with {free / _GIB:.1f} GiB "
                         f"free on {spec.train.device}; use smaller batches (train.batch_size), "
                         "slices (data.size) or models")


def _dry_step(spec: RunSpec, arm: ArmSpec, denoiser: nn.Module, detector: nn.Module,
              batch: dict) -> None:
    cfg, options, wrap_cfg = spec.arm_train(arm), wrap_options(spec, arm), spec.arm_wrap(arm)
    if wrap_cfg.balance:  # the balancer measures gradients, which a dry step has none of
        options.update(balance=False, det_weight=float(wrap_cfg.uses_detection),
                       roi_weight=float(wrap_cfg.uses_roi))
    detector_steps = cfg.detector_pretrain_steps or (cfg.mode != "frozen" and cfg.detector_steps)
    try:
        model = wrap(copy.deepcopy(denoiser), copy.deepcopy(detector), **options).train()
        with torch.no_grad():
            if detector_steps:
                model.detector_objective(batch["normal"], batch["target"])
            model.denoiser_objective(batch["low"], batch["normal"], batch["target"])
    except Exception as err:  # whatever the user's models raise: named, on one line
        text = " ".join(str(err).split())[:400] or "(no message)"
        raise ValueError(f"arms[{arm.name}]: expected a first step to run, got "
                         f"{type(err).__name__}: {text} (on one training slice, before any "
                         "training)") from None


def check_before_training(spec: RunSpec, denoiser: nn.Module, detector: nn.Module,
                          train_set: Dataset) -> None:
    """Run the checks of the module docstring.

    Raises:
        ValueError: naming the arm (or the run's sizes) and what failed.
    """
    for arm in spec.arms:
        cfg = spec.arm_train(arm)
        if len(train_set) < cfg.batch_size:
            raise ValueError(f"arms[{arm.name}]: expected at least train.batch_size="
                             f"{cfg.batch_size} training slices, got {len(train_set)}")
        schedule = build_schedule(cfg)
        if not schedule:
            raise ValueError(f"arms[{arm.name}]: expected a schedule of at least one step, got "
                             "none (train.rounds = 0 and no detector_pretrain_steps or "
                             "warmup_steps): nothing would be trained or written")
        updates = updates_per_model(schedule)
        for role, model in (("denoiser", denoiser), ("detector", detector)):
            if updates[role] and next(model.parameters(), None) is None:
                raise ValueError(f"arms[{arm.name}]: the schedule updates the {role} "
                                 f"{updates[role]} times, but {type(model).__name__} has no "
                                 "parameters; expected a model that can learn")
    sample = None
    if spec.data.kind == "phantom":
        size = (spec.data.size, spec.data.size)
    else:
        sample = train_set[0]
        size = tuple(sample["low"].shape[-2:])
    _check_memory(spec, denoiser, detector, size)
    batch = collate([sample if sample is not None else train_set[0]])
    for arm in spec.arms:
        _dry_step(spec, arm, denoiser, detector, batch)
