"""Projection-domain low-dose CT simulation: ``simulate_low_dose``.

Physics (monoenergetic, no scatter, no beam hardening). HU to linear attenuation:
``mu = mu_water * (1 + HU / 1000)``, clamped at 0 (air), with ``mu_water = 0.193 / cm``, water at
about 70 keV, the effective energy of a 120 kVp beam (NIST XCOM mass attenuation of water:
0.206 cm^2/g at 60 keV, 0.184 cm^2/g at 80 keV).
Line integrals ``p = R(mu) * pixel_cm`` (the projector sums in pixel units). A detector sample
that stands for ``n`` rays (1 in parallel beam, see :mod:`lidplug.simulation.geometry` for fan)
records at dose fraction ``a`` the counts ``N ~ Poisson(n i0 a exp(-p)) + Normal(0, n sigma_e^2)``.

``method="full"`` (ideal phantoms): draw ``N`` (``torch.poisson`` on the float rate), clip it at
``_COUNT_FLOOR`` before the log, ``p_low = log(n i0 a / N)``, FBP back to HU.

``method="insert"`` (real normal-dose scans; Yu et al., Med. Phys. 39(3), 2012; Zeng et al., IEEE
TNS 62(5), 2015): the scan already holds the normal-dose noise, so only the difference is added.
With ``I = n i0 exp(-p)`` the normal-dose mean counts (from the projected image), scaling the
normal-dose counts by ``a`` leaves variance ``a^2 (I + n sigma_e^2)``; the low-dose data need
``a I + n sigma_e^2``; so we add Gaussian counts of variance

    (1 - a) * (a I + (1 + a) n sigma_e^2),

clip, take ``delta = log(a I / N_low)``, and return ``hu + FBP(delta)`` in HU. The image's own
sharpness and texture stay; only noise is added. In the post-log domain this is Zeng's variance
``(1 - a) / a * e^p / (n i0) * (1 + (1 + a) / a * n sigma_e^2 e^p / (n i0))``, which vanishes
at ``a = 1`` (dose 1 returns the input exactly).

Calibration of the defaults (our target, stated and measured rather than taken from a paper):
a 320-mm water cylinder (the CTDI body phantom) on a 512 x 512 grid of 0.7-mm pixels, default fan
geometry and ramp filter, ``method="full"``, noise std in a 50-mm ROI at the centre: 25 HU at
dose 0.25, i.e. twice the 12.5 HU of full dose, the ratio the AAPM-Mayo quarter-dose data have
by construction. ``DEFAULT_I0 = 1.2e7`` meets it (measured: 24.7 HU at dose 0.25, 12.4 HU at
dose 1); ``tests/simulation/test_simulation_calibration.py`` re-measures it. This I0 is an
effective count: about 20x the photons a physical 1-mm detector row gets per view at a routine
abdominal dose (our estimate, ~5e5), because a 2-D ramp-filtered FBP of a single row is much
noisier than a clinical helical reconstruction with a smooth kernel; matching the image noise,
not the photon count, is what the denoiser sees. With ``i0 = 3e5`` and the same phantom the
noise is 80 HU at full dose. ``DEFAULT_SIGMA_E = 5`` photons is our assumption (it matters only
for rays keeping fewer than about 100 photons). Noise follows every scan parameter as on a real
scanner: a smaller object, bigger pixels, more views or a smoothing filter lower it.
"""

from __future__ import annotations

import math

import torch

from lidplug.simulation._inputs import batched, per_image, positive_float
from lidplug.simulation.geometry import SOURCE_DETECTOR_MM, SOURCE_ISOCENTER_MM, acquisition
from lidplug.simulation.projector import FILTERS, get_projector

__all__ = [
    "DEFAULT_I0",
    "DEFAULT_PIXEL_SPACING_MM",
    "DEFAULT_SIGMA_E",
    "METHODS",
    "MU_WATER_PER_CM",
    "simulate_low_dose",
]

MU_WATER_PER_CM = 0.193
DEFAULT_I0 = 1.2e7
DEFAULT_SIGMA_E = 5.0
DEFAULT_PIXEL_SPACING_MM = 0.7
METHODS = ("insert", "full")
# Counts are clipped here before the log: a detector never reports <= 0 to the reconstruction.
_COUNT_FLOOR = 1.0


