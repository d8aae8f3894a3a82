"""Scan geometries: parallel beam, and a fan beam modelled by its rebinned parallel equivalent.

Parallel beam: ``views`` angles over 180 degrees, ``detector_bins`` bins one pixel wide (at least
the image diagonal, so nothing is truncated). Each bin of each view receives ``i0`` photons.

Fan beam (third-generation scanner, equiangular arc detector, full 360-degree rotation):
``views`` source positions ``beta``, ``detector_bins`` channels at fan angles ``gamma`` of pitch
``d_gamma = detector_pitch_mm / source_detector_mm``, each receiving ``i0`` photons per view. The
fan ray ``(beta, gamma)`` is the parallel ray ``theta = beta + gamma``, ``s = R sin gamma``
(``R`` = source-isocentre distance; Kak and Slaney ch. 3.4). Clinical scanners rebin fan data to
parallel views before FBP; we simulate directly on that rebinned grid (``views / 2`` angles over
180 degrees, one-pixel bins), which keeps the line integrals exact (no interpolation of the
object) and gives each rebinned sample the photons of the fan rays it stands for. The Jacobian
``d theta ds = R cos(gamma) d beta d gamma`` gives that number of rays per sample:

    n(s) = 2 * (pi / V_par) * ds / (R cos(gamma) * (2 pi / views) * d_gamma),  gamma = asin(s / R)

(the 2: a 360-degree scan measures every line twice). A sample's counts are then Poisson with
mean ``n(s) i0 exp(-p)`` and its electronic-noise variance is ``n(s) sigma_e^2``: the noise
spectral density of the fan data, mapped exactly by the change of variables, without the
interpolation of white noise that a literal rebinning would add. What this leaves out: the
finite focal spot and detector aperture, and the band limit of a detector coarser than a pixel.

Defaults follow the Siemens SOMATOM Definition AS+/Flash of the AAPM-Mayo Low Dose CT data
(McCollough et al., Med. Phys. 44(10), 2017; DICOM-CT-PD headers of that data):
``source_isocenter_mm = 595``, ``source_detector_mm = 1085.6``, 1152 views per rotation (without
the flying focal spot). Unless ``detector_pitch_mm`` is given, the channels span exactly the
image's circumscribed circle and ``detector_bins`` defaults to a pitch at isocentre of one pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lidplug.simulation._inputs import positive_float, positive_int
from lidplug.simulation.projector import default_detector_bins

__all__ = [
    "DEFAULT_VIEWS",
    "GEOMETRIES",
    "SOURCE_DETECTOR_MM",
    "SOURCE_ISOCENTER_MM",
    "Acquisition",
    "acquisition",
]

GEOMETRIES = ("fan", "parallel")
DEFAULT_VIEWS = {"fan": 1152, "parallel": 720}
SOURCE_ISOCENTER_MM = 595.0
SOURCE_DETECTOR_MM = 1085.6


@dataclass(frozen=True)
class Acquisition:
    """The parallel grid the simulation runs on, and the photons of each of its samples.

    Attributes:
        views: Parallel angles V over 180 degrees.
        bins: Parallel detector bins D (one pixel wide).
        rays: Tensor[B, 1, D], fan rays rebinned into each sample (ones for parallel beam).
    """

    views: int
    bins: int
    rays: torch.Tensor


def acquisition(geometry: str, height: int, width: int, spacing_mm: torch.Tensor, *,
                views: int | None, detector_bins: int | None, source_isocenter_mm: float,
                source_detector_mm: float, detector_pitch_mm: float | None) -> Acquisition:
    """Resolves the scan parameters to the parallel grid and per-sample ray counts.

    Args:
        geometry: ``"fan"`` or ``"parallel"``.
        height: Image rows H.
        width: Image columns W.
        spacing_mm: Pixel size per image, Tensor[B] (mm), on the output device.
        views: Projections per scan (per 360 degrees for fan, 180 for parallel); None: default.
        detector_bins: Detector bins or channels; None: cover the image (see the module doc).
        source_isocenter_mm: Fan only, ``R``.
        source_detector_mm: Fan only, converts ``detector_pitch_mm`` to an angle.
        detector_pitch_mm: Fan only, channel pitch on the detector arc; None: fit the image.

    Returns:
        The :class:`Acquisition`.

    Raises:
        ValueError: Unknown geometry, non-positive sizes, or a detector that truncates the image.
    """
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry: expected one of {GEOMETRIES}, got {geometry!r}")
    views = DEFAULT_VIEWS[geometry] if views is None else positive_int("views", views, 2)
    diagonal = default_detector_bins(height, width)
    if geometry == "parallel":
        if detector_bins is not None:
            positive_int("detector_bins", detector_bins, diagonal, " (the image diagonal)")
        bins = detector_bins or diagonal
        rays = torch.ones(spacing_mm.numel(), 1, bins, dtype=spacing_mm.dtype,
                          device=spacing_mm.device)
        return Acquisition(views, bins, rays)
    radius = positive_float("source_isocenter_mm", source_isocenter_mm)
    distance = positive_float("source_detector_mm", source_detector_mm)
    if distance <= radius:
        raise ValueError(f"source_detector_mm: expected more than source_isocenter_mm={radius}, "
                         f"got {distance}")
    # The image's circumscribed circle, per image (mm), must lie inside the source circle.
    fov = 0.5 * math.hypot(height, width) * spacing_mm
    if bool((fov >= radius).any()):
        raise ValueError(f"source_isocenter_mm: expected more than the image's half-diagonal "
                         f"{float(fov.max()):.1f} mm, got {radius}")
    half_fan = torch.asin(fov / radius)
    if detector_pitch_mm is not None:
        pitch = positive_float("detector_pitch_mm", detector_pitch_mm) / distance
        needed = math.ceil(float(2 * half_fan.max()) / pitch - 1e-9)
        if detector_bins is not None:
            positive_int("detector_bins", detector_bins, needed, " (channels to span the image)")
        d_gamma = torch.full_like(spacing_mm, pitch)
    else:
        # Channels span the fan 2 * half_fan; by default their pitch at isocentre is one pixel.
        if detector_bins is None:
            channels = torch.ceil(2 * half_fan * radius / spacing_mm)
        else:
            channels = torch.full_like(spacing_mm, positive_int("detector_bins", detector_bins, 2))
        d_gamma = 2 * half_fan / channels
    par_views = (views + 1) // 2
    # Parallel bin centres s (mm) of each image, then gamma = asin(s / R) and n(s) (module doc).
    s = (torch.arange(diagonal, dtype=spacing_mm.dtype, device=spacing_mm.device)
         - (diagonal - 1) / 2) * spacing_mm[:, None]
    cos_gamma = torch.sqrt(1 - (s / radius) ** 2)
    rays = (2 * (math.pi / par_views) * spacing_mm[:, None]
            / (radius * cos_gamma * (2 * math.pi / views) * d_gamma[:, None]))
    return Acquisition(par_views, diagonal, rays[:, None, :])
