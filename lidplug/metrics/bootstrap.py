"""Percentile bootstrap confidence intervals over images.

Images are the resampling unit: each replicate draws ``n`` image indices with replacement and
recomputes the statistic on them, so per-image metrics (PSNR, SSIM, RMSE) and pooled ones (FROC,
mAP) are treated alike. The interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
percentiles of the replicates (Efron's percentile method), **recentred** where the replicates are
biased against the estimate: shifted by ``estimate - median(replicates)``, so the replicates'
median sits on the estimate (a bootstrap bias correction of location). The percentiles straddle
the median, so a recentred interval contains its estimate by construction. It is used for the
statistics named in ``recentre`` (the model observer, which refits its template on every
replicate and whose replicates drawn with repeats are biased against the full-sample fit) and for
any statistic whose percentile interval would exclude its estimate; ``method`` says which. The generator is NumPy's
``default_rng(seed)``: the same seed and ``n`` draw the same index sets, so the intervals of two
methods evaluated on the same images are paired, and a statistic that returns several values
(e.g. one per method, or a difference) sees one resample for all of them.

Why not ``scipy.stats.bootstrap``: it resamples arrays, while a FROC replicate needs the ragged
per-image detections of the drawn images, and replicates that come out undefined (a resample
without lesions has no sensitivity) must be dropped rather than turn the interval into NaN. Both
need the index-level loop written here, which is short.

Per-lesion values (:func:`lidplug.metrics.lesion_metrics`) are resampled with their images:
:func:`lesion_mean_statistic` turns them into a statistic of image indices (a cluster bootstrap:
lesions of one slice share its noise and the denoiser's behaviour on it).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["MIN_LESIONS", "MIN_SLICES", "BootstrapInterval", "bootstrap", "bootstrap_mean",
           "judge", "judge_metric", "lesion_mean_statistic"]

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
        method: ``"percentile"``, or ``"recentred"`` (see the module docstring).
    """

    mean: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    method: str = "percentile"

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
    recentre: Collection[str] | Callable[[str], bool] = (),
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
        recentre: keys (or a predicate on keys; ``""`` for a scalar statistic) whose interval is
            always recentred on the estimate (see the module docstring); every other key is
            recentred only where its percentile interval would exclude the estimate.

    Returns:
        A :class:`BootstrapInterval`, or a dict of them (one per key) when ``statistic`` returns
        a mapping. Every interval with a finite estimate contains it.

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
    always = recentre if callable(recentre) else set(recentre).__contains__
    out: dict[str, BootstrapInterval] = {}
    dropped: dict[str, int] = {}
    for j, key in enumerate(estimate):
        column = replicates[:, j]
        kept = column[~np.isnan(column)]
        if kept.size < column.size:
            dropped[key or "the statistic"] = column.size - kept.size
        low, high = np.percentile(kept, q) if kept.size else (math.nan, math.nan)
        est, method = estimate[key], "percentile"
        if kept.size and math.isfinite(est) and (always(key) or not low <= est <= high):
            shift = est - float(np.median(kept))
            low, high, method = low + shift, high + shift, "recentred"
        out[key] = BootstrapInterval(
            mean=est, low=float(low), high=float(high), confidence=float(confidence),
            n_resamples=int(kept.size), method=method,
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


def lesion_mean_statistic(
    values: np.ndarray | Tensor | Mapping[str, np.ndarray | Tensor],
    image_index: np.ndarray | Tensor,
    n_images: int,
    *,
    weights: np.ndarray | Tensor | None = None,
) -> Callable[[np.ndarray], float | dict[str, float]]:
    """A :func:`lidplug.metrics.bootstrap` statistic: the mean over the lesions of drawn images.

    Images (slices), not lesions, are the resampling unit: lesions of one slice share its noise
    and the denoiser's behaviour on it (a cluster bootstrap). A replicate averages the lesions of
    the drawn images, each as often as its image was drawn; it is NaN (dropped by ``bootstrap``)
    when the drawn images hold no lesion (or only lesions of weight 0).

    Args:
        values: ``[R]`` one value per lesion (e.g. ``lesion_metrics(...)["cnr"]``, or a paired
            difference of two methods on the same regions), or a mapping of such arrays.
        image_index: ``int[R]`` each lesion's image (``lesion_metrics(...)["image"]``).
        n_images: number of images, lesion-free ones included (the ``n`` of ``bootstrap``).
        weights: optional ``[R]`` non-negative lesion weights for a weighted mean. With
            ``abs(contrast_hu)`` the mean contrast recovery becomes the pooled one, recovered
            over true contrast summed over lesions, which faint lesions (whose ratio is noisy)
            cannot dominate.

    Returns:
        ``statistic(indices: int64[k]) -> float`` (a dict of floats for a mapping).

    Raises:
        ValueError: on mis-shaped or non-finite values or weights, negative weights, or image
            indices outside ``[0, n_images)``.

    Example:
        >>> m = lesion_metrics(denoised, phantoms, regions)
        >>> ci = bootstrap(lesion_mean_statistic(m["contrast_recovery"], m["image"], n), n)
    """
    is_mapping = isinstance(values, Mapping)
    columns = dict(values) if is_mapping else {"": values}
    idx = np.asarray(image_index.cpu() if isinstance(image_index, Tensor) else image_index)
    if isinstance(n_images, bool) or not isinstance(n_images, int | np.integer) or n_images < 1:
        raise ValueError(f"lesion_mean_statistic: expected n_images >= 1, got {n_images!r}")
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or (
        idx.size and not (idx.min() >= 0 and idx.max() < n_images)
    ):
        raise ValueError(
            f"lesion_mean_statistic: expected 1D integer image indices in [0, {n_images}), got "
            f"shape {idx.shape} and dtype {idx.dtype}"
        )
    w = np.ones(idx.shape) if weights is None else _per_item(weights, idx.shape, "weights")
    if (w < 0).any():
        raise ValueError(f"lesion_mean_statistic: expected weights >= 0, got {w.min()}")
    totals = np.bincount(idx, weights=w, minlength=n_images)
    sums = {
        key: np.bincount(idx, weights=w * _per_item(v, idx.shape, key or "values"),
                         minlength=n_images)
        for key, v in columns.items()
    }

    def statistic(images: np.ndarray) -> float | dict[str, float]:
        total = totals[images].sum()
        out = {k: float(s[images].sum() / total) if total > 0 else math.nan
               for k, s in sums.items()}
        return out if is_mapping else out[""]

    return statistic


def _per_item(values: np.ndarray | Tensor, shape: tuple[int, ...], name: str) -> np.ndarray:
    v = np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values, np.float64)
    if v.shape != shape or not np.isfinite(v).all():
        raise ValueError(
            f"lesion_mean_statistic: expected finite {name!r} of shape {shape} (one per lesion), "
            f"got shape {v.shape}{'' if v.shape != shape else ' with NaN or inf (filter first)'}"
        )
    return v