@torch.no_grad()
def simulate_low_dose(hu: torch.Tensor, dose, *, method: str = "insert", geometry: str = "fan",
                      i0: float = DEFAULT_I0, sigma_e: float = DEFAULT_SIGMA_E,
                      views: int | None = None, detector_bins: int | None = None,
                      pixel_spacing=DEFAULT_PIXEL_SPACING_MM,
                      source_isocenter_mm: float = SOURCE_ISOCENTER_MM,
                      source_detector_mm: float = SOURCE_DETECTOR_MM,
                      detector_pitch_mm: float | None = None, filter_name: str = "ramp",
                      mu_water: float = MU_WATER_PER_CM, noise: bool = True,
                      seed: int | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Simulates a low-dose CT image from an HU image, in the projection domain.

    Device-agnostic (the image's device), not differentiable. Float16/bfloat16 inputs are
    computed in float32, float64 in float64; the result has the input's dtype and shape.

    Args:
        hu: Tensor[H, W], [1, H, W] or [B, 1, H, W] in Hounsfield units.
        dose: Dose fraction ``a`` in (0, 1]: a number or one per image (Tensor[B] or a list).
        method: ``"insert"`` (add the noise a normal-dose scan lacks) or ``"full"`` (simulate
            the whole acquisition of an ideal, noise-free image).
        geometry: ``"fan"`` (default) or ``"parallel"``; see :mod:`lidplug.simulation.geometry`.
        i0: Incident photons per detector bin per view at full dose; ``inf`` means no noise.
        sigma_e: Electronic noise std per detector bin per view (photons), >= 0.
        views: Views per rotation (fan, 360 degrees; default 1152) or per 180 degrees
            (parallel; default 720).
        detector_bins: Detector bins (parallel, >= the image diagonal) or fan channels;
            default: cover the image with one-pixel pitch at isocentre.
        pixel_spacing: Pixel size in mm, a number or one per image.
        source_isocenter_mm: Fan only, source to rotation axis.
        source_detector_mm: Fan only, source to detector.
        detector_pitch_mm: Fan only, channel pitch on the detector; default: fit the image.
        filter_name: FBP window, one of ``FILTERS``.
        mu_water: Linear attenuation of water, 1/cm.
        noise: False returns the noise-free result (insert: the input; full: FBP of the
            projections).
        seed: Seed of a private generator (same seed, same device: same output).
        generator: A ``torch.Generator`` on the image's device (exclusive with ``seed``).

    Returns:
        Low-dose image in HU, same shape, dtype and device as ``hu``.

    Raises:
        TypeError: ``hu`` is not a floating tensor, or a parameter has the wrong type.
        ValueError: Bad shape, non-finite HU, dose outside (0, 1], or a bad scan parameter.
    """
    image, restore = batched(hu)
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if filter_name not in FILTERS:
        raise ValueError(f"filter_name: expected one of {FILTERS}, got {filter_name!r}")
    if seed is not None and generator is not None:
        raise ValueError("seed and generator: expected at most one of them, got both")
    batch, height, width = image.shape
    device = image.device
    dtype = torch.float64 if image.dtype == torch.float64 else torch.float32
    options = {"device": device, "dtype": dtype}
    dose = per_image("dose", dose, batch, **options, low=0.0, high=1.0, include_high=True)
    spacing = per_image("pixel_spacing", pixel_spacing, batch, **options, low=0.0,
                        high=math.inf, include_high=False)
    i0 = positive_float("i0", i0, allow_inf=True)
    sigma_e = positive_float("sigma_e", sigma_e, allow_zero=True)
    mu_water = positive_float("mu_water", mu_water)
    scan = acquisition(geometry, height, width, spacing, views=views, detector_bins=detector_bins,
                       source_isocenter_mm=source_isocenter_mm,
                       source_detector_mm=source_detector_mm, detector_pitch_mm=detector_pitch_mm)
    noisy = bool(noise) and math.isfinite(i0)
    x = image.to(dtype)
    if method == "insert" and (not noisy or bool((dose == 1).all())):
        return restore(x.clone().to(image.dtype))
    rng = _generator(seed, generator, device)
    projector = get_projector(height, width, scan.views, scan.bins, **options)
    pixel_cm = (spacing / 10.0)[:, None, None]
    mu = (mu_water * (1.0 + x / 1000.0)).clamp_min(0.0)
    line = projector.forward(mu) * pixel_cm
    a = dose[:, None, None]
    if method == "full":
        if noisy:
            line = _full_scan(line, scan.rays * i0, scan.rays * sigma_e**2, a, rng)
        mu = projector.fbp(line, filter_name) / pixel_cm
        out = 1000.0 * (mu / mu_water - 1.0)
    else:
        delta = _added_noise(line, scan.rays * i0, scan.rays * sigma_e**2, a, rng)
        out = x + (1000.0 / mu_water) * projector.fbp(delta, filter_name) / pixel_cm
    return restore(out.to(image.dtype))


def _full_scan(line, flux, electronic_var, dose, rng):
    """Low-dose line integrals ``log(n i0 a / N)`` from Poisson + Gaussian counts ``N``.

    Args:
        line: Noise-free line integrals, Tensor[B, V, D].
        flux: Photons per sample in air at full dose ``n i0``, Tensor[B, 1, D].
        electronic_var: ``n sigma_e^2``, Tensor[B, 1, D].
        dose: Tensor[B, 1, 1].
        rng: Generator or None.

    Returns:
        Tensor[B, V, D].
    """
    air = flux * dose
    counts = torch.poisson(air * torch.exp(-line), generator=rng)
    if bool((electronic_var > 0).any()):
        counts = counts + torch.sqrt(electronic_var) * _normal(counts, rng)
    return torch.log(air / counts.clamp_min(_COUNT_FLOOR))


def _added_noise(line, flux, electronic_var, dose, rng):
    """Post-log noise ``delta = log(a I / N_low)`` that takes normal-dose data to dose ``a``.

    Args and shapes as :func:`_full_scan`; returns Tensor[B, V, D], exactly 0 where ``a = 1``.
    """
    low = (dose * flux * torch.exp(-line)).clamp_min(_COUNT_FLOOR)
    variance = (1.0 - dose) * (low + (1.0 + dose) * electronic_var)
    counts = low + torch.sqrt(variance) * _normal(low, rng)
    return torch.log(low / counts.clamp_min(_COUNT_FLOOR))


def _normal(like: torch.Tensor, rng) -> torch.Tensor:
    return torch.randn(like.shape, generator=rng, device=like.device, dtype=like.dtype)


def _generator(seed, generator, device):
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
        if generator.device.type != device.type:
            raise ValueError(f"generator: expected one on {device.type} (the image's device), "
                             f"got one on {generator.device.type}")
        return generator
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    return torch.Generator(device=device).manual_seed(seed)
