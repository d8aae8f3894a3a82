"""Built-in synthetic lesion phantoms: the default data the main job trains on, no download needed.

Each sample is a random upper-abdominal slice (body outline with skin and subcutaneous fat, muscle
wall, liver, spleen, kidneys, aorta and IVC, bowel with gas, vertebra with paraspinal muscles,
ribs, and at the lung bases lungs at about -850 HU), with smooth correlated tissue texture of a few
HU, and 1..``max_lesions`` lesions in liver, kidney, spleen or muscle: 3-30 mm, -60..+80 HU against
their background, lobulated soft-edged ellipses with exact tight boxes. A fixed fraction of the
slices has no lesion.

Doses. The noise-free phantom is the ground truth. ``normal`` is a full projection-domain
simulation of it at ``normal_dose`` (default 1.0, the simulator's reference dose) and ``low`` an
independent one at ``dose``, both by ``lidplug.simulation.simulate_low_dose(method="full")`` (the
method meant for ideal phantoms) with the phantom's pixel size and their own seeds. So low and
normal went through the same reconstruction (its slight blur and edge ripple included) and differ
by dose only, as clinical pairs do: a denoiser learns to remove noise, not to undo the
reconstruction. ``normal_dose=None`` returns the noise-free phantom as ``normal`` instead.

Evaluation references (:meth:`PhantomDataset.reference`): the noise-free phantom itself (the
reference of every image metric: the normal-dose slice is noisy too), its noise-free
reconstruction (the best a denoiser trained on these pairs can reach: the reconstruction's own
blur and edge ripple stay), and a low-dose simulation of the same slice without its lesions
(same dose, independent noise), for signal-known-exactly model observers.

Determinism. Sample ``i`` depends only on the constructor arguments and ``i``: every random draw
comes from generators seeded by :func:`lidplug.data.derive_seed` ``(seed, i, stream)``, never from
global state, so it is identical across runs, processes and DataLoader workers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lidplug.data._body import Tissue, paint_body
from lidplug.data._lesions import HOST_TISSUES, LesionSpec, insert_lesions
from lidplug.data.dataset import LesionDataset
from lidplug.data.sample import derive_seed, make_sample

__all__ = ["LesionSpec", "Phantom", "PhantomDataset", "Tissue", "generate_phantom"]

_FOV_MM = 384.0  # default field of view: 256 pixels of 1.5 mm
_GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True)
class Phantom:
    """One noise-free phantom slice and its ground truth.

    Attributes:
        hu: ``[H, W]`` float32 HU image with lesions.
        background: ``[H, W]`` float32 the same image before the lesions were added.
        tissue: ``[H, W]`` uint8 :class:`Tissue` label of each pixel.
        lesions: ``[H, W]`` int16 lesion map, 0 outside lesions, ``k`` inside lesion ``k``.
        boxes: ``[L, 4]`` float32 ``xyxy`` tight boxes; ``boxes[k - 1]`` bounds lesion ``k``.
        hosts: :class:`Tissue` each lesion sits in.
        contrasts: each lesion's contrast against its background in HU.
        spacing: pixel size in mm (square pixels).
    """

    hu: Tensor
    background: Tensor
    tissue: Tensor
    lesions: Tensor
    boxes: Tensor
    hosts: tuple[Tissue, ...]
    contrasts: tuple[float, ...]
    spacing: float


def generate_phantom(
    seed: int | np.random.Generator,
    *,
    size: int | tuple[int, int] = 256,
    spacing: float | None = None,
    num_lesions: int = 1,
    lesions: LesionSpec | None = None,
) -> Phantom:
    """Generate one noise-free phantom slice.

    Args:
        seed: an int or a numpy Generator; the only source of randomness.
        size: ``H`` (square) or ``(H, W)`` in pixels.
        spacing: pixel size in mm; default ``384 / max(H, W)`` (1.5 mm at 256). A field of view
            smaller than an adult abdomen gets a proportionally smaller body.
        num_lesions: lesions to insert (0 for a lesion-free slice).
        lesions: size and contrast ranges; default :class:`LesionSpec` ().

    Returns:
        The :class:`Phantom`.
    """
    h, w = (size, size) if isinstance(size, int) else size
    if min(h, w) < 32:
        raise ValueError(f"size: expected at least 32 pixels a side, got {(h, w)}")
    spacing = _FOV_MM / max(h, w) if spacing is None else float(spacing)
    if not spacing > 0:
        raise ValueError(f"spacing: expected a positive pixel size in mm, got {spacing}")
    if num_lesions < 0:
        raise ValueError(f"num_lesions: expected >= 0, got {num_lesions}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    hu, tissue = paint_body(rng, (h, w), spacing)
    background = hu.copy()
    lesion_map, boxes, info = insert_lesions(
        rng, hu, tissue, num_lesions, spacing, lesions or LesionSpec()
    )
    return Phantom(
        hu=torch.from_numpy(hu),
        background=torch.from_numpy(background),
        tissue=torch.from_numpy(tissue),
        lesions=torch.from_numpy(lesion_map),
        boxes=torch.from_numpy(boxes),
        hosts=tuple(Tissue(t) for t, _ in info),
        contrasts=tuple(c for _, c in info),
        spacing=spacing,
    )


class PhantomDataset(LesionDataset):
    """Synthetic lesion phantoms as low/normal-dose pairs with boxes (see the module docstring).

    Args:
        length: number of samples.
        size: ``H`` or ``(H, W)`` in pixels.
        spacing: pixel size in mm, default 384 mm / size.
        dose: dose of ``low`` as a fraction of the reference dose, or a ``(min, max)`` range drawn
            log-uniformly per sample (``meta["dose"]`` holds the value used).
        normal_dose: dose of ``normal``; None for the noise-free phantom.
        seed: base seed; sample ``i`` is a function of ``(seed, i)`` and the other arguments.
        lesion_free_fraction: fraction of slices without lesions; slice ``i`` is lesion-free when
            ``frac((i + 0.5) * 0.618...) < lesion_free_fraction``, which spreads them evenly.
        max_lesions: lesion slices hold 1..max_lesions lesions (uniform).
        lesions: size and contrast ranges.
        labels: ``"lesion"`` (all 1) or ``"coarse"`` (DeepLesion type of the host organ).
        transform: applied to each sample dict (e.g. ``MapImages(HUWindow())``).
        cache: None, ``"memory"`` or a folder, see :class:`~lidplug.data.dataset.LesionDataset`.
        simulate_kwargs: extra keyword arguments for ``simulate_low_dose``.

    Noise. The defaults simulate a clinical photon count (``simulate_low_dose``'s ``i0``,
    1.2e7) on 1.5-mm pixels: inside the body, against the noise-free reconstruction, about
    6 HU of noise at the default dose 0.25 and 3 HU at normal dose (``size=128``, 3-mm
    pixels: 3 and 1.5 HU), too little for a denoiser to learn much. The demo's task
    (``size=96, spacing=3.0, dose=0.1, simulate_kwargs={"i0": 1e5}``) has about 37 and 11 HU
    (measured on 6 slices each).
    """

    source = "phantom"

    def __init__(
        self,
        length: int = 1024,
        *,
        size: int | tuple[int, int] = 256,
        spacing: float | None = None,
        dose: float | tuple[float, float] = 0.25,
        normal_dose: float | None = 1.0,
        seed: int = 0,
        lesion_free_fraction: float = 0.2,
        max_lesions: int = 3,
        lesions: LesionSpec | None = None,
        labels: str = "lesion",
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        cache: str | os.PathLike | None = None,
        simulate_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(labels=labels, transform=transform, cache=cache)
        if length < 1:
            raise ValueError(f"length: expected >= 1, got {length}")
        doses = (dose, dose) if isinstance(dose, (int, float)) else tuple(dose)
        top = 1.0 if normal_dose is None else normal_dose
        if len(doses) != 2 or not 0 < doses[0] <= doses[1] <= top:
            raise ValueError(
                f"dose: expected a value or (min, max) range in (0, {top}] (normal_dose), "
                f"got {dose}"
            )
        if not 0 <= lesion_free_fraction <= 1:
            raise ValueError(
                f"lesion_free_fraction: expected in [0, 1], got {lesion_free_fraction}"
            )
        if max_lesions < 1:
            raise ValueError(f"max_lesions: expected >= 1, got {max_lesions}")
        self.length = int(length)
        self.size = size
        self.spacing = spacing
        self.dose = dose
        self.normal_dose = normal_dose
        self.seed = int(seed)
        self.lesion_free_fraction = float(lesion_free_fraction)
        self.max_lesions = int(max_lesions)
        self.lesions = lesions or LesionSpec()
        self.simulate_kwargs = dict(simulate_kwargs or {})

    def __len__(self) -> int:
        return self.length

    def phantom(self, index: int) -> Phantom:
        """The noise-free ground truth of sample ``index`` (cheap: no dose simulation)."""
        rng = np.random.default_rng(derive_seed(self.seed, index, 0))
        lesion_free = ((index + 0.5) * _GOLDEN) % 1.0 < self.lesion_free_fraction
        count = 0 if lesion_free else int(rng.integers(1, self.max_lesions + 1))
        return generate_phantom(
            rng, size=self.size, spacing=self.spacing, num_lesions=count, lesions=self.lesions
        )

    def _simulate(self, image: Tensor, dose: float, spacing: float, stream: int | None,
                  index: int) -> Tensor:
        from lidplug.simulation import simulate_low_dose

        # The simulator needs the pixel size: noise depends on the attenuation path in cm.
        options = {"method": "full", "pixel_spacing": spacing, **self.simulate_kwargs}
        if stream is None:
            return simulate_low_dose(image.unsqueeze(0), dose, noise=False, **options)[0]
        return simulate_low_dose(image.unsqueeze(0), dose,
                                 seed=derive_seed(self.seed, index, stream), **options)[0]

    def reference(self, index: int, *, lesion_free: bool = True) -> dict[str, Any]:
        """The evaluation references of sample ``index`` (see the module docstring), in HU.

        Args:
            index: the sample.
            lesion_free: also simulate its lesion-free twin (a second dose simulation; only
                the model observer needs it).

        Returns:
            dict with ``phantom`` (:class:`Phantom`, the noise-free truth with its masks),
            ``noise_free`` (``Tensor[1, H, W]`` its noise-free reconstruction) and, with
            ``lesion_free``, ``lesion_free_low`` (``Tensor[1, H, W]`` the lesion-free slice at
            the sample's dose, independent noise).
        """
        ph = self.phantom(index)
        out = {"phantom": ph,
               "noise_free": self._simulate(ph.hu, 1.0, ph.spacing, None, index).unsqueeze(0)}
        if lesion_free:
            out["lesion_free_low"] = self._simulate(ph.background, self._dose(index),
                                                    ph.spacing, 4, index).unsqueeze(0)
        return out

    def _make_sample(self, index: int) -> dict[str, Any]:
        ph = self.phantom(index)
        clean = ph.hu.unsqueeze(0)
        dose = self._dose(index)
        low = self._simulate(ph.hu, dose, ph.spacing, 1, index).unsqueeze(0)
        if self.normal_dose is None:
            normal = clean
        else:
            normal = self._simulate(ph.hu, self.normal_dose, ph.spacing, 2, index).unsqueeze(0)
        labels = [self._lesion_label(HOST_TISSUES[t][1]) for t in ph.hosts]
        meta = {
            "id": f"phantom-{self.seed}-{index}",
            "index": index,
            "spacing": (ph.spacing, ph.spacing),
            "dose": dose,
            "normal_dose": self.normal_dose,
            "source": self.source,
            "seed": self.seed,
        }
        return make_sample(low, normal, ph.boxes, labels, meta)

    def _dose(self, index: int) -> float:
        if isinstance(self.dose, (int, float)):
            return float(self.dose)
        lo, hi = self.dose
        rng = np.random.default_rng(derive_seed(self.seed, index, 3))
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))

    def _config(self) -> dict[str, Any]:
        return {
            "size": self.size, "spacing": self.spacing, "dose": self.dose,
            "normal_dose": self.normal_dose, "seed": self.seed, "labels": self.labels,
            "lesion_free_fraction": self.lesion_free_fraction, "max_lesions": self.max_lesions,
            "lesions": self.lesions, "simulate_kwargs": sorted(self.simulate_kwargs.items()),
        }
