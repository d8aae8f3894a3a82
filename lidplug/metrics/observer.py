"""Channelized Hotelling observer (CHO) with Laguerre-Gauss channels: low-contrast detectability.

The classical, network-free measure of how detectable a lesion stays in an image. The task is
signal-known-exactly (SKE): ``present`` ROIs are centred on a lesion, ``absent`` ROIs on the same
locations without it (the phantom with and without the lesion, independent noise of the same
process).

**Channels** (:func:`laguerre_gauss_channels`; Barrett & Myers, *Foundations of Image Science*,
2004, ch. 14; the convention of the FDA's CHO code)::

    u_p(r) = (sqrt(2) / a) exp(-pi r**2 / a**2) L_p(2 pi r**2 / a**2),   p = 0 .. C - 1

with ``L_p`` the Laguerre polynomial (``scipy.special.eval_laguerre``), ``r`` the distance in
pixels of a pixel centre from the ROI centre ``((H - 1) / 2, (W - 1) / 2)`` and ``a`` the width in
pixels; ``u_0`` is a Gaussian of standard deviation ``a / sqrt(2 pi) ~ 0.4 a``. The ``u_p`` are
orthonormal in the continuum and sampled at pixel centres without renormalising (``d'`` does not
depend on it: it is invariant under any invertible linear map of the channels). Default
``a = 6`` px: with 10 channels the highest order is still sampled without aliasing (the discrete
Gram matrix is within 1e-3 of the identity; at ``a = 5`` it is 5% off) and discs 2-20 px across
keep at least 97% of their ideal-observer SNR in white noise. The channels reach ``r ~ 2.5 a``
(where ``L_9`` stops oscillating), so ROIs should be at least ``5 a`` wide: 32 px by default.

**Observer.** Channel outputs ``v = U x`` (float64). Template ``w = S^-1 (mean v+ - mean v-)``
with ``S = (K+ + K-) / 2`` the mean of the two classes' sample covariances (``ddof=1``), scaled
to ``w' S w = 1``; test statistic ``t = w' (v - m)`` with ``m`` the midpoint of the class means.
``d_prime = (mean t+ - mean t-) / sqrt((var t+ + var t-) / 2)``, the SNR of the test statistic.
``auc`` is the **empirical** AUC of the test statistics (Mann-Whitney ``U / (N M)``, ties 1/2:
distribution-free); ``auc_gaussian = Phi(d' / sqrt 2)`` is the AUC that ``d'`` implies for
normal statistics of equal variance.

**Finite-sample bias.** A template fitted to the ROIs it scores learns their noise:
resubstitution gives ``d'`` equal to the sample Mahalanobis distance of the class means, with
``E[d'^2] = (n - 2) / (n - C - 3) (d^2 + C (1 / N + 1 / M))`` for Gaussian channel outputs
(``n = N + M``; a null task scores ``d'^2 ~ 2C / N`` instead of 0). The default,
``method="holdout"``, is **two-fold cross-validation**: the ROIs are split at random (seeded)
into halves, a template fitted on one half scores the other and vice versa, each fold's
statistics centred and scaled by its own training half so the two folds pool. Every statistic
then comes from a template that never saw its ROI; the estimate is slightly pessimistic instead
(a template from half the ROIs is noisier), by ``O(C / N)`` in ``d'^2``: negligible for hundreds
of ROIs per class and 10 channels. ``method="resubstitution"`` is offered for comparison with
papers that use it. With ``paired=True`` (``present[i]`` and ``absent[i]`` from one location),
pairs stay in one fold, so a background seen in training is never tested.

**Intervals.** :func:`observer_statistic` gives :func:`lidplug.metrics.bootstrap` a statistic
that resamples ROI pairs and refits the template in every replicate (template variability
included); copies of a drawn pair stay in one fold. A replicate holds fewer distinct pairs than
the full sample, so its holdout template is noisier and its ``d'`` biased low against the
full-sample fit (measured: the estimate near or beyond the top of the replicates' 95% range).
``bootstrap`` then recentres the interval on the estimate (see :mod:`lidplug.metrics.bootstrap`);
the evaluation always does for the model observer.

**Train/test split** (:func:`split_hotelling`): the template fitted on chosen training ROIs of
each class, ``d'`` and AUC from the remaining ROIs only. It is one "reader" of the FDA's LCD-CT
toolbox (Regulatory Science Tool RST24MD08.01, github.com/DIDSR/LCD_CT), whose protocol
:mod:`lidplug.lcd` follows: 5 Laguerre-Gauss channels of width 2/3 of the disc's diameter, each
ROI's mean subtracted, repeated random half splits. The algebra is this module's (same channels,
same ``S`` from the two classes' ``ddof=1`` covariances, same ``d'`` and Mann-Whitney AUC); the
toolbox solves with a pseudo-inverse and leaves the template unscaled and uncentred, which
changes neither ``d'`` nor the AUC. Given the same ROIs and splits, :mod:`lidplug.lcd` reproduces
the toolbox's Python numbers (``tests/lcd``, ``docs/LCD.md``). What differs from the evaluation
pipeline's use above: that one uses 10 channels of a fixed 6-px width, no mean subtraction, and
two-fold holdout instead of readers.

Written here rather than imported: the toolbox's Python port (``lcdct``, in its repository's
``src/lcdct``; not on PyPI) is the one maintained Python CHO, but it takes whole studies as
arrays and pulls in scikit-learn, pandas and SimpleITK for a few lines of linear algebra, and
the pipeline needs the holdout and bootstrap forms above, which it lacks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import special, stats
from torch import Tensor

__all__ = ["ObserverResult", "channelized_hotelling", "laguerre_gauss_channels",
           "observer_statistic", "split_hotelling"]

_METHODS = ("holdout", "resubstitution")  # of channelized_hotelling; split_hotelling is "split"
_MAX_CONDITION = 1e12  # beyond it the channel covariance is singular in float64 for our purpose


@dataclass(frozen=True, eq=False)
class ObserverResult:
    """Detectability of a signal by the CHO (see the module docstring).

    Attributes:
        d_prime: SNR of the test statistic.
        auc: empirical area under the ROC curve of the test statistics.
        auc_gaussian: ``Phi(d_prime / sqrt 2)``.
        method: ``"holdout"``, ``"resubstitution"`` or ``"split"`` (:func:`split_hotelling`).
        statistics_present: ``float64[N]`` test statistics of the signal-present ROIs.
        statistics_absent: ``float64[M]`` test statistics of the signal-absent ROIs.
        template: ``float64[C]`` channel template fitted on all ROIs (``w' S w = 1``).
    """

    d_prime: float
    auc: float
    auc_gaussian: float
    method: str
    statistics_present: np.ndarray
    statistics_absent: np.ndarray
    template: np.ndarray

    def as_dict(self) -> dict[str, float]:
        """``{"d_prime": ..., "auc": ..., "auc_gaussian": ...}`` (a bootstrap statistic's form)."""
        return {"d_prime": self.d_prime, "auc": self.auc, "auc_gaussian": self.auc_gaussian}


def laguerre_gauss_channels(
    size: int | tuple[int, int], n_channels: int = 10, width: float = 6.0
) -> Tensor:
    """Rotationally symmetric Laguerre-Gauss channels centred on the ROI centre.

    Args:
        size: ROI side ``H`` (square) or ``(H, W)`` in pixels; at least ``5 * width`` keeps the
            channels whole.
        n_channels: number of channels ``C`` (orders 0 .. C - 1).
        width: the Gaussian width ``a`` in pixels (see the module docstring).

    Returns:
        ``Tensor[C, H, W]`` float64.

    Raises:
        ValueError: on a non-positive size, channel count or width.
    """
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if not all(isinstance(v, int) and v >= 1 for v in (h, w, n_channels)):
        raise ValueError(
            f"laguerre_gauss_channels: expected positive int size and n_channels, got {size!r} "
            f"and {n_channels!r}"
        )
    if not (isinstance(width, int | float) and math.isfinite(width) and width > 0):
        raise ValueError(f"laguerre_gauss_channels: expected a positive width, got {width!r}")
    y = np.arange(h, dtype=np.float64)[:, None] - (h - 1) / 2
    x = np.arange(w, dtype=np.float64)[None, :] - (w - 1) / 2
    g = 2 * math.pi * (x**2 + y**2) / width**2
    u = [math.sqrt(2) / width * np.exp(-g / 2) * special.eval_laguerre(p, g)
         for p in range(n_channels)]
    return torch.from_numpy(np.stack(u))


def _channelize(
    present: Tensor, absent: Tensor, channels: Tensor, owner: str
) -> tuple[np.ndarray, ...]:
    """Check the ROIs and channels; return the channel outputs ``[N, C]`` and ``[M, C]``."""
    for name, t in (("present", present), ("absent", absent), ("channels", channels)):
        if not isinstance(t, Tensor) or t.dtype == torch.bool or t.is_complex():
            got = t.dtype if isinstance(t, Tensor) else type(t).__name__
            raise TypeError(f"{owner}: expected a real Tensor {name}, got {got}")
        if t.dim() != 3:
            raise ValueError(f"{owner}: expected {name} of shape [*, H, W], got {tuple(t.shape)}")
        if not torch.isfinite(t).all():
            raise ValueError(f"{owner}: expected finite {name}, got NaN or inf")
    if not present.shape[1:] == absent.shape[1:] == channels.shape[1:]:
        raise ValueError(
            f"{owner}: expected present, absent and channels of one ROI size, got "
            f"{tuple(present.shape)}, {tuple(absent.shape)} and {tuple(channels.shape)}"
        )
    u = channels.detach().cpu().double().flatten(1).T
    return tuple((t.detach().cpu().double().flatten(1) @ u).numpy() for t in (present, absent))


def _needed(c: int, method: str) -> int:
    """Fewest ROIs (or pairs) per class: each training set holds more ROIs than channels."""
    return (c + 1) * (2 if method == "holdout" else 1)


def _check_counts(n: int, m: int, c: int, method: str, owner: str) -> None:
    if method not in _METHODS:
        raise ValueError(f"{owner}: expected method in {_METHODS}, got {method!r}")
    need = _needed(c, method)
    if min(n, m) < need:
        raise ValueError(
            f"{owner}: expected at least {need} present and {need} absent ROIs "
            f"for {c} channels with method={method!r} (each template is fitted on more ROIs "
            f"per class than channels), got {n} and {m}"
        )


def _fit(vp: np.ndarray, va: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Template ``w`` (with ``w' S w = 1``) and centre ``m`` from training channel outputs."""
    diff = vp.mean(axis=0) - va.mean(axis=0)
    s = (np.atleast_2d(np.cov(vp, rowvar=False)) + np.atleast_2d(np.cov(va, rowvar=False))) / 2
    if not np.linalg.cond(s) < _MAX_CONDITION:
        raise ValueError(
            "channelized_hotelling: expected an invertible channel covariance, got a singular "
            "one (noise-free ROIs, linearly dependent channels, or too few distinct ROIs)"
        )
    w = np.linalg.solve(s, diff)
    snr2 = float(w @ diff)  # = diff' S^-1 diff >= 0
    return (w / math.sqrt(snr2) if snr2 > 0 else w), (vp.mean(axis=0) + va.mean(axis=0)) / 2


def _halves(ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random half of the distinct ``ids``: True where an entry's id is in it."""
    units = np.unique(ids)
    return np.isin(ids, rng.permutation(units)[: units.size // 2])


def _evaluate(
    vp: np.ndarray, va: np.ndarray, method: str, ids: tuple[np.ndarray, np.ndarray] | np.ndarray,
    rng: np.random.Generator,
) -> ObserverResult:
    """The CHO on channel outputs; ``ids`` are shared pair ids, or one array per class."""
    w_all, m_all = _fit(vp, va)
    if method == "resubstitution":
        tp, ta = (vp - m_all) @ w_all, (va - m_all) @ w_all
    else:
        if isinstance(ids, tuple):
            fp, fa = _halves(ids[0], rng), _halves(ids[1], rng)
        else:
            fp = fa = _halves(ids, rng)
        tp, ta = np.empty(len(vp)), np.empty(len(va))
        for test_p, test_a in ((fp, fa), (~fp, ~fa)):
            w, m = _fit(vp[~test_p], va[~test_a])
            tp[test_p], ta[test_a] = (vp[test_p] - m) @ w, (va[test_a] - m) @ w
    return _result(tp, ta, method, w_all)


def _result(tp: np.ndarray, ta: np.ndarray, method: str, template: np.ndarray) -> ObserverResult:
    """``d'`` and the empirical AUC of the test statistics ``tp`` (present) and ``ta``."""
    d = float((tp.mean() - ta.mean()) / math.sqrt((tp.var(ddof=1) + ta.var(ddof=1)) / 2))
    ranks = stats.rankdata(np.concatenate([tp, ta]))  # ties get their mean rank: count 1/2
    auc = float((ranks[: tp.size].sum() - tp.size * (tp.size + 1) / 2) / (tp.size * ta.size))
    return ObserverResult(
        d_prime=d, auc=auc, auc_gaussian=float(stats.norm.cdf(d / math.sqrt(2))), method=method,
        statistics_present=tp, statistics_absent=ta, template=template,
    )


def channelized_hotelling(
    present: Tensor,
    absent: Tensor,
    channels: Tensor,
    *,
    method: str = "holdout",
    paired: bool = False,
    seed: int = 0,
) -> ObserverResult:
    """Detectability ``d'`` and AUC of a signal-known-exactly task by the CHO.

    Args:
        present: ``Tensor[N, H, W]`` ROIs centred on the lesion (HU).
        absent: ``Tensor[M, H, W]`` the same ROIs without it, independent noise.
        channels: ``Tensor[C, H, W]``, e.g. :func:`laguerre_gauss_channels` ``(H)``.
        method: ``"holdout"`` (two-fold cross-validation) or ``"resubstitution"``.
        paired: ``present[i]`` and ``absent[i]`` share a location (``N == M``); each pair then
            stays in one fold.
        seed: seed of the random fold split.

    Returns:
        :class:`ObserverResult`.

    Raises:
        TypeError, ValueError: on non-real, non-finite or mis-shaped input, fewer ROIs than the
            method needs (``2 (C + 1)`` per class for holdout, ``C + 1`` for resubstitution),
            unequal counts with ``paired=True``, or a singular channel covariance.
    """
    vp, va = _channelize(present, absent, channels, "channelized_hotelling")
    _check_counts(len(vp), len(va), channels.shape[0], method, "channelized_hotelling")
    if paired and len(vp) != len(va):
        raise ValueError(
            f"channelized_hotelling: expected as many present as absent ROIs with paired=True, "
            f"got {len(vp)} and {len(va)}"
        )
    ids = np.arange(len(vp)) if paired else (np.arange(len(vp)), np.arange(len(va)))
    return _evaluate(vp, va, method, ids, np.random.default_rng(seed))


def observer_statistic(
    present: Tensor,
    absent: Tensor,
    channels: Tensor,
    *,
    method: str = "holdout",
    seed: int = 0,
) -> Callable[[np.ndarray], dict[str, float]]:
    """A :func:`lidplug.metrics.bootstrap` statistic over ROI pairs: the CHO refitted per draw.

    Args:
        present: ``Tensor[N, H, W]`` ROIs centred on the lesions.
        absent: ``Tensor[N, H, W]``, ``absent[i]`` the location of ``present[i]`` without it.
        channels: ``Tensor[C, H, W]``.
        method: as :func:`channelized_hotelling`.
        seed: seed of the fold split, the same in every replicate.

    Returns:
        ``statistic(indices: int64[k]) -> {"d_prime", "auc", "auc_gaussian"}``; on
        ``arange(N)`` it equals ``channelized_hotelling(..., paired=True, seed=seed)``. A
        replicate with too few distinct pairs for the method is NaN (``bootstrap`` drops it).

    Raises:
        As :func:`channelized_hotelling` with ``paired=True``.

    Example:
        >>> cho = observer_statistic(present, absent, laguerre_gauss_channels(32))
        >>> ci = bootstrap(cho, len(present), seed=0)  # ci["d_prime"].as_dict()
    """
    vp, va = _channelize(present, absent, channels, "observer_statistic")
    c = channels.shape[0]
    _check_counts(len(vp), len(va), c, method, "observer_statistic")
    if len(vp) != len(va):
        raise ValueError(
            f"observer_statistic: expected as many present as absent ROIs (pairs), got "
            f"{len(vp)} and {len(va)}"
        )
    need = _needed(c, method)
    _evaluate(vp, va, method, np.arange(len(vp)), np.random.default_rng(seed))  # raises early

    def statistic(indices: np.ndarray) -> dict[str, float]:
        idx = np.asarray(indices)
        if np.unique(idx).size < need:
            return dict.fromkeys(("d_prime", "auc", "auc_gaussian"), math.nan)
        try:
            result = _evaluate(vp[idx], va[idx], method, idx, np.random.default_rng(seed))
        except ValueError:  # a replicate whose folds came out singular
            return dict.fromkeys(("d_prime", "auc", "auc_gaussian"), math.nan)
        return result.as_dict()

    return statistic


def _train_mask(train: np.ndarray, n: int, name: str) -> np.ndarray:
    """``train`` (indices or a boolean mask over ``n`` ROIs) as a boolean mask."""
    t = np.asarray(train)
    if t.dtype == bool:
        if t.shape != (n,):
            raise ValueError(f"split_hotelling: expected a boolean {name} of shape ({n},), got "
                             f"{t.shape}")
        return t
    if not np.issubdtype(t.dtype, np.integer) or t.ndim != 1:
        raise TypeError(f"split_hotelling: expected {name} as 1-D int indices or a boolean mask, "
                        f"got {t.dtype} of shape {t.shape}")
    out_of_range = t.size > 0 and not (t.min() >= 0 and t.max() < n)
    if out_of_range or np.unique(t).size != t.size:
        raise ValueError(f"split_hotelling: expected distinct {name} indices in [0, {n}), got "
                         f"{t.tolist()}")
    mask = np.zeros(n, dtype=bool)
    mask[t] = True
    return mask


def split_hotelling(
    present: Tensor,
    absent: Tensor,
    channels: Tensor,
    train_present: np.ndarray,
    train_absent: np.ndarray,
) -> ObserverResult:
    """The CHO trained on some ROIs of each class and tested on the others (one split).

    One "reader" of the FDA's LCD-CT toolbox (see the module docstring): the template comes from
    the training ROIs alone, ``d'`` and the AUC from the test ROIs alone.

    Args:
        present: ``Tensor[N, H, W]`` signal-present ROIs.
        absent: ``Tensor[M, H, W]`` signal-absent ROIs.
        channels: ``Tensor[C, H, W]``, e.g. :func:`laguerre_gauss_channels`.
        train_present: indices (``int[k]``) or a boolean mask (``bool[N]``) of the present ROIs
            that train the template; the others are tested.
        train_absent: the same for the absent ROIs (``bool[M]`` or indices).

    Returns:
        :class:`ObserverResult` with ``method="split"``; ``statistics_present`` /
        ``statistics_absent`` are those of the test ROIs, ``template`` the trained one.

    Raises:
        TypeError, ValueError: as :func:`channelized_hotelling`; also on bad indices, fewer
            than 2 training or test ROIs in a class, or fewer than ``C + 2`` training ROIs in
            all.
    """
    vp, va = _channelize(present, absent, channels, "split_hotelling")
    fp = _train_mask(train_present, len(vp), "train_present")
    fa = _train_mask(train_absent, len(va), "train_absent")
    c = channels.shape[0]
    counts = (int(fp.sum()), int(fa.sum()), int((~fp).sum()), int((~fa).sum()))
    # The pooled covariance has n + m - 2 degrees of freedom: it needs n + m >= C + 2 (the
    # toolbox's 5 + 5 training ROIs for 5 channels pass), and each class 2 for its own.
    if min(counts) < 2 or counts[0] + counts[1] < c + 2:
        raise ValueError(
            f"split_hotelling: expected at least 2 ROIs per class to train and to test, and "
            f"{c + 2} training ROIs in all for {c} channels, got {counts[0]} present / "
            f"{counts[1]} absent to train and {counts[2]} / {counts[3]} to test"
        )
    w, m = _fit(vp[fp], va[fa])
    return _result((vp[~fp] - m) @ w, (va[~fa] - m) @ w, "split", w)
