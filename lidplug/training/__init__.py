"""Collaborative training (LIDnet): detector pretraining, denoiser warm-up, alternating rounds.

* :class:`CollaborativeTrainer` with :class:`TrainConfig`: the loop, on one process or under
  ``torchrun`` (DDP), with AMP, gradient clipping, logging, atomic checkpoints and exact resume.
* :func:`build_schedule`: the phase plan as data.
* :func:`save_checkpoint` / :func:`load_checkpoint`: the checkpoint format (``weights_only`` safe).
"""

from lidplug.training.checkpoint import load_checkpoint, save_checkpoint
from lidplug.training.config import TrainConfig
from lidplug.training.schedule import LEARNERS, build_schedule, phase_at
from lidplug.training.trainer import CHECKPOINT_NAME, CollaborativeTrainer, TrainingDiverged

__all__ = [
    "CHECKPOINT_NAME",
    "LEARNERS",
    "CollaborativeTrainer",
    "TrainConfig",
    "TrainingDiverged",
    "build_schedule",
    "load_checkpoint",
    "phase_at",
    "save_checkpoint",
]
