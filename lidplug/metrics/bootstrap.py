"""Percentile bootstrap confidence intervals over images.

Images are the resampling unit: each replicate draws ``n`` image indices with replacement and
recomputes the statistic on them, so per-image metrics (PSNR, SSIM, RMSE) and pooled ones (FROC,
mAP) are treated alike. The interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
percentiles of the replicates (Efron's percentile method). The generator is NumPy's
``default_rng(seed)``: the same seed and ``n`` draw the same index sets, so the intervals of two
methods evaluated on the same images are paired, and a statistic that returns several values
(e.g. one per method, or a difference) sees one resample for all of them.

Why not ``scipy.stats.bootstrap``: it resamples arrays, while a FROC replicate needs the ragged
per-image detections of the drawn images, and replicates that come out undefined (a resample
without lesions has no sensitivity) must be dropped rather than turn the interval into NaN. Both
need the index-level loop written here, which is short.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["BootstrapInterval", "bootstrap", "bootstrap_mean"]

Statistic = Callable[[np.ndarray], float | Tensor | Mapping[str, float]]


@dataclass(frozen=True)
class BootstrapInterval:
    """A point estimate with its percentile bootstrap interval.

    Attributes:
        mean: the statistic on all images (not resampled); for a per-image metric, its mean
            over images.
        low: lower bound of the interval.
        high: upper bound of the interval.
        confidence: the interval's nominal coverage, e.g. 0.95.
        n_resamples: replicates the interval was computed from (after dropping NaN ones).
    """

    mean: float
    low: float
    high: float
    confidence: float
    n_resamples: int

    def as_dict(self) -> dict[str, float]:
        """``{"mean": ..., "low": ..., "high": ...}`` for JSON reports."""
        return {"mean": self.mean, "low": self.low, "high": self.high}


def _check(n: int, n_resamples: int, confidence: float) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"bootstrap: expected n >= 1 images, got {n!r}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ValueError(f"bootstrap: expected n_resamples >= 1, got {n_resamples!r}")
    if not (isinstance(confidence, int | float) and 0 < confidence < 1):
        raise ValueError(f"bootstrap: expected 0 < confidence < 1, got {confidence!r}")


def _as_values(value: object) -> tuple[dict[str, float], bool]:
    """Statistic output -> ({key: float}, whether it was a mapping)."""
    if isinstance(value, Mapping):
        return {str(k): float(v) for k, v in value.items()}, True
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"bootstrap: expected the statistic to return a scalar or a dict of scalars, got "
                f"a tensor of shape {tuple(value.shape)}"
            )
        return {"": float(value.item())}, False
    return {"": float(value)}, False  # type: ignore[arg-type]


def bootstrap(
    statistic: Statistic,
    n: int,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapInterval | dict[str, BootstrapInterval]:
    """Percentile bootstrap of a statistic computed from a set of images.

    Args:
        statistic: called with ``int64[n]`` image indices (``arange(n)`` for the point estimate,
            draws with replacement for the replicates); returns a float (or 1-element tensor),
            or a mapping from names to floats (e.g. ``FROCResult.as_dict()``). NaN results of a
            replicate are dropped, with a warning.
        n: number of images.
        n_resamples: bootstrap replicates.
        confidence: nominal coverage of the interval.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        A :class:`BootstrapInterval`, or a dict of them (one per key) when ``statistic`` returns
        a mapping.

    Raises:
        ValueError: on bad parameters, or a statistic whose keys change between calls.

    Example:
        >>> matches = match_detections(detections, targets)  # once
        >>> ci = bootstrap(lambda idx: froc_from_matches([matches[i] for i in idx]).as_dict(),
        ...                len(matches), seed=0)
        >>> ci["cpm"].as_dict()  # {"mean": ..., "low": ..., "high": ...}
    """
    _check(n, n_resamples, confidence)
    estimate, is_mapping = _as_values(statistic(np.arange(n)))
    rng = np.random.default_rng(seed)
    replicates = np.empty((n_resamples, len(estimate)), dtype=np.float64)
    for r in range(n_resamples):
        values, _ = _as_values(statistic(rng.integers(0, n, size=n)))
        if values.keys() != estimate.keys():
            raise ValueError(
                f"bootstrap: expected the statistic to return the keys {sorted(estimate)} every "
                f"time, got {sorted(values)}"
            )
        replicates[r] = [values[k] for k in estimate]
    q = 100.0 * np.array([(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    out: dict[str, BootstrapInterval] = {}
    dropped: dict[str, int] = {}
    for j, key in enumerate(estimate):
        column = replicates[:, j]
        kept = column[~np.isnan(column)]
        if kept.size < column.size:
            dropped[key or "the statistic"] = column.size - kept.size
        low, high = np.percentile(kept, q) if kept.size else (math.nan, math.nan)
        out[key] = BootstrapInterval(
            mean=estimate[key], low=float(low), high=float(high), confidence=float(confidence),
            n_resamples=int(kept.size),
        )
    if dropped:
        warnings.warn(
            f"bootstrap: dropped NaN replicates (e.g. resamples without lesions), out of "
            f"{n_resamples}: {dropped}",
            RuntimeWarning,
            stacklevel=2,
        )
    return out if is_mapping else out[""]


def bootstrap_mean(
    values: Tensor | np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapInterval:
    """Bootstrap interval of the mean of per-image values (e.g. :func:`lidplug.metrics.psnr`).

    Args:
        values: ``[n]`` one value per image.
        n_resamples: bootstrap replicates.
        confidence: nominal coverage of the interval.
        seed: seed of ``numpy.random.default_rng`` (same seed, same ``n``: same resamples as
            :func:`bootstrap`).

    Returns:
        :class:`BootstrapInterval` whose ``mean`` is the mean over all images.

    Raises:
        ValueError: on an empty or non-1D input, or bad parameters.
    """
    if isinstance(values, Tensor):
        values = values.detach().to("cpu", torch.float64).numpy()
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(
            f"bootstrap_mean: expected a non-empty 1D array of per-image values, got shape "
            f"{v.shape}"
        )
    return bootstrap(
        lambda idx: float(v[idx].mean()), v.size, n_resamples=n_resamples,
        confidence=confidence, seed=seed,
    )
