"""Collaborative training of a wrapped denoiser and its detector (LIDnet), on 1..N processes.

    trainer = CollaborativeTrainer(wrap(denoiser, detector), dataset, TrainConfig(out_dir="run"))
    trainer.fit()

``dataset`` yields lidplug sample dicts (``low``, ``normal``, ``target``; see
:mod:`lidplug.data.sample`) with images already in the denoiser's units, e.g.
``PhantomDataset(..., transform=MapImages(HUWindow()))``.

Scale-out. Under ``torchrun`` each process trains on its shard (``DistributedSampler``) and the
denoiser and the detector are each wrapped in ``DistributedDataParallel``. Each is called through
its DDP wrapper only in the phases where it learns (a frozen model is called directly, so no
gradient synchronisation runs for it). Only rank 0 writes checkpoints and logs; every rank reads
the checkpoint to resume (a shared filesystem across nodes).

Resume. A checkpoint holds models, optimisers, schedulers, the gradient scaler, the feedback
balancer, the step (the phase follows from it), the data position (epoch and batch), the step
history and every process's generator states; with ``deterministic=True`` a resumed run reproduces the uninterrupted one.

Divergence. The loss is checked before every backward (all ranks agree); a NaN/inf loss raises
:class:`TrainingDiverged` before any parameter is touched, and the last checkpoint stays the last
good one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lidplug.data.sample import collate, derive_seed
from lidplug.losses import pixel_loss
from lidplug.training.checkpoint import (
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from lidplug.training.config import TrainConfig
from lidplug.training.distributed import init_distributed
from lidplug.training.logger import TrainLogger
from lidplug.training.schedule import LEARNERS, build_schedule, phase_at, updates_per_model
from lidplug.version import __version__
from lidplug.wrapper import LesionAwareDenoiser

__all__ = ["CHECKPOINT_NAME", "CollaborativeTrainer", "TrainingDiverged"]

CHECKPOINT_NAME = "latest.pt"
_MODELS = ("denoiser", "detector")


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; training stopped before applying it."""


def _optimizer(cfg: TrainConfig, module: nn.Module, lr: float) -> torch.optim.Optimizer | None:
    params = list(module.parameters())
    if not params:  # e.g. nn.Identity as the denoiser of a detector-only run: nothing to learn
        return None
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=cfg.weight_decay)


def _scheduler(cfg: TrainConfig, optimizer, updates: int):
    if optimizer is None:
        return None
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(updates, 1))
    if cfg.scheduler == "onecycle":
        lr = optimizer.param_groups[0]["lr"]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr,
                                                   total_steps=max(updates, 1), pct_start=0.1)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the OS tells, else the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity on this OS
        return max(1, os.cpu_count() or 1)


def loader_workers(cfg: TrainConfig) -> int:
    """DataLoader workers to start: ``cfg.num_workers``, capped at :func:`usable_cpus` (more
    workers than CPUs only add processes and memory)."""
    return min(cfg.num_workers, usable_cpus())


def _to_device(batch: dict[str, Any], device: torch.device) -> tuple:
    low = batch["low"].to(device, non_blocking=True)
    normal = batch["normal"].to(device, non_blocking=True)
    targets = [{k: v.to(device) for k, v in t.items()} for t in batch["target"]]
    return low, normal, targets


