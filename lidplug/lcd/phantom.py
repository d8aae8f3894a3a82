"""A digital MITA-LCD phantom (CCT189) scanned by lidplug's simulator, in the toolbox's layout.

**Geometry and contrasts** (the toolbox's ``CCT189_obj.m``): a water cylinder of 200 mm
(0 HU) in air (-1000 HU), and four discs 40 mm from its centre: 3 mm of +14 HU at 45 degrees,
5 mm of +7 HU at 135, 7 mm of +5 HU at 225 and 10 mm of +3 HU at 315 (angles counter-clockwise
from the image's +x axis, y pointing up: the 3-mm disc is top right, as in the toolbox's
images). Pixels are integrated over 4 x 4 sub-pixels (the toolbox's ``ellipse_im`` oversampling),
so rims carry partial volume.

**Image.** 320 x 320 pixels of 0.7 mm by default (224 mm across). Finer than the toolbox
sample's 256 x 256: at 0.86 mm, the 3-mm disc keeps too few full pixels for the toolbox's disc
finding (its 3 x 3 median filter erases the disc); at 0.7 mm every disc is found by both tools.

**Scan** (:func:`lidplug.simulation.simulate_low_dose`, ``method="full"``): the fan-beam
default geometry (1152 views, Siemens-like distances), Poisson counts plus electronic noise,
FBP with the ``ramp`` filter. ``i0`` defaults to :data:`DEFAULT_I0`, chosen so that the FBP noise
at full dose in the phantom's centre is about 24 HU, the noise of the toolbox's sample at 100%
(24 HU; 32 at 55%, 75 at 10%), which puts the discs' AUCs between chance and 1 over the usual
doses. Each image has its own noise (seeded from ``seed``, the dose, the class and its index), so
signal-present and signal-absent images are independent, as the toolbox's are.

**Written** (:func:`write_phantom`): ``OUT/fbp/`` and, per denoiser, ``OUT/<name>/`` with the
denoiser run on those same FBP images (HU in, HU out); each holds ``ground_truth.mhd`` (uint16,
HU + 1000) and ``dose_XXX/signal_{present,absent}/signal_{present,absent}.mhd`` (one int16
volume of ``N`` images, HU + 1000, rounded), with the pixel size in ``ElementSpacing``: the
layout and names both ``lidplug lcd score`` and the toolbox's ``measure_LCD`` read.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lidplug.io.metaimage import write_metaimage
from lidplug.lcd.layout import ABSENT, PRESENT, TRUTH, dose_folder_name

__all__ = ["CCT189_DISCS", "DEFAULT_I0", "DEFAULT_PIXEL_MM", "DEFAULT_SIZE", "OFFSET",
           "PHANTOM_DIAMETER_MM", "PhantomDisc", "cct189", "write_phantom"]


@dataclass(frozen=True)
class PhantomDisc:
    """A disc of the phantom: diameter (mm), contrast (HU), angle (degrees, from +x, y up)."""

    diameter_mm: float
    contrast_hu: float
    angle_deg: float


PHANTOM_DIAMETER_MM = 200.0
DISC_DISTANCE_MM = 40.0
CCT189_DISCS = (PhantomDisc(3.0, 14.0, 45.0), PhantomDisc(5.0, 7.0, 135.0),
                PhantomDisc(7.0, 5.0, 225.0), PhantomDisc(10.0, 3.0, 315.0))
DEFAULT_SIZE = 320
DEFAULT_PIXEL_MM = 0.7
#: Photons per detector bin at full dose: 24 HU of FBP noise in the centre at full dose
#: (measured: ``tests/lcd/test_phantom.py``), as the toolbox's sample has.
DEFAULT_I0 = 3.2e5
OFFSET = 1000.0
_SUPERSAMPLE = 4
_BATCH = 16
_AIR_HU = -1000.0


def cct189(size: int = DEFAULT_SIZE, pixel_mm: float = DEFAULT_PIXEL_MM, *,
           discs: bool = True) -> torch.Tensor:
    """The noise-free phantom in HU.

    Args:
        size: image side in pixels.
        pixel_mm: pixel size in mm; the cylinder must fit: ``size * pixel_mm > 200``.
        discs: False gives the background alone (the signal-absent object).

    Returns:
        ``float32[size, size]``, HU with partial volume at the edges.

    Raises:
        ValueError: a size or pixel size that does not hold the cylinder.
    """
    if not (isinstance(size, int) and size >= 16 and pixel_mm > 0
            and size * pixel_mm > PHANTOM_DIAMETER_MM):
        raise ValueError(f"cct189: expected an image wider than the {PHANTOM_DIAMETER_MM:g}-mm "
                         f"phantom (size * pixel_mm > {PHANTOM_DIAMETER_MM:g}), got {size} "
                         f"pixels of {pixel_mm} mm")
    s = _SUPERSAMPLE
    # Sub-pixel centres in mm; x to the right, y up (row 0 is the top of the image).
    t = ((torch.arange(size * s, dtype=torch.float64) + 0.5) / s - size / 2) * pixel_mm
    x, y = t[None, :], -t[:, None]
    fine = torch.where(x**2 + y**2 <= (PHANTOM_DIAMETER_MM / 2) ** 2, 0.0, _AIR_HU)
    if discs:
        for d in CCT189_DISCS:
            cx = DISC_DISTANCE_MM * math.cos(math.radians(d.angle_deg))
            cy = DISC_DISTANCE_MM * math.sin(math.radians(d.angle_deg))
            inside = (x - cx) ** 2 + (y - cy) ** 2 <= (d.diameter_mm / 2) ** 2
            fine = fine + d.contrast_hu * inside
    return fine.reshape(size, s, size, s).mean(dim=(1, 3)).float()


def _stored(hu: torch.Tensor, dtype) -> np.ndarray:
    """HU + 1000, rounded, clipped to ``dtype``: how the toolbox's files store HU."""
    info = np.iinfo(dtype)
    return np.clip(np.rint(hu.double().cpu().numpy() + OFFSET), info.min, info.max).astype(dtype)


