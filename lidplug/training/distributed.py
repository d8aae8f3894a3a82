"""Process-group setup for ``torchrun`` and the few collectives the trainer needs.

The trainer runs unchanged in one process or under ``torchrun --nproc_per_node=N`` (and
``--nnodes``): torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, the rendezvous)
starts the process group here, NCCL on GPUs and gloo on CPU. Without it, everything below is a
no-op for a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Dist", "init_distributed", "resolve_device"]


@dataclass(frozen=True)
class Dist:
    """Where this process stands: ``rank`` of ``world`` on ``device``."""

    rank: int
    world: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on any rank."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self._comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average of each value over the ranks (for logging)."""
        if not self.enabled or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t)
        return dict(zip(keys, (t / self.world).tolist(), strict=True))

    def gather(self, obj):
        """List of every rank's ``obj`` (on every rank)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    @property
    def _comm_device(self) -> torch.device:
        # NCCL reduces CUDA tensors only; gloo takes CPU ones.
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> this process's GPU if there is one, else the CPU; ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` as named. The one device rule of the trainer, the demo and the CLI.

    Raises:
        ValueError: a CUDA device asked for where torch sees none.
    """
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device: expected a usable CUDA device for {preference!r}, got none "
                         "(torch.cuda.is_available() is False)")
    if preference.startswith("cuda:"):
        return torch.device(preference)
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def init_distributed(device: str = "auto") -> Dist:
    """Join torchrun's process group when launched by it; pick this process's device.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (see :class:`TrainConfig`).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return Dist(rank=rank, world=world, device=dev)
