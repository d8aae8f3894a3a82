"""Scoring a folder by the FDA LCD-CT toolbox's protocol: a Laguerre-Gauss CHO per disc and dose.

For each recon, dose and disc (:func:`score_folder`):

1. ROIs: a ``roi_size`` square centred on the disc (:class:`~lidplug.lcd.discs.Disc`) in every
   signal-present and signal-absent image; by default ``2 * D + 1`` pixels with ``D`` the
   largest disc's diameter (the toolbox's size), the same for every disc. Each ROI's own mean
   is subtracted (the toolbox's "DC" removal: a constant offset or a slow drift of the
   background does not enter the observer).
2. Channels: ``channels`` (5) Laguerre-Gauss channels of width ``channel_width`` (2/3) times the
   disc's diameter in pixels (:func:`lidplug.metrics.laguerre_gauss_channels`).
3. Readers: ``readers`` (10) random splits of each class into a training part
   (``floor(train_fraction * N)`` images, ``train_fraction`` 0.5) and a test part; each reader
   trains the Hotelling template on its training images and reports the AUC and ``d'`` of its
   test images (:func:`lidplug.metrics.split_hotelling`).
4. Per recon, dose and disc: the readers' mean, standard deviation (the toolbox's error bars)
   and the 2.5-97.5 percentile range of the readers' values. The readers share images: the
   range shows how much one split can vary, not the uncertainty from having finitely many
   images.

Splits are drawn as the toolbox's Python code draws them: reader seeds
``numpy.random.default_rng(seed).integers(0, 100000, readers)``, then per class the permutation
``numpy.random.RandomState(reader_seed).permutation(N)`` whose first ``N - floor(f N)`` entries
test and the rest train (scikit-learn's ``train_test_split``). So ``seed`` here and
``seed_split`` of the toolbox's ``measure_LCD`` select the same readers, and the numbers agree to
rounding (``docs/LCD.md``). The toolbox draws fresh splits when no seed is given; here the seed
defaults to 0, so a rerun gives the same numbers.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lidplug.lcd.discs import Disc, find_discs, phantom_mask
from lidplug.lcd.layout import ABSENT, PRESENT, find_recons, read_images, read_truth
from lidplug.metrics import laguerre_gauss_channels, split_hotelling

__all__ = ["LCDProtocol", "LCDResults", "disc_rois", "reader_splits", "score_discs",
           "score_folder"]

#: The toolbox draws reader seeds in [0, SEED_RANGE) (its Observer.run_study).
SEED_RANGE = 100_000
_PERCENTILES = (2.5, 97.5)
#: A signal-absent background this far from the truth's means the offset is probably wrong.
_OFFSET_WARNING_HU = 100.0
_OFFSET_IMAGES = 8


@dataclass(frozen=True)
class LCDProtocol:
    """The observer's settings; the defaults are the toolbox's (``measure_LCD``, ``LG_CHO``).

    Attributes:
        channels: Laguerre-Gauss channels (orders 0 .. channels - 1).
        channel_width: the channels' width as a fraction of the disc's diameter in pixels.
        roi_size: ROI side in pixels, odd; None: twice the largest disc's diameter, plus 1.
        readers: random train/test splits.
        train_fraction: fraction of each class that trains a reader's template.
        seed: seed of the readers' splits.
        offset: subtracted from the stored pixel values to give HU.
    """

    channels: int = 5
    channel_width: float = 2 / 3
    roi_size: int | None = None
    readers: int = 10
    train_fraction: float = 0.5
    seed: int = 0
    offset: float = 1000.0

    def __post_init__(self) -> None:
        def whole(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        checks = (
            ("channels", whole(self.channels) and self.channels >= 1, "a positive int"),
            ("channel_width", _positive(self.channel_width), "a positive number"),
            ("roi_size", self.roi_size is None or (whole(self.roi_size) and self.roi_size >= 3
                                                   and self.roi_size % 2 == 1),
             "None or an odd int >= 3 (the ROI is centred on a pixel)"),
            ("readers", whole(self.readers) and self.readers >= 1, "a positive int"),
            ("train_fraction", _positive(self.train_fraction) and self.train_fraction < 1,
             "a number in (0, 1)"),
            ("seed", whole(self.seed) and self.seed >= 0, "a non-negative int"),
            ("offset", _finite(self.offset), "a finite number"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"LCDProtocol.{name}: expected {expected}, got "
                                 f"{getattr(self, name)!r}")

    def roi_side(self, discs: list[Disc]) -> int:
        """The ROI side for these discs (the toolbox's ``2 D + 1`` unless given)."""
        return self.roi_size or 2 * max(d.diameter_px for d in discs) + 1


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _positive(v: object) -> bool:
    return _finite(v) and v > 0


@dataclass
class LCDResults:
    """What :func:`score_folder` found (:meth:`as_dict` is ``lcd.json``).

    Attributes:
        root: the scored folder.
        protocol: the settings used.
        roi_size: the ROI side used, pixels.
        spacing_mm: the ground truth's pixel size, None when its header leaves the default 1.
        discs: the discs of the ground truth, by size.
        rows: one dict per recon, dose and disc: ``recon``, ``dose`` (percent), ``disc`` (index
            into ``discs``), ``n_present``, ``n_absent``, ``auc`` and ``d_prime`` (each
            ``{"mean", "std", "low", "high", "readers": [...]}``).
        notes: warnings for the reader (e.g. an offset that looks wrong).
        seconds: wall time.
    """

    root: str
    protocol: LCDProtocol
    roi_size: int
    spacing_mm: float | None
    discs: list[Disc]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def recons(self) -> list[str]:
        """Recon names in first-seen order."""
        return list(dict.fromkeys(r["recon"] for r in self.rows))

    def doses(self) -> list[float]:
        """Doses (percent), increasing."""
        return sorted({r["dose"] for r in self.rows})

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: protocol, discs (with their channel widths), rows, notes."""
        protocol = asdict(self.protocol)
        protocol.update(roi_size=self.roi_size, observer="LG-CHO (FDA LCD-CT toolbox protocol)",
                        interval="2.5-97.5 percentiles over readers")
        discs = []
        for k, d in enumerate(self.discs):
            entry = {"index": k, "label": d.label(self.spacing_mm), **asdict(d),
                     "channel_width_px": self.protocol.channel_width * d.diameter_px}
            entry["diameter_mm"] = (None if self.spacing_mm is None
                                    else d.equivalent_diameter_px * self.spacing_mm)
            discs.append(entry)
        return {"root": self.root, "protocol": protocol, "spacing_mm": self.spacing_mm,
                "discs": discs, "recons": self.recons(), "doses": self.doses(),
                "results": self.rows, "notes": self.notes, "seconds": round(self.seconds, 2)}


def reader_splits(n_present: int, n_absent: int, readers: int, train_fraction: float,
                  seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each reader's training indices of the present and the absent images.

    Drawn as the toolbox's Python code draws them (module docstring), so the same ``seed``
    selects the same images.

    Returns:
        ``readers`` pairs ``(int64[floor(f N)], int64[floor(f M)])``.
    """
    seeds = np.random.default_rng(seed).integers(0, SEED_RANGE, size=readers)
    splits = []
    for s in seeds:
        pair = []
        for n in (n_present, n_absent):
            n_train = math.floor(train_fraction * n)
            # A legacy RandomState on purpose: its stream is frozen, and it is what
            # scikit-learn's train_test_split shuffles with; tests come first, training after.
            pair.append(np.random.RandomState(int(s)).permutation(n)[n - n_train:])
        splits.append((pair[0], pair[1]))
    return splits


def disc_rois(images_hu: np.ndarray, disc: Disc, size: int) -> np.ndarray:
    """``float64[N, size, size]`` crops centred on ``disc``, each minus its own mean.

    Raises:
        ValueError: the ROI reaches outside the image.
    """
    half = size // 2
    r, c = disc.centre
    h, w = images_hu.shape[-2:]
    if r - half < 0 or c - half < 0 or r + half >= h or c + half >= w:
        raise ValueError(f"expected the {size}x{size} ROI of the disc at {disc.centre} inside "
                         f"the {h}x{w} image, got one reaching outside (a smaller --roi-size?)")
    rois = images_hu[:, r - half:r + half + 1, c - half:c + half + 1].astype(np.float64)
    return rois - rois.mean(axis=(1, 2), keepdims=True)


def _summary(values: list[float]) -> dict[str, Any]:
    v = np.asarray(values, dtype=np.float64)
    low, high = np.percentile(v, _PERCENTILES)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "low": float(low), "high": float(high), "readers": [float(x) for x in v]}


