"""Training stages of an experiment: shared detector pretraining and warm-up, then the two arms.

The arms are compared under one budget: both start from the same pretrained detector and the
same warmed-up denoiser (deep copies), and both take ``cfg.denoiser_updates`` denoiser steps.
The baseline's steps use the pixel loss only; the LIDnet arm's use the full objective of
:func:`lidplug.wrap`, with the detector updated between rounds as ``cfg.mode`` says. Every stage
runs through :class:`lidplug.training.CollaborativeTrainer`, so the demo exercises the same loop
users run.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

from torch import nn
from torch.utils.data import Dataset

from lidplug.experiments.config import ExperimentConfig
from lidplug.experiments.detector import build_detector
from lidplug.models import create_denoiser
from lidplug.training import CollaborativeTrainer, TrainConfig
from lidplug.wrapper import LesionAwareDenoiser, wrap

__all__ = ["Stage", "pretrain", "train_arm"]


@dataclass
class Stage:
    """The outcome of one training stage.

    Attributes:
        model: the wrapped model after training (denoiser and detector).
        history: per step the logged terms (``loss``, ``pixel``, ...) and ``phase``.
        seconds: wall time of the stage.
    """

    model: LesionAwareDenoiser
    history: list[dict[str, float | str]] = field(default_factory=list)
    seconds: float = 0.0


def _train_config(cfg: ExperimentConfig, batch_size: int | None = None,
                  **schedule) -> TrainConfig:
    return TrainConfig(batch_size=batch_size or cfg.batch_size, lr_denoiser=cfg.lr_denoiser,
                       lr_detector=cfg.lr_detector, device=cfg.device, seed=cfg.seed,
                       progress=cfg.progress, out_dir=None,
                       checkpoint_every=10**9, **schedule)


def _run(model: LesionAwareDenoiser, dataset: Dataset, tc: TrainConfig) -> Stage:
    start = time.perf_counter()
    trainer = CollaborativeTrainer(model, dataset, tc)
    phases = [phase for phase, n in trainer.schedule for _ in range(n)]
    history = [{**terms, "phase": phase}
               for terms, phase in zip(trainer.fit(), phases, strict=True)]
    return Stage(model=model.cpu(), history=history, seconds=time.perf_counter() - start)


def pretrain(cfg: ExperimentConfig, train: Dataset, denoiser: nn.Module | None = None,
             detector: nn.Module | None = None) -> Stage:
    """Pretrain the detector on normal-dose images and warm the denoiser up (pixel loss).

    Args:
        cfg: the configuration.
        train: training samples (window units).
        denoiser, detector: start from these instead of fresh ``cfg`` models.
    """
    denoiser = denoiser if denoiser is not None else create_denoiser(cfg.denoiser,
                                                                     **cfg.denoiser_kwargs)
    detector = detector if detector is not None else build_detector(
        cfg.size, fpn_channels=cfg.fpn_channels)
    model = wrap(denoiser, detector, det_weight=0.0, roi_weight=0.0)
    # Two runs, since the detector pretraining has its own batch size.
    stages = []
    if cfg.detector_pretrain_steps:
        stages.append(_run(model, train, _train_config(
            cfg, cfg.detector_batch_size, detector_pretrain_steps=cfg.detector_pretrain_steps,
            rounds=0)))
    if cfg.warmup_steps or not stages:
        stages.append(_run(model, train, _train_config(cfg, warmup_steps=cfg.warmup_steps,
                                                       rounds=0)))
    return Stage(model=model, history=[h for s in stages for h in s.history],
                 seconds=sum(s.seconds for s in stages))


def train_arm(cfg: ExperimentConfig, start: LesionAwareDenoiser, train: Dataset, *,
              lidnet: bool, mode: str | None = None, det_weight: float | None = None,
              roi_weight: float | None = None) -> Stage:
    """Train one arm from (copies of) the pretrained models in ``start``.

    Args:
        cfg: the configuration.
        start: the :func:`pretrain` model; not changed.
        train: training samples.
        lidnet: False for the pixel-loss baseline, True for the LIDnet objective.
        mode, det_weight, roi_weight: override ``cfg`` (for ablations).

    Returns:
        The :class:`Stage`; ``model.denoiser`` is the arm's denoiser.
    """
    denoiser = copy.deepcopy(start.denoiser)
    detector = copy.deepcopy(start.detector)
    if not lidnet:
        model = wrap(denoiser, detector, det_weight=0.0, roi_weight=0.0)
        return _run(model, train, _train_config(cfg, warmup_steps=cfg.denoiser_updates,
                                                rounds=0))
    model = wrap(denoiser, detector,
                 det_weight=cfg.det_weight if det_weight is None else det_weight,
                 roi_weight=cfg.roi_weight if roi_weight is None else roi_weight)
    tc = _train_config(cfg, mode=mode or cfg.mode, rounds=cfg.rounds,
                       denoiser_steps=cfg.denoiser_steps, detector_steps=cfg.detector_steps)
    return _run(model, train, tc)
