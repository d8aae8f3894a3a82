"""Hybrid lesion slices: real chest CT with real LIDC nodules inserted, low dose simulated.

The field's standard when no real paired data with lesion truth exists: the background is a
real normal-dose slice, the lesion a real nodule's signal (:mod:`lidplug.data.nodules`) added
where it fits (:mod:`lidplug.data.insertion`), so the truth (boxes, masks, the signal itself)
is exact while anatomy, texture and noise are real. Two variants of one dataset:

* ``lesions="inserted"``: each sample is a background slice of the split's patients, at least
  ``margin_slices`` slices away from any annotated real tumour, with 1..N nodules of the split's
  LIDC patients at a drawn contrast (``contrast_hu``; None keeps each nodule's own). With
  ``patch`` the sample is a ``patch`` x ``patch`` window of the slice at native resolution (its
  lesions placed inside it), so training fits a CPU; without, the whole slice.
* ``lesions="real"``: the annotated slices of the split's patients with their own tumours
  (boxes, or masks where the source has them), never inserted anywhere: the real-lesion test.

Low dose, for both: :func:`lidplug.simulation.simulate_low_dose` ``(method="insert")`` on the
whole slice (the projection needs the whole body), with the photon count calibrated per scan
so that the low-dose image carries ``1 / sqrt(dose)`` times the scan's own measured noise
(:func:`lidplug.simulation.calibrate_i0`), following the header's tube exposure slice by
slice where it is recorded. The noise levels measured go into each sample's ``meta``.

Evaluation references (:meth:`HybridDataset.reference`): the lesion map, the inserted signal
and the background without it. The lesion-free twin at low dose needs nothing stored: it is
``low - signal`` (the same slice with the *same* noise and no lesion), since the inserted noise
is a field added to the hybrid slice.

Determinism: sample ``i`` depends only on the arguments and ``i`` (generators seeded by
:func:`lidplug.data.derive_seed` ``(seed, split, i, stream)``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from lidplug.data.boxes import mask_to_box
from lidplug.data.dataset import LesionDataset
from lidplug.data.insertion import SITES, insert, placements, resample_signal, site_mask
from lidplug.data.nodules import Nodule, read_nodules
from lidplug.data.sample import derive_seed, make_sample
from lidplug.data.sources import SPLITS, parse_sources, read_source, split_nodules
from lidplug.data.volumes import CTVolume

__all__ = ["HybridDataset"]

_VARIANTS = ("inserted", "real")
_MIN_SITE_CM2 = 10.0  # a background slice needs this much of the site to host nodules
_CALIBRATION_STRIDE = 4  # calibrate on every fourth slice of a scan


@functools.lru_cache(maxsize=4)
def _nodule_library(folder: str) -> tuple[Nodule, ...]:
    return tuple(read_nodules(folder))


# Calibrations measured in this process, by (scan, dose, simulation options): every split and
# every run of one process (a pretraining run, then the main one) reuses them.
_CALIBRATIONS: dict[tuple, Any] = {}


def _pair(value, name: str, kind=float) -> tuple | None:
    if value is None:
        return None
    if not (isinstance(value, Sequence) and len(value) == 2):
        raise ValueError(f"{name}: expected [low, high], got {value!r}")
    lo, hi = kind(value[0]), kind(value[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi):
        raise ValueError(f"{name}: expected 0 <= low <= high, got {list(value)}")
    return lo, hi


class HybridDataset(LesionDataset):
    """Hybrid (or real-lesion) slices of one split (see the module docstring).

    Args:
        root: the data root every path in ``sources`` and ``nodules`` is relative to.
        split: ``"train"``, ``"validation"`` or ``"test"``.
        sources: the patients' scans with their splits (:func:`lidplug.data.sources.parse_sources`).
        nodules: the LIDC nodule-crop folder (:func:`lidplug.data.nodules.read_nodules`).
        n: samples (``lesions="inserted"``; required); ``lesions="real"``: at most this many
            annotated slices, in scan order (None: all).
        dose: the simulated dose, a fraction of each scan's own.
        seed: base seed of placements, contrasts and noise.
        lesions: ``"inserted"`` or ``"real"``.
        patch: side of the training windows in pixels (train split only: validation and
            test are whole slices), or None for whole slices.
        lesions_per_slice: ``[low, high]`` nodules per sample (fewer where they do not fit).
        lesion_free_fraction: samples without nodules.
        contrast_hu: ``[low, high]`` mean contrast each nodule is scaled to (drawn uniformly),
            or None for each nodule's own.
        diameter_mm: ``[low, high]`` nodules used, by their equivalent diameter.
        site: where nodules go (:data:`lidplug.data.insertion.SITES`).
        margin_slices: background slices keep this distance from annotated real lesions.
        nodule_split: train, validation, test fractions of the LIDC patients.
        simulate_kwargs: further options of ``simulate_low_dose`` (geometry, views, filter).
        labels, transform, cache: as :class:`~lidplug.data.dataset.LesionDataset`.

    Raises:
        ValueError: bad options, a split with no scan, no nodule of the split in the diameter
            range, or scan and annotation files the readers refuse (named).
    """

    source = "hybrid"

    def __init__(self, root: str | os.PathLike, *, split: str = "train",
                 sources: Sequence[Mapping[str, Any]] = (), nodules: str = "lidc-nodule-vois",
                 n: int | None = None, dose: float = 0.1, seed: int = 0,
                 lesions: str = "inserted", patch: int | None = None,
                 lesions_per_slice: Sequence[int] = (1, 3), lesion_free_fraction: float = 0.1,
                 contrast_hu: Sequence[float] | None = None,
                 diameter_mm: Sequence[float] = (4.0, 30.0), site: str = "lung",
                 margin_slices: int = 2, nodule_split: Sequence[float] = (0.6, 0.2, 0.2),
                 simulate_kwargs: Mapping[str, Any] | None = None, labels: str = "lesion",
                 transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 cache: str | os.PathLike | None = None) -> None:
        super().__init__(labels=labels, transform=transform, cache=cache)
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
        if lesions not in _VARIANTS:
            raise ValueError(f"lesions: expected one of {_VARIANTS}, got {lesions!r}")
        if site not in SITES:
            raise ValueError(f"site: expected one of {SITES}, got {site!r}")
        if not 0 < dose <= 1:
            raise ValueError(f"dose: expected a fraction of the scan's dose in (0, 1], got {dose}")
        if patch is not None and not (isinstance(patch, int) and 32 <= patch <= 4096):
            raise ValueError(f"patch: expected None or an int in [32, 4096], got {patch!r}")
        if not 0.0 <= lesion_free_fraction <= 1.0:
            raise ValueError(f"lesion_free_fraction: expected a fraction in [0, 1], got "
                             f"{lesion_free_fraction!r}")
        self.root, self.split, self.variant = Path(root), split, lesions
        self.dose, self.seed, self.patch, self.site = float(dose), int(seed), patch, site
        self.count_range = _pair(lesions_per_slice, "lesions_per_slice", int)
        self.contrast_range = _pair(contrast_hu, "contrast_hu")
        self.diameter_range = _pair(diameter_mm, "diameter_mm")
        self.lesion_free_fraction = float(lesion_free_fraction)
        self.margin_slices = int(margin_slices)
        self.simulate_kwargs = dict(simulate_kwargs or {})
        parsed = [s for s in parse_sources(list(sources)) if s.split == split]
        if not parsed:
            raise ValueError(f"sources: expected at least one scan in split {split!r}, got none")
        self.volumes = [v for source in parsed for v in read_source(self.root, source)]
        self.slices = self._real_slices() if lesions == "real" else self._background_slices()
        if not self.slices:
            raise ValueError(f"{split}: expected {'annotated' if lesions == 'real' else 'lesion-free'}"
                             f" slices in {[v.source for v in self.volumes]}, got none")
        if lesions == "real":
            self.nodules: list[Nodule] = []
            self.length = len(self.slices) if n is None else min(int(n), len(self.slices))
        else:
            if n is None or not isinstance(n, int) or n < 1:
                raise ValueError(f"n: expected the number of hybrid samples (an int >= 1), got "
                                 f"{n!r}")
            library = _nodule_library(str((self.root / nodules).resolve()))
            lo, hi = self.diameter_range
            self.nodules = [x for x in split_nodules(library, nodule_split)[split]
                            if lo <= x.diameter_mm <= hi]
            if not self.nodules:
                raise ValueError(f"{self.root / nodules}: expected nodules of split {split!r} "
                                 f"with a diameter in [{lo:g}, {hi:g}] mm, got none")
            self.length = n
            order_rng = np.random.default_rng(derive_seed(self.seed, split, "order"))
            self.order = order_rng.permutation(len(self.slices))

    # --- which slices -------------------------------------------------------------------------
    def _background_slices(self) -> list[tuple[CTVolume, int, Tensor]]:
        out = []
        for v in self.volumes:
            taken = v.lesion_slices
            for k in range(len(v)):
                if any(abs(k - t) <= self.margin_slices for t in taken):
                    continue
                site = site_mask(v.hu[k], v.spacing, self.site)
                if float(site.sum()) * v.spacing[0] * v.spacing[1] / 100.0 >= _MIN_SITE_CM2:
                    out.append((v, k, site))
        return out

    def _real_slices(self) -> list[tuple[CTVolume, int, None]]:
        return [(v, k, None) for v in self.volumes for k in v.lesion_slices]

    def __len__(self) -> int:
        return self.length

    # --- one sample -----------------------------------------------------------------------------
    def calibration(self, volume: CTVolume):
        """The :class:`~lidplug.simulation.NoiseCalibration` of a scan at this dose (measured
        once per scan and process, on every fourth slice)."""
        key = (volume.source, self.dose, tuple(sorted(self.simulate_kwargs.items())))
        if key not in _CALIBRATIONS:
            from lidplug.simulation import calibrate_i0

            picked = list(range(0, len(volume), _CALIBRATION_STRIDE))
            exposure = (None if volume.exposure is None
                        else [volume.exposure[k] for k in picked])
            _CALIBRATIONS[key] = calibrate_i0(volume.hu[picked], volume.spacing[1], self.dose,
                                              exposure=exposure, **self.simulate_kwargs)
        return _CALIBRATIONS[key]

    def _low(self, image: Tensor, volume: CTVolume, k: int, *keys) -> Tensor:
        from lidplug.simulation import simulate_low_dose

        exposure = None if volume.exposure is None else volume.exposure[k]
        i0 = self.calibration(volume).i0_for(exposure)
        seed = derive_seed(self.seed, self.split, *keys)
        return simulate_low_dose(image[None], self.dose, method="insert", i0=i0,
                                 pixel_spacing=volume.spacing[1], seed=seed,
                                 **self.simulate_kwargs)[0]

    def _window(self, site: Tensor, rng: np.random.Generator, shape) -> tuple[slice, slice]:
        h, w = shape
        if self.patch is None or self.split != "train":
            return slice(0, h), slice(0, w)
        p = self.patch
        rows, cols = torch.nonzero(site, as_tuple=True)
        j = int(rng.integers(rows.numel()))
        top = min(max(int(rows[j]) - p // 2, 0), h - p)
        left = min(max(int(cols[j]) - p // 2, 0), w - p)
        return slice(top, top + p), slice(left, left + p)

    def _draw(self, index: int) -> dict[str, Any]:
        """Everything sample ``index`` is made of, before the noise."""
        rng = np.random.default_rng(derive_seed(self.seed, self.split, index, "lesions"))
        volume, k, site = self.slices[int(self.order[index % len(self.slices)])]
        rows, cols = self._window(site, rng, tuple(volume.hu.shape[-2:]))
        lo, hi = self.count_range
        count = 0 if rng.random() < self.lesion_free_fraction else int(rng.integers(lo, hi + 1))
        chosen = [self.nodules[int(j)] for j in rng.integers(len(self.nodules), size=count)]
        shapes, contrasts = [], []
        for nodule in chosen:
            signal, mask = resample_signal(nodule.signal, nodule.mask, nodule.spacing,
                                           volume.spacing)
            own = float(signal[mask].mean()) if bool(mask.any()) else nodule.contrast_hu
            target = own if self.contrast_range is None else float(rng.uniform(
                *self.contrast_range))
            shapes.append((signal * (target / own), mask))
            contrasts.append(target)
        # Placed within the window (the whole slice, or the training patch): cheaper, and
        # no lesion is cut by the patch's border.
        placed = placements(shapes, site[rows, cols], rng)
        kept = [(dataclasses.replace(p, top=p.top + rows.start, left=p.left + cols.start), n, c)
                for p, n, c in zip(placed, chosen, contrasts, strict=True) if p is not None]
        hybrid, signal, lesion_map = insert(volume.hu[k], [p for p, _, _ in kept])
        return {"volume": volume, "slice": k, "window": (rows, cols), "hybrid": hybrid,
                "signal": signal, "lesions": lesion_map, "nodules": [n for _, n, _ in kept],
                "contrasts": [c for _, _, c in kept]}

    def _meta(self, index: int, volume: CTVolume, k: int, **extra) -> dict[str, Any]:
        cal = self.calibration(volume)
        return {"id": f"{self.source}-{self.variant}-{self.split}-{self.seed}-{index}",
                "index": index, "spacing": volume.spacing, "dose": self.dose,
                "source": self.source, "seed": self.seed, "split": self.split,
                "patient": volume.patient, "scan": volume.source, "slice": k,
                "slice_name": volume.names[k] if volume.names else str(k),
                "noise_hu": cal.noise_hu, "low_dose_noise_hu": cal.low_dose_noise_hu,
                "i0": cal.i0_for(None if volume.exposure is None else volume.exposure[k]),
                **extra}

    def _make_sample(self, index: int) -> dict[str, Any]:
        if self.variant == "real":
            volume, k, _ = self.slices[index]
            normal = volume.hu[k]
            low = self._low(normal, volume, k, "real", volume.source, k)
            meta = self._meta(index, volume, k, lesion_source="annotation")
            return make_sample(low[None], normal[None], volume.boxes[k],
                               [1] * volume.boxes[k].shape[0], meta, clip=True)
        d = self._draw(index)
        volume, k, (rows, cols) = d["volume"], d["slice"], d["window"]
        low = self._low(d["hybrid"], volume, k, index, "noise")
        lesion_map = d["lesions"][rows, cols]
        boxes = [mask_to_box(lesion_map == j) for j in range(1, len(d["nodules"]) + 1)]
        meta = self._meta(index, volume, k, window=(rows.start, cols.start),
                          nodules=[n.name for n in d["nodules"]],
                          contrast_hu=d["contrasts"], lesion_source="inserted")
        return make_sample(low[rows, cols][None], d["hybrid"][rows, cols][None],
                           torch.stack(boxes) if boxes else torch.zeros(0, 4),
                           [1] * len(boxes), meta)

    def reference(self, index: int, *, lesion_free: bool = True) -> dict[str, Tensor]:
        """What the evaluation needs of sample ``index`` beyond the sample itself, in HU.

        Args:
            index: the sample.
            lesion_free: accepted for the datasets' common call; nothing needs simulating for
                it here (the lesion-free twin at low dose is ``low - signal``).

        Returns:
            ``lesions`` (``Tensor[H, W]`` int64 lesion map: ``k`` inside lesion ``k``, the
            order of the sample's boxes); for inserted lesions also ``signal`` and
            ``background`` (``Tensor[1, H, W]``: the inserted signal alone, and the slice
            without it).
        """
        if self.variant == "real":
            volume, k, _ = self.slices[index]
            return {"lesions": _real_lesion_map(volume, k)}
        d = self._draw(index)
        rows, cols = d["window"]
        background = d["volume"].hu[d["slice"]]
        return {"lesions": d["lesions"][rows, cols].clone(),
                "signal": d["signal"][rows, cols][None].clone(),
                "background": background[rows, cols][None].clone()}

    def _config(self) -> dict[str, Any]:
        return {"root": str(self.root.resolve()), "split": self.split, "variant": self.variant,
                "dose": self.dose, "seed": self.seed, "patch": self.patch, "site": self.site,
                "counts": self.count_range, "contrast": self.contrast_range,
                "diameter": self.diameter_range, "free": self.lesion_free_fraction,
                "margin": self.margin_slices, "n": self.length,
                "scans": [v.source for v in self.volumes],
                "nodules": [x.name for x in self.nodules],
                "simulate_kwargs": sorted(self.simulate_kwargs.items())}


def _real_lesion_map(volume: CTVolume, k: int) -> Tensor:
    """The lesion map of an annotated slice: its mask's connected regions in the order of its
    boxes, or each box filled where the source has boxes only."""
    h, w = volume.hu.shape[-2:]
    out = torch.zeros((h, w), dtype=torch.int64)
    if volume.mask is not None:
        labels, _ = ndimage.label(volume.mask[k].numpy(), structure=np.ones((3, 3)))
        return torch.from_numpy(labels.astype(np.int64))
    for j, (x1, y1, x2, y2) in enumerate(volume.boxes[k].tolist(), start=1):
        region = out[math.floor(y1):math.ceil(y2), math.floor(x1):math.ceil(x2)]
        region[region == 0] = j
    return out
