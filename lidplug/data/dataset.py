"""Shared base of the lidplug datasets: index checks, the optional sample cache, the transform.

Subclasses implement ``__len__``, ``_make_sample(index)`` (returning a HU sample built with
:func:`lidplug.data.make_sample`) and ``_config()`` (everything that determines the samples, used to
key the on-disk cache). The cache stores samples *before* the transform, so one cache serves any
normalisation.
"""

from __future__ import annotations

import hashlib
import operator
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from lidplug.data.sample import LESION_TYPES, UNKNOWN_LESION_LABEL
from lidplug.version import __version__

__all__ = ["LesionDataset"]

_LABEL_MODES = ("lesion", "coarse")


class LesionDataset(Dataset):
    """Base class: ``dataset[i]`` -> sample dict (see :mod:`lidplug.data.sample`).

    Args:
        labels: ``"lesion"`` (every lesion label 1) or ``"coarse"`` (DeepLesion coarse types).
        transform: callable applied to each sample dict, e.g. ``MapImages(HUWindow())``.
        cache: None (compute every time), ``"memory"`` (keep samples in this process; each
            DataLoader worker holds its own copy) or a folder path (one ``.pt`` file per sample
            under a subfolder named by the dataset arguments and lidplug's version, shared by
            workers and runs; delete it after changing the simulator within one version; a
            damaged file is made again, with a warning).
    """

    source = "base"

    def __init__(
        self,
        *,
        labels: str = "lesion",
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        cache: str | os.PathLike | None = None,
    ) -> None:
        if labels not in _LABEL_MODES:
            raise ValueError(f"labels: expected one of {_LABEL_MODES}, got {labels!r}")
        self.labels = labels
        self.transform = transform
        self._memory: dict[int, dict[str, Any]] | None = {} if cache == "memory" else None
        self._cache_root = None if cache in (None, "memory") else Path(cache)
        self._cache_dir: Path | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def _make_sample(self, index: int) -> dict[str, Any]:
        raise NotImplementedError

    def _config(self) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        try:
            index = operator.index(index)  # ints and numpy integers, not floats
        except TypeError:
            raise TypeError(f"index: expected an int, got {type(index).__name__}") from None
        if not -n <= index < n:
            raise IndexError(f"index: expected -{n} <= index < {n}, got {index}")
        index %= n
        sample = self._cached_sample(index)
        return self.transform(sample) if self.transform is not None else sample

    def _cached_sample(self, index: int) -> dict[str, Any]:
        if self._memory is not None:
            if index not in self._memory:
                self._memory[index] = self._make_sample(index)
            # Hand out copies so a transform working in place cannot corrupt the cache.
            return _clone(self._memory[index])
        if self._cache_root is None:
            return self._make_sample(index)
        path = self._disk_dir() / f"{index:08d}.pt"
        if path.exists():
            cached = _read_cached(path)
            if cached is not None:
                return cached
            # A file cut short (a full disk, a copy interrupted) would fail the same way on
            # every run: made again and rewritten instead.
            warnings.warn(f"{path}: a damaged cache file, rebuilt", RuntimeWarning, stacklevel=3)
        sample = self._make_sample(index)
        # Write then rename: workers racing on one index never read a half-written file.
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            torch.save(sample, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return sample

    def _disk_dir(self) -> Path:
        if self._cache_dir is None:
            config = {"class": type(self).__name__, "lidplug": __version__, **self._config()}
            key = hashlib.sha256(repr(sorted(config.items())).encode()).hexdigest()[:16]
            self._cache_dir = self._cache_root / f"{type(self).__name__.lower()}-{key}"
            self._cache_dir.mkdir(parents=True, exist_ok=True)
        return self._cache_dir

    def _lesion_label(self, coarse_type: int) -> int:
        """Map a DeepLesion coarse type (1..8, or -1 for unknown) to this dataset's label."""
        if self.labels == "lesion":
            return 1
        return coarse_type if 1 <= coarse_type <= len(LESION_TYPES) else UNKNOWN_LESION_LABEL


def _read_cached(path: Path) -> dict[str, Any] | None:
    """A cached sample, or None when the file is not one (truncated, empty, foreign)."""
    try:
        sample = torch.load(path, weights_only=True)
    except Exception:  # torch raises RuntimeError, EOFError, UnpicklingError... on bad bytes
        return None
    if not (isinstance(sample, dict) and {"low", "normal", "target", "meta"} <= set(sample)):
        return None
    return sample


def _clone(sample: dict[str, Any]) -> dict[str, Any]:
    return {
        "low": sample["low"].clone(),
        "normal": sample["normal"].clone(),
        "target": {k: v.clone() for k, v in sample["target"].items()},
        "meta": dict(sample["meta"]),
    }