class CollaborativeTrainer:
    """Runs the collaborative schedule of :class:`TrainConfig` on a wrapped model.

    Args:
        model: the :func:`lidplug.wrap` result; trained in place.
        dataset: a map-style dataset of lidplug sample dicts (see the module docstring).
        config: the options; defaults to ``TrainConfig()``.
        resume: True to continue from ``<out_dir>/latest.pt`` when it exists, or a checkpoint
            path; False starts fresh (and overwrites that checkpoint when it is due).

    Attributes:
        step: steps done so far.
        history: one dict per step done (this process's values): ``step`` (1-based), ``phase``
            and the logged terms. A resumed run starts with the history in its checkpoint, so
            it always covers every step from the first.
    """

    def __init__(self, model: LesionAwareDenoiser, dataset: Dataset,
                 config: TrainConfig | None = None, *, resume: bool | str | os.PathLike = False
                 ) -> None:
        if not isinstance(model, LesionAwareDenoiser):
            raise TypeError(f"model: expected the result of lidplug.wrap(denoiser, detector), got "
                            f"{type(model).__name__}")
        self.model = model
        self.dataset = dataset
        self.config = cfg = config or TrainConfig()
        self.schedule = build_schedule(cfg)
        self.total_steps = sum(n for _, n in self.schedule)
        self.dist = init_distributed(cfg.device)
        self.device = self.dist.device
        model.to(self.device)

        self.optimizers = {
            "denoiser": _optimizer(cfg, model.denoiser, cfg.lr_denoiser),
            "detector": _optimizer(cfg, model.detector, cfg.lr_detector),
        }
        updates = updates_per_model(self.schedule)
        idle = [k for k, opt in self.optimizers.items() if opt is None and updates[k]]
        if idle:
            raise ValueError(f"config: the schedule updates the {idle[0]} for {updates[idle[0]]} "
                             f"steps, but {type(getattr(model, idle[0])).__name__} has no "
                             "parameters; expected a model that can learn, or a schedule "
                             "without its phases")
        self.schedulers = {k: _scheduler(cfg, opt, updates[k])
                           for k, opt in self.optimizers.items()}
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")
        self._ddp = self._wrap_ddp() if self.dist.enabled else {}

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.history: list[dict[str, float]] = []
        self._phase: str | None = None
        self._last_checkpoint: Path | None = None
        self._started = False  # seeded, or restored from a checkpoint
        path = self._resume_path(resume)
        if path is not None:
            self.load(path)

    # ---- setup -------------------------------------------------------------------------------

    def _wrap_ddp(self) -> dict[str, nn.Module]:
        # DDP registers gradient hooks on the parameters that require grad when it is built, so
        # both models are made trainable first; phases then freeze one of them.
        self.model.set_trainable(denoiser=True, detector=True)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return {name: DistributedDataParallel(
                    getattr(self.model, name), device_ids=ids,
                    find_unused_parameters=self.config.find_unused_parameters)
                for name in _MODELS}

    def _resume_path(self, resume) -> Path | None:
        if resume is False or resume is None:
            return None
        if resume is True:
            if self.config.out_dir is None:
                raise ValueError("resume=True: expected config.out_dir holding latest.pt, got None")
            path = Path(self.config.out_dir) / CHECKPOINT_NAME
            return path if path.is_file() else None
        return Path(resume)

    @property
    def checkpoint_path(self) -> Path | None:
        """Where the latest checkpoint goes (None when ``out_dir`` is None)."""
        out = self.config.out_dir
        return None if out is None else Path(out) / CHECKPOINT_NAME

    # ---- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs (generator states: this process's only)."""
        return {
            "lidplug_version": __version__,
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "train_config": self.config.to_dict(),
            "wrap_config": self.model.config.to_dict(),
            "denoiser": self.model.denoiser.state_dict(),
            "detector": self.model.detector.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()
                           if o is not None},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()
                           if s is not None},
            "scaler": self.scaler.state_dict(),
            "world": self.dist.world,
            "history": list(self.history),
            "balancer": ({} if self.model.balancer is None
                         else self.model.balancer.state_dict()),
        }

    def save(self) -> Path | None:
        """Write the checkpoint (rank 0 writes; every rank must call this)."""
        rng = self.dist.gather(get_rng_state())  # collective: every rank takes part
        path = self.checkpoint_path
        if path is not None and self.dist.is_main:
            save_checkpoint({**self.state_dict(), "rng": rng}, path)
            self._last_checkpoint = path
        self.dist.barrier()
        return path

    def load(self, path: str | os.PathLike) -> None:
        """Restore a checkpoint written by :meth:`save` (see the module docstring)."""
        state = load_checkpoint(path)
        for name in _MODELS:
            try:
                getattr(self.model, name).load_state_dict(state[name])
            except (RuntimeError, KeyError) as err:  # another model than the one saved
                raise ValueError(f"checkpoint {path}: its {name} does not fit this {name} "
                                 f"({' '.join(str(err).split())[:300]}); expected the model "
                                 "the checkpoint was trained with") from None
        if self.model.balancer is not None and state.get("balancer"):
            self.model.balancer.load_state_dict(state["balancer"])
        for k in _MODELS:
            if self.optimizers[k] is not None:
                self.optimizers[k].load_state_dict(state["optimizers"][k])
                self.schedulers[k].load_state_dict(state["schedulers"][k])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.batch_in_epoch = state["batch_in_epoch"]
        self.history = list(state.get("history", []))[: self.step]
        rng = state["rng"]
        if len(rng) == self.dist.world:
            set_rng_state(rng[self.dist.rank])
        elif self.dist.is_main:
            import warnings

            warnings.warn(f"checkpoint {path} was written by {len(rng)} process(es), this run has "
                          f"{self.dist.world}: random streams restart from the seed", stacklevel=2)
        self._started = True
        self._last_checkpoint = Path(path)

    # ---- data --------------------------------------------------------------------------------

    def _batches(self) -> Iterator[dict[str, Any]]:
        cfg = self.config
        while True:
            sampler = DistributedSampler(self.dataset, num_replicas=self.dist.world,
                                         rank=self.dist.rank, shuffle=True, seed=cfg.seed,
                                         drop_last=True)
            sampler.set_epoch(self.epoch)
            per_epoch = len(sampler) // cfg.batch_size
            if per_epoch == 0:
                raise ValueError(f"dataset: expected at least batch_size x processes = "
                                 f"{cfg.batch_size * self.dist.world} samples, got "
                                 f"{len(self.dataset)}")
            # Resume mid-epoch: skip the batches already done, at the index level (no loading).
            indices = list(sampler)[self.batch_in_epoch * cfg.batch_size:]
            # Its own generator: a DataLoader draws worker seeds from the global one otherwise,
            # and a resumed run (a new loader mid-epoch) would shift every later random draw.
            seed = derive_seed(cfg.seed, "loader", self.dist.rank, self.epoch)
            loader = DataLoader(self.dataset, batch_size=cfg.batch_size, sampler=indices,
                                collate_fn=collate, num_workers=loader_workers(cfg), drop_last=True,
                                pin_memory=self.device.type == "cuda",
                                generator=torch.Generator().manual_seed(seed))
            for batch in loader:
                self.batch_in_epoch += 1
                yield batch
            self.epoch += 1
            self.batch_in_epoch = 0

    # ---- steps -------------------------------------------------------------------------------

    def _enter_phase(self, phase: str) -> None:
        if phase != self._phase:
            learners = LEARNERS[phase]
            self.model.set_trainable(denoiser="denoiser" in learners,
                                     detector="detector" in learners)
            self._phase = phase

    def _call(self, name: str, phase: str) -> nn.Module:
        # The DDP wrapper only for a model that learns in this phase (see the module docstring).
        if name in self._ddp and name in LEARNERS[phase]:
            return self._ddp[name]
        return getattr(self.model, name)

    def _autocast(self):
        if self.config.amp is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _objective(self, phase: str, low, normal, targets) -> dict[str, Any]:
        model = self.model
        if phase == "detector_pretrain":
            return model.detector_objective(normal, targets, detector=self._call("detector", phase))
        if phase == "warmup":
            output = self._call("denoiser", phase)(low)
            loss = pixel_loss(output, normal, model.config.pixel_loss)
            return {"loss": loss, "pixel": loss}
        if phase == "detector":
            with torch.no_grad():
                denoised = model.denoiser(low)
            return model.detector_objective(denoised, targets,
                                            detector=self._call("detector", phase))
        return model.denoiser_objective(low, normal, targets,
                                        denoiser=self._call("denoiser", phase),
                                        detector=self._call("detector", phase))

    @staticmethod
    def _terms(result: dict[str, Any]) -> dict[str, float]:
        terms = {k: float(v.detach()) for k, v in result.items()
                 if k in ("loss", "pixel", "detection", "roi_perceptual")}
        for k, v in result.get("weights", {}).items():
            terms[f"weight/{k}"] = float(v)
        for k, v in result.get("detector_losses", {}).items():
            terms[f"detector/{k}"] = float(v.detach())
        return terms

    def _train_step(self, phase: str, batch: dict[str, Any]) -> dict[str, float]:
        self._enter_phase(phase)
        learners = LEARNERS[phase]
        optimizers = [self.optimizers[k] for k in learners]  # not None: checked at construction
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        low, normal, targets = _to_device(batch, self.device)
        with self._autocast():
            result = self._objective(phase, low, normal, targets)
        terms = self._terms(result)
        if self.dist.any(not torch.isfinite(result["loss"]).item()):
            self._diverged(phase, terms)
        self.scaler.scale(result["loss"]).backward()
        for name, opt in zip(learners, optimizers, strict=True):
            if self.config.grad_clip is not None:
                self.scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(getattr(self.model, name).parameters(),
                                         self.config.grad_clip)
            self.scaler.step(opt)
        self.scaler.update()
        for name in learners:
            self.schedulers[name].step()
        return terms

    def _diverged(self, phase: str, terms: dict[str, float]) -> None:
        last = self._last_checkpoint
        where = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        shown = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
        raise TrainingDiverged(f"non-finite loss at step {self.step} ({phase} phase) on some "
                               f"process: {shown}; training stopped before applying it, {where}")

    # ---- the loop ----------------------------------------------------------------------------

    def _seed(self) -> None:
        import random

        import numpy as np

        seed = derive_seed(self.config.seed, self.dist.rank)
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)

    def fit(self, stop_at: int | None = None) -> list[dict[str, float]]:
        """Run (or continue) the schedule to its end, or to step ``stop_at``.

        Args:
            stop_at: stop once this many steps are done (a checkpoint is written there), e.g.
                to split a run into jobs; None runs to the end of the schedule.

        Returns:
            :attr:`history`.

        Raises:
            TrainingDiverged: on a NaN/inf loss (the last checkpoint is kept).
        """
        cfg = self.config
        end = self.total_steps if stop_at is None else min(int(stop_at), self.total_steps)
        if not self._started:
            self._seed()
            self._started = True
        deterministic_before = torch.are_deterministic_algorithms_enabled()
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        logger = TrainLogger(cfg.out_dir, total=self.total_steps, start=self.step,
                             enabled=self.dist.is_main, tensorboard=cfg.tensorboard,
                             progress=cfg.progress)
        self.model.train()
        batches = self._batches()
        try:
            while self.step < end:
                phase = phase_at(self.schedule, self.step)
                terms = self._train_step(phase, next(batches))
                self.step += 1
                self.history.append({"step": self.step, "phase": phase, **terms})
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    logger.log(self.step, phase, self.dist.mean(terms))
                logger.advance(phase, terms)
                if self.step % cfg.checkpoint_every == 0 or self.step == end:
                    self.save()
        finally:
            logger.close()
            torch.use_deterministic_algorithms(deterministic_before)
        return self.history
