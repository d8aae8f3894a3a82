"""Training stage: every arm of a run from the same starting models, under the same budget.

Fairness: each arm trains a deep copy of one starting denoiser and one starting detector (the
plug-in use: an existing denoiser gets wrapped), with the same ``[train]`` schedule and seed, so
every arm takes the same number of denoiser updates on batches from the same stream. A plain arm
(``feedback = false``) uses the pixel loss only and takes no detector steps; a LIDnet arm adds
the detector's feedback (:func:`lidplug.wrap`) and, in ``"alternating"`` mode, detector steps on
denoised slices. Every arm runs through :class:`lidplug.CollaborativeTrainer`, the loop users
run, and writes ``<out>/<arm>/``: ``latest.pt`` (checkpoint, with the step history),
``log.csv``, ``history.json`` and ``denoiser.pt`` (the denoiser alone, TorchScript; a model
TorchScript cannot hold is written as ``denoiser.pt2``, torch.export, with a warning).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from lidplug.data import derive_seed
from lidplug.pipeline.build import build_model
from lidplug.pipeline.spec import ArmSpec, RunSpec
from lidplug.training import CHECKPOINT_NAME, CollaborativeTrainer
from lidplug.wrapper import LesionAwareDenoiser, wrap

__all__ = ["ArmResult", "starting_models", "train_arm", "wrap_options"]

EXPORT_NAME = "denoiser.pt"
HISTORY_NAME = "history.json"


@dataclass
class ArmResult:
    """One trained arm.

    Attributes:
        name: the arm's name.
        model: the wrapped model after training (``model.denoiser``, ``model.detector``).
        history: per step the logged terms and ``phase``.
        seconds: wall time of the arm's training.
        folder: where its files are (None when nothing is written).
        notes: what went wrong without stopping the training (a degenerate feedback term:
            :mod:`lidplug.balance`), for the run's record, its log and its report.
    """

    name: str
    model: LesionAwareDenoiser
    history: list[dict[str, float | str]] = field(default_factory=list)
    seconds: float = 0.0
    folder: Path | None = None
    notes: list[str] = field(default_factory=list)


def starting_models(spec: RunSpec, folder: Path | None = None, *, weights: bool = True
                    ) -> tuple[nn.Module, nn.Module]:
    """The run's starting denoiser and detector (every arm trains copies of them).

    The global generator is seeded first, from ``train.seed``, so models built from their own
    initialisation are the same in every run of the same file.
    """
    torch.manual_seed(derive_seed(spec.train.seed, "init"))
    denoiser = build_model(spec.model_spec("denoiser"), "denoiser", folder, weights=weights)
    detector = build_model(spec.model_spec("detector"), "detector", folder, weights=weights)
    return denoiser, detector


def train_arm(spec: RunSpec, arm: ArmSpec, denoiser: nn.Module, detector: nn.Module,
              train_set: Dataset, out: Path | None, *, resume: bool = False,
              progress: bool = True, export: bool = True) -> ArmResult:
    """Train one arm from copies of ``denoiser`` and ``detector`` (left unchanged).

    Args:
        spec: the run.
        arm: which arm (its ``wrap`` / ``train`` overrides apply).
        denoiser, detector: the starting models.
        train_set: training samples in the models' window.
        out: the run's output folder (the arm writes ``out/<arm>/``), or None for nothing on disk.
        resume: continue from ``out/<arm>/latest.pt`` when it exists.
        progress: show a progress bar.
        export: also write the trained denoiser as TorchScript.

    Returns:
        The :class:`ArmResult`.
    """
    folder = None if out is None else Path(out) / arm.name
    cfg = dataclasses.replace(spec.arm_train(arm), progress=progress,
                              out_dir=None if folder is None else str(folder))
    model = wrap(copy.deepcopy(denoiser), copy.deepcopy(detector), **wrap_options(spec, arm))
    if len(train_set) < cfg.batch_size:
        raise ValueError(f"data.train: expected at least train.batch_size={cfg.batch_size} "
                         f"slices, got {len(train_set)}")
    start = time.perf_counter()
    trainer = CollaborativeTrainer(model, train_set, cfg, resume=resume)
    trainer.fit()
    seconds = time.perf_counter() - start
    model.cpu()
    notes = feedback_notes(model)
    if folder is not None:
        (folder / HISTORY_NAME).write_text(json.dumps(trainer.history) + "\n")
        if export:
            _export_arm(model, folder, arm.name)
    return ArmResult(arm.name, model, list(trainer.history), seconds, folder, notes)


def feedback_notes(model: LesionAwareDenoiser) -> list[str]:
    """The feedback terms the balancer found degenerate, one line each."""
    found = {} if model.balancer is None else model.balancer.degenerate
    return [f"the {term} feedback term was degenerate: {why}" for term, why in found.items()]


def _export_arm(model: LesionAwareDenoiser, folder: Path, arm: str) -> Path:
    """The trained denoiser as TorchScript, or as a torch.export program (``denoiser.pt2``)
    where TorchScript cannot hold it (a third-party model that neither scripts nor traces the
    same on other sizes), with a warning: the training is never lost to its export."""
    from lidplug.deploy import ExportError, ExportWarning
    from lidplug.deploy import export as export_denoiser

    config = {"arm": arm, "wrap": model.config.to_dict()}
    try:
        export_denoiser(model, folder / EXPORT_NAME, config=config)
        return folder / EXPORT_NAME
    except ExportError as err:
        script_error = " ".join(str(err).split())
    program = (folder / EXPORT_NAME).with_suffix(".pt2")
    try:
        export_denoiser(model, program, config=config)
    except ExportError as err:
        warnings.warn(f"arm {arm!r}: the trained denoiser could not be exported (TorchScript: "
                      f"{script_error}; torch.export: {' '.join(str(err).split())}); its "
                      f"checkpoint holds it", ExportWarning, stacklevel=3)
        return folder / CHECKPOINT_NAME
    warnings.warn(f"arm {arm!r}: wrote {program.name} (torch.export) instead of {EXPORT_NAME}: "
                  f"{script_error}", ExportWarning, stacklevel=3)
    return program


def wrap_options(spec: RunSpec, arm: ArmSpec) -> dict:
    """The keyword arguments of :func:`lidplug.wrap` for ``arm``: ``[wrap]`` with its overrides,
    and the probe batch the denoiser is checked on, at the run's slice size where it is fixed
    (phantoms; a model that takes only some sizes then fails before training, not at its first
    step)."""
    options = dataclasses.asdict(spec.arm_wrap(arm))
    if spec.data.kind == "phantom":
        from lidplug.models.check import probe_batch

        options["example_input"] = probe_batch(spec.data.size)
    return options


def checkpoint_of(out: Path, arm: str) -> Path:
    """Where arm ``arm`` of a run in ``out`` keeps its checkpoint."""
    return Path(out) / arm / CHECKPOINT_NAME