def score_discs(present_hu: np.ndarray, absent_hu: np.ndarray, discs: list[Disc],
                protocol: LCDProtocol = LCDProtocol()) -> list[dict[str, Any]]:
    """The protocol on one recon and dose: one result per disc.

    Args:
        present_hu: ``[N, H, W]`` signal-present images, HU.
        absent_hu: ``[M, H, W]`` signal-absent images, HU.
        discs: from :func:`~lidplug.lcd.discs.find_discs` on the ground truth.
        protocol: the settings.

    Returns:
        Per disc ``{"disc", "n_present", "n_absent", "auc", "d_prime"}`` (see
        :class:`LCDResults`).

    Raises:
        ValueError: too few images for the split (each reader trains on more images per class
            than channels and tests at least 2), an ROI outside the image, or a singular
            channel covariance (noise-free images).
    """
    size = protocol.roi_side(discs)
    n, m = len(present_hu), len(absent_hu)
    splits = reader_splits(n, m, protocol.readers, protocol.train_fraction, protocol.seed)
    out = []
    for k, disc in enumerate(discs):
        channels = laguerre_gauss_channels(size, protocol.channels,
                                           protocol.channel_width * disc.diameter_px)
        present = torch.from_numpy(disc_rois(present_hu, disc, size))
        absent = torch.from_numpy(disc_rois(absent_hu, disc, size))
        results = [split_hotelling(present, absent, channels, tp, ta) for tp, ta in splits]
        out.append({"disc": k, "n_present": n, "n_absent": m,
                    "auc": _summary([r.auc for r in results]),
                    "d_prime": _summary([r.d_prime for r in results])})
    return out


