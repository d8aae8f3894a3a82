"""Training options of :class:`lidplug.training.CollaborativeTrainer` (every default is ours)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

__all__ = ["AMP_DTYPES", "MAX_BATCH", "MAX_STEPS", "MAX_WORKERS", "MODES", "OPTIMIZERS",
           "SCHEDULERS", "TrainConfig"]

#: More steps than any run takes (10^9; the schedule is a list of segments, the history one
#: record per step): a larger count is a typo, refused before anything is built.
MAX_STEPS = 10**9

#: Bounds of the sizes (a larger value is a typo, refused before anything is built); the
#: workers actually started are also capped at the CPUs this process may use
#: (:func:`lidplug.training.trainer.loader_workers`).
MAX_BATCH = 65536
MAX_WORKERS = 1024

MODES = ("alternating", "frozen", "joint")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("constant", "cosine", "onecycle")
AMP_DTYPES = (None, "bf16", "fp16")


@dataclasses.dataclass
class TrainConfig:
    """Schedule, optimisation and bookkeeping of collaborative training.

    Schedule (see :mod:`lidplug.training.schedule`): ``detector_pretrain_steps`` detector steps on
    normal-dose images, ``warmup_steps`` denoiser steps with the pixel term only (0 for a
    pretrained denoiser), then ``rounds`` rounds. In ``"alternating"`` mode a round is
    ``denoiser_steps`` denoiser steps with the full objective (detector frozen) followed by
    ``detector_steps`` detector steps on denoised images (denoiser frozen). The ablations give the
    denoiser the same number of updates: ``"frozen"`` skips the detector steps (the detector never
    changes after pretraining), ``"joint"`` runs ``denoiser_steps`` steps per round that update both
    models on the full objective.

    Attributes:
        mode: ``"alternating"``, ``"frozen"`` or ``"joint"``.
        detector_pretrain_steps, warmup_steps, rounds, denoiser_steps, detector_steps: schedule.
        batch_size: images per step and process.
        num_workers: DataLoader workers per process (at most the CPUs it may use).
        lr_denoiser, lr_detector: learning rates.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (momentum 0.9), one per model.
        weight_decay: for both optimisers.
        scheduler: ``"constant"``, ``"cosine"`` (to 0 over the steps that model is updated) or
            ``"onecycle"`` (``torch.optim.lr_scheduler.OneCycleLR``: a warm-up over the first 10%
            of those steps, then cosine annealing; detectors trained from scratch need it).
        grad_clip: max gradient norm per model, None for no clipping.
        amp: None (float32), ``"bf16"`` or ``"fp16"`` (with a gradient scaler) autocast.
        device: ``"auto"`` (the local GPU if any), ``"cpu"``, ``"cuda"``.
        seed: seeds every generator (per process: derived from seed and rank).
        deterministic: ``torch.use_deterministic_algorithms(True)`` during :meth:`fit`, so a
            resumed run equals an uninterrupted one.
        out_dir: where checkpoints and logs go (rank 0 writes); None keeps nothing on disk.
        checkpoint_every: steps between checkpoints (and one at the end).
        log_every: steps between log records.
        tensorboard: also log to TensorBoard (needs the ``tensorboard`` package).
        progress: show a progress bar with the loss terms.
        find_unused_parameters: passed to DDP, for detectors with parameters a step may not use.
    """

    mode: str = "alternating"
    detector_pretrain_steps: int = 0
    warmup_steps: int = 0
    rounds: int = 1
    denoiser_steps: int = 10
    detector_steps: int = 5
    batch_size: int = 4
    num_workers: int = 0
    lr_denoiser: float = 1e-4
    lr_detector: float = 1e-4
    optimizer: str = "adam"
    weight_decay: float = 0.0
    scheduler: str = "constant"
    grad_clip: float | None = 1.0
    amp: str | None = None
    device: str = "auto"
    seed: int = 0
    deterministic: bool = False
    out_dir: str | None = None
    checkpoint_every: int = 100
    log_every: int = 1
    tensorboard: bool = False
    progress: bool = True
    find_unused_parameters: bool = False

    def __post_init__(self) -> None:
        choices = {"mode": MODES, "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS,
                   "amp": AMP_DTYPES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: expected one of {allowed}, got {getattr(self, name)!r}")
        counts = {"detector_pretrain_steps": 0, "warmup_steps": 0, "rounds": 0,
                  "denoiser_steps": 0, "detector_steps": 0, "num_workers": 0, "seed": 0,
                  "batch_size": 1, "checkpoint_every": 1, "log_every": 1}
        for name, low in counts.items():
            value = getattr(self, name)
            high = {"seed": 2**62, "batch_size": MAX_BATCH, "num_workers": MAX_WORKERS}.get(
                name, MAX_STEPS)
            if not (isinstance(value, int) and not isinstance(value, bool)
                    and low <= value <= high):
                raise ValueError(f"{name}: expected an int in [{low}, {high}], got {value!r}")
        total = (self.detector_pretrain_steps + self.warmup_steps
                 + self.rounds * (self.denoiser_steps + self.detector_steps))
        if total > MAX_STEPS:
            raise ValueError(f"rounds: expected a schedule of at most {MAX_STEPS} steps, got "
                             f"{total}")
        for name in ("lr_denoiser", "lr_detector", "weight_decay"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and not isinstance(value, bool)
                    and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
        if self.grad_clip is not None and not (
                isinstance(self.grad_clip, int | float) and math.isfinite(self.grad_clip)
                and self.grad_clip > 0):
            raise ValueError(f"grad_clip: expected a finite number > 0 or None, got "
                             f"{self.grad_clip!r}")
        for name in ("deterministic", "tensorboard", "progress", "find_unused_parameters"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name}: expected true or false, got {getattr(self, name)!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda', got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
