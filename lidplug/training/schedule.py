"""The collaborative schedule as data: a list of (phase, steps) segments.

Phases and who learns in each:

* ``detector_pretrain``: the detector, on normal-dose images.
* ``warmup``: the denoiser, pixel term only.
* ``denoiser``: the denoiser, full LIDnet objective; detector frozen (gradients flow through it).
* ``detector``: the detector, on denoised images; denoiser frozen.
* ``joint``: both, on the full objective.

The phase of a step is a pure function of the step, so a checkpoint needs only the step number.
"""

from __future__ import annotations

from lidplug.training.config import TrainConfig

__all__ = ["LEARNERS", "build_schedule", "phase_at", "updates_per_model"]

#: Which models learn in each phase.
LEARNERS: dict[str, tuple[str, ...]] = {
    "detector_pretrain": ("detector",),
    "warmup": ("denoiser",),
    "denoiser": ("denoiser",),
    "detector": ("detector",),
    "joint": ("denoiser", "detector"),
}


def build_schedule(cfg: TrainConfig) -> list[tuple[str, int]]:
    """Segments ``(phase, steps)`` in order; empty segments are left out."""
    if cfg.mode == "alternating":
        round_ = [("denoiser", cfg.denoiser_steps), ("detector", cfg.detector_steps)]
    elif cfg.mode == "frozen":
        round_ = [("denoiser", cfg.denoiser_steps)]
    else:
        round_ = [("joint", cfg.denoiser_steps)]
    segments = [("detector_pretrain", cfg.detector_pretrain_steps),
                ("warmup", cfg.warmup_steps), *round_ * cfg.rounds]
    return [(phase, n) for phase, n in segments if n > 0]


def phase_at(schedule: list[tuple[str, int]], step: int) -> str:
    """Phase of 0-based ``step``; IndexError past the end."""
    for phase, n in schedule:
        if step < n:
            return phase
        step -= n
    raise IndexError("step past the end of the schedule")


def updates_per_model(schedule: list[tuple[str, int]]) -> dict[str, int]:
    """How many optimiser steps each model takes over the schedule (for LR schedules)."""
    counts = {"denoiser": 0, "detector": 0}
    for phase, n in schedule:
        for model in LEARNERS[phase]:
            counts[model] += n
    return counts