def _spacing(spacing: tuple[float, float]) -> float | None:
    """The pixel size, or None where the header leaves MetaImage's default of 1 (unknown)."""
    if spacing == (1.0, 1.0):
        return None
    return spacing[1]


def score_folder(root: str | os.PathLike, protocol: LCDProtocol = LCDProtocol(), *,
                 progress: Callable[[str], None] | None = None) -> LCDResults:
    """Every recon, dose and disc of a folder in the toolbox's layout (:mod:`lidplug.lcd.layout`).

    The discs come from the first recon's ground truth; every recon's truth must have the same
    discs (the same phantom).

    Args:
        root: the folder.
        protocol: the observer's settings.
        progress: called with a line per recon and dose as it is scored.

    Returns:
        :class:`LCDResults`.

    Raises:
        ValueError: a bad layout, an unreadable file, images of another size than the truth,
            truths with different discs, no discs, too few images; the message names the file
            or folder.
    """
    start = time.perf_counter()
    recons = find_recons(root)
    truth, spacing = read_truth(recons[0].truth, protocol.offset)
    try:
        discs = find_discs(truth)
    except ValueError as err:
        raise ValueError(f"{recons[0].truth}: {err}") from None
    if not discs:
        raise ValueError(f"{recons[0].truth}: expected low-contrast discs in the ground truth "
                         f"(regions at least 0.5 HU from the phantom's background), found none")
    results = LCDResults(str(root), protocol, protocol.roi_side(discs), _spacing(spacing), discs)
    for recon in recons:
        if recon.truth != recons[0].truth:
            other, _ = read_truth(recon.truth, protocol.offset)
            same = other.shape == truth.shape and find_discs(other) == discs
            if not same:
                raise ValueError(f"{recon.truth}: expected the same phantom as "
                                 f"{recons[0].truth} (same size and discs), got another")
        for dose in recon.doses:
            images = [read_images(dose.path / c, truth.shape, protocol.offset)
                      for c in (PRESENT, ABSENT)]
            try:
                rows = score_discs(images[0], images[1], discs, protocol)
            except ValueError as err:
                raise ValueError(f"{dose.path}: {err}") from None
            _check_offset(results, dose.path, images[1], truth)
            for row in rows:
                results.rows.append({"recon": recon.name, "dose": dose.percent, **row})
            if progress is not None:
                aucs = "  ".join(f"{r['auc']['mean']:.3f}" for r in rows)
                progress(f"{recon.name} dose {dose.percent:g}%: AUC {aucs}")
    results.seconds = time.perf_counter() - start
    return results


def _check_offset(results: LCDResults, folder: Path, absent: np.ndarray,
                  truth: np.ndarray) -> None:
    """Note a background far from the truth's: the stored offset is probably not ``offset``."""
    inside = phantom_mask(truth)
    # A few images tell the background as well as hundreds do, at a fraction of the cost.
    got = float(np.median(absent[:_OFFSET_IMAGES, inside]))
    expected = float(np.median(truth[inside]))
    if abs(got - expected) > _OFFSET_WARNING_HU:
        results.notes.append(
            f"{folder}: the images' background is {got:.0f} HU where the ground truth's is "
            f"{expected:.0f} HU; were they stored with another offset than "
            f"{results.protocol.offset:g}? The scores do not depend on a constant offset (each "
            "ROI's mean is removed)."
        )