def _check_doses(doses: Sequence[float]) -> list[float]:
    """Dose fractions as whole percentages, each once (the toolbox's ``dose_XXX`` names)."""
    percents = []
    for dose in doses:
        percent = round(float(dose) * 100, 6)
        if not (0 < dose <= 1 and percent.is_integer()) or percent in percents:
            raise ValueError(f"expected distinct doses in (0, 1] that are whole percentages "
                             f"(the toolbox's dose_XXX folders), got {dose!r}")
        percents.append(percent)
    return percents


def write_phantom(out: str | os.PathLike, doses: Sequence[float], images: int, *,
                  denoisers: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
                  size: int = DEFAULT_SIZE, pixel_mm: float = DEFAULT_PIXEL_MM,
                  i0: float = DEFAULT_I0, seed: int = 0, device: str = "cpu",
                  progress: Callable[[str], None] | None = None) -> dict[str, float]:
    """Scan the phantom at each dose and write FBP and denoised sets in the toolbox's layout.

    Args:
        out: the output folder (``OUT/fbp``, ``OUT/<denoiser>``).
        doses: dose fractions in (0, 1], whole percentages (0.1 -> ``dose_010``).
        images: realisations per class (signal present, signal absent) and dose.
        denoisers: name -> a function from HU ``Tensor[B, 1, H, W]`` to HU of the same shape
            (e.g. ``lidplug.load(path).denoise_hu``), run on the FBP images in batches.
        size, pixel_mm: the image (see :func:`cct189`).
        i0: photons per detector bin per view at full dose.
        seed: base seed of the noise.
        device: where to simulate and denoise.
        progress: called with a line per dose as it is done.

    Returns:
        Seconds spent: ``{"simulate": ..., "<denoiser>": ..., "write": ...}``.

    Raises:
        ValueError: bad doses, image count, name or geometry (nothing is written then).
    """
    from lidplug.data.sample import derive_seed
    from lidplug.simulation import simulate_low_dose

    percents = _check_doses(doses)
    if not (isinstance(images, int) and images >= 2):
        raise ValueError(f"expected at least 2 images per class, got {images!r}")
    denoisers = dict(denoisers or {})
    if "fbp" in denoisers or any(not n or "/" in n or n.startswith(".") for n in denoisers):
        raise ValueError(f"expected denoiser names that are folder names other than 'fbp', got "
                         f"{sorted(denoisers)}")
    objects = {PRESENT: cct189(size, pixel_mm, discs=True), ABSENT: cct189(size, pixel_mm,
                                                                            discs=False)}
    out = Path(out)
    recons = ["fbp", *denoisers]
    seconds = dict.fromkeys(["simulate", *denoisers, "write"], 0.0)
    start = time.perf_counter()
    for recon in recons:
        (out / recon).mkdir(parents=True, exist_ok=True)
        write_metaimage(_stored(objects[PRESENT], np.uint16), out / recon / TRUTH,
                        (pixel_mm, pixel_mm))
    seconds["write"] += time.perf_counter() - start
    for dose, percent in zip(doses, percents, strict=True):
        for cls, obj in objects.items():
            stacks: dict[str, list[np.ndarray]] = {r: [] for r in recons}
            truth = obj.to(device)[None, None]
            for first in range(0, images, _BATCH):
                count = min(_BATCH, images - first)
                tick = time.perf_counter()
                # One generator per batch: the batch size is fixed, so a seed gives one set.
                gen = torch.Generator(device=device)
                gen.manual_seed(derive_seed(seed, f"{percent:g}", cls, first))
                fbp = simulate_low_dose(truth.expand(count, -1, -1, -1), float(dose),
                                        method="full", i0=i0, pixel_spacing=pixel_mm,
                                        generator=gen)
                seconds["simulate"] += time.perf_counter() - tick
                stacks["fbp"].append(_stored(fbp[:, 0], np.int16))
                for name, denoise in denoisers.items():
                    tick = time.perf_counter()
                    with torch.inference_mode():
                        stacks[name].append(_stored(denoise(fbp)[:, 0], np.int16))
                    seconds[name] += time.perf_counter() - tick
            tick = time.perf_counter()
            for recon in recons:
                folder = out / recon / dose_folder_name(percent) / cls
                folder.mkdir(parents=True, exist_ok=True)
                write_metaimage(np.concatenate(stacks[recon]), folder / f"{cls}.mhd",
                                (1.0, pixel_mm, pixel_mm))
            seconds["write"] += time.perf_counter() - tick
        if progress is not None:
            progress(f"dose {percent:g}%: {images} + {images} images, {len(recons)} recon(s)")
    return seconds