def judge(value: tuple[float, float, float], higher_is_better: bool) -> str:
    """The verdict on a ``(mean, low, high)`` difference: ``"better"`` or ``"worse"`` when the
    95% interval excludes 0 (in the metric's good or bad direction), else ``"not shown"``.

    The one rule of every comparison (terminal, report, results pages): EVALUATION.md's "a
    difference is shown only when its interval excludes 0". :func:`judge_metric` adds the
    minimum counts of an evaluation."""
    _, low, high = value
    if low > 0 or high < 0:
        return "better" if (low > 0) == higher_is_better else "worse"
    return "not shown"


#: Fewest held-out slices below which no paired difference gets a verdict: a bootstrap over
#: fewer slices barely varies (one slice gives a point interval) and its 95% interval covers
#: far less than 95%.
MIN_SLICES = 10
#: Fewest scored lesions below which no difference of a lesion or detection metric (contrast
#: recovery, lesion RMSE and CNR, observer FROC, model observer) gets a verdict.
MIN_LESIONS = 10
_LESION_METRICS = ("lesion_", "observer", "model_observer", "cotrained")


def judge_metric(value: tuple[float, float, float], higher_is_better: bool,
                 protocol: Mapping[str, object], key: str) -> str:
    """:func:`judge`, or ``"too few to tell"`` where the evaluation (its ``protocol``:
    ``n_slices``, ``n_lesions_scored`` / ``n_lesions``) had fewer than :data:`MIN_SLICES`
    slices, or, for a lesion or detection metric ``key``, fewer than :data:`MIN_LESIONS`
    lesions."""
    slices = protocol.get("n_slices")
    lesions = protocol.get("n_lesions_scored", protocol.get("n_lesions"))
    if key.startswith("observer") or key.startswith("cotrained"):  # FROC counts every lesion
        lesions = protocol.get("n_lesions", lesions)
    if isinstance(slices, int) and slices < MIN_SLICES:
        return "too few to tell"
    if key.startswith(_LESION_METRICS) and isinstance(lesions, int) and lesions < MIN_LESIONS:
        return "too few to tell"
    return judge(value, higher_is_better)
