"""Physics-based low-dose CT simulation in the projection domain.

``simulate_low_dose(hu, dose)`` turns HU images into low-dose versions of themselves: by noise
insertion into real normal-dose scans (``method="insert"``, default) or by simulating the whole
acquisition of an ideal phantom (``method="full"``), for fan- or parallel-beam scans, on CPU or GPU.

Modules: :mod:`~lidplug.simulation.lowdose` (the physics, defaults and their calibration),
:mod:`~lidplug.simulation.geometry` (scan geometries), :mod:`~lidplug.simulation.noise` (the noise
level of a real image and the photon count that gives it the right noise at a simulated dose), :mod:`~lidplug.simulation.projector`
(Radon transform and FBP by the Fourier slice theorem, cached per geometry and device).
"""

from lidplug.simulation.geometry import DEFAULT_VIEWS, GEOMETRIES
from lidplug.simulation.lowdose import (
    DEFAULT_I0,
    DEFAULT_PIXEL_SPACING_MM,
    DEFAULT_SIGMA_E,
    METHODS,
    MU_WATER_PER_CM,
    simulate_low_dose,
)
from lidplug.simulation.noise import NoiseCalibration, calibrate_i0, noise_level
from lidplug.simulation.projector import FILTERS, ParallelProjector, get_projector

__all__ = [
    "DEFAULT_I0",
    "DEFAULT_PIXEL_SPACING_MM",
    "DEFAULT_SIGMA_E",
    "DEFAULT_VIEWS",
    "FILTERS",
    "GEOMETRIES",
    "METHODS",
    "MU_WATER_PER_CM",
    "NoiseCalibration",
    "ParallelProjector",
    "calibrate_i0",
    "get_projector",
    "noise_level",
    "simulate_low_dose",
]
