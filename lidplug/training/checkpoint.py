"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings and lists (so the safe loader reads it):
format tag, lidplug version, step, data position, configs, the state dicts of both models, their
optimisers and schedulers, the gradient scaler, the feedback balancer, the step history, and the
generator states of every process.

Atomic write: the file is written under a temporary name in the same folder, flushed to disk, and
renamed over the old one (``os.replace`` is atomic on POSIX and Windows), so a process killed
mid-write leaves the previous checkpoint intact, never a truncated one. The temporary files such
a kill leaves behind (``.latest.pt.<pid>.tmp``, as large as a checkpoint) are removed by the next
successful write.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["FORMAT", "get_rng_state", "load_checkpoint", "nonfinite_entries", "save_checkpoint",
           "set_rng_state"]

FORMAT = "lidplug-checkpoint-1"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by killed writers
        pid = stale.name[len(path.name) + 2:-4]
        if pid.isdigit() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:  # make the rename itself durable
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def _alive(pid: int) -> bool:
    # Another process still writing its own temporary file must keep it.
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    return True


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint with the safe (``weights_only``) loader, on CPU.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: when the file is not a lidplug checkpoint (or is corrupt).
    """
    from lidplug.deploy import read_checkpoint  # the one safe reader of torch.save files

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    try:
        state = read_checkpoint(path)
    except ValueError as err:  # says what the file is instead; keep that as the cause
        raise ValueError(f"checkpoint {path}: expected a lidplug checkpoint, could not read it "
                         f"({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"checkpoint {path}: expected format {FORMAT!r}, got {got!r}")
    return state


def nonfinite_entries(state: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold NaN or inf: weights a
    diverged run or a damaged file left, which would otherwise be scored or exported as if
    they were a model (NaN compares equal to NaN in a verification)."""
    return [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
            and not bool(torch.isfinite(v).all())]


def get_rng_state() -> dict[str, Any]:
    """Every generator this process draws from: Python, NumPy, torch CPU and CUDA."""
    version, mt, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": [version, list(mt), gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss,
                  np_gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` captured."""
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
