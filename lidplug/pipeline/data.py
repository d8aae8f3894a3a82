"""The run's data: train / validation / test splits, and the held-out set with its references.

Splits never overlap. Phantom splits draw from independent seed streams of ``data.seed``
(``derive_seed(seed, "train")``, ``"validation"``, ``"test"``), so the test slices are not the
slices anything was trained or tuned on; the shipped pretrained models were trained on yet other
streams (their run files use another ``data.seed``). DeepLesion splits by its own
Train_Val_Test column, paired DICOM by folder (``root``, ``validation_root``, ``test_root``).

Every dataset yields HU; the models see the window (:class:`lidplug.data.HUWindow`) through the
dataset transform. The held-out split is materialised once as tensors (:class:`HeldOut`) with
what the evaluation needs: for phantoms the noise-free truth, its noise-free reconstruction, the
body and lesion masks, and the lesion-free low-dose twins of the model observer; for data whose
dataset has a ``reference(i)`` (hybrid slices) the lesion maps, the inserted signal, the
background and the lesion-free twins it gives. Hybrid splits are by patient (the run file's
``data.options.sources``) and draw placements and noise from their own seed streams.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from lidplug.data import HUWindow, MapImages, Tissue, collate, derive_seed
from lidplug.metrics import LesionRegion, lesion_regions
from lidplug.pipeline.resolve import resolve_path
from lidplug.pipeline.spec import RunSpec

__all__ = ["SPLITS", "HeldOut", "held_out", "make_split"]

SPLITS = ("train", "validation", "test")


def _cache(spec: RunSpec, folder: Path | None) -> str | Path:
    """Where generated slices are kept: in memory, or ``data.cache`` (relative to the run
    file's folder, as every path of a run file)."""
    return "memory" if spec.data.cache is None else resolve_path(spec.data.cache, folder)


def _phantom(spec: RunSpec, split: str, window: HUWindow, folder: Path | None):
    from lidplug.data import PhantomDataset

    data, sim = spec.data, spec.simulation
    simulate = {"i0": sim.i0} if sim.views is None else {"i0": sim.i0, "views": sim.views}
    return PhantomDataset(
        getattr(data, split), size=data.size, spacing=data.spacing, dose=sim.dose,
        normal_dose=sim.normal_dose, seed=derive_seed(data.seed, split),
        lesion_free_fraction=data.lesion_free_fraction, max_lesions=data.max_lesions,
        lesions=data.lesions, transform=MapImages(window),
        cache=_cache(spec, folder), simulate_kwargs=simulate)


def _real(spec: RunSpec, split: str, window: HUWindow, folder: Path | None,
          lesions: str) -> Dataset:
    from lidplug.data import DeepLesionDataset, HybridDataset, PairedDicomDataset

    data, sim = spec.data, spec.simulation
    if data.root is None:
        raise ValueError(f"data.root: expected the dataset folder for kind {data.kind!r}, got "
                         "none (give it in the run file or as --data.root PATH)")
    options = {**data.options, "transform": MapImages(window)}
    if data.kind == "hybrid":
        # Generated slices are kept (in memory, or in data.cache): training revisits them.
        options.setdefault("cache", _cache(spec, folder))
        root = resolve_path(data.root, folder)
        cls = HybridDataset
        options.update(split=split, n=getattr(data, split), dose=sim.dose, seed=data.seed,
                       lesions=lesions)
        if sim.views is not None:
            options["simulate_kwargs"] = {**options.get("simulate_kwargs", {}),
                                          "views": sim.views}
    elif data.kind == "deeplesion":
        root = resolve_path(data.root, folder)
        cls = DeepLesionDataset
        options.update(split={"validation": "val"}.get(split, split), dose=sim.dose)
        if sim.method is not None:
            options["simulate_kwargs"] = {**options.get("simulate_kwargs", {}),
                                          "method": sim.method}
    else:
        name = {"train": "root", "validation": "validation_root", "test": "test_root"}[split]
        if getattr(data, name) is None:
            raise ValueError(f"data.{name}: expected the folder of the {split} patients for "
                             "kind 'paired_dicom', got none")
        root = resolve_path(getattr(data, name), folder)
        cls = PairedDicomDataset
        options.setdefault("dose", sim.dose)
    if not root.is_dir():
        raise ValueError(f"data: expected a dataset folder, got {str(root)!r} (missing)")
    try:
        dataset = cls(root, **options)
    except TypeError as err:  # an option the class does not take
        raise ValueError(f"data.options: {err}") from None
    limit = getattr(data, split)
    if data.kind != "hybrid" and limit is not None and limit < len(dataset):
        dataset = Subset(dataset, range(limit))
    return dataset


def make_split(spec: RunSpec, split: str, folder: Path | None = None,
               window: HUWindow | None = None, *, lesions: str = "inserted") -> Dataset:
    """One split of the run's data, in the models' window (default :class:`HUWindow`).

    ``lesions="real"`` (hybrid data): the split's patients' own annotated lesions instead of
    inserted ones."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    if lesions != "inserted" and spec.data.kind != "hybrid":
        raise ValueError(f"lesions: expected 'inserted' for data kind {spec.data.kind!r} (real "
                         f"lesions apart are a hybrid run's), got {lesions!r}")
    window = window or HUWindow()
    if spec.data.kind == "phantom":
        return _phantom(spec, split, window, folder)
    return _real(spec, split, window, folder, lesions)


@dataclass
class HeldOut:
    """A held-out split as tensors, with the evaluation's references.

    Attributes:
        low, normal: ``Tensor[N, 1, H, W]`` in the window's units.
        targets: per slice ``dict(boxes, labels)``.
        window: the :class:`HUWindow` the images are in.
        truth: ``Tensor[N, 1, H, W]`` HU, the noise-free phantom (None for real data: the
            normal-dose slice is then the only reference).
        noise_free: ``Tensor[N, 1, H, W]`` HU, the truth's noise-free reconstruction, or None.
        background: ``Tensor[N, 1, H, W]`` HU, the slices without their lesions (the
            phantom's truth without them; a hybrid slice's real background), or None.
        signal: ``Tensor[N, 1, H, W]`` HU, the inserted lesions' signal alone (hybrid slices:
            known exactly), or None.
        body: ``Tensor[N, 1, H, W]`` bool, pixels inside the patient.
        regions: the lesions with their masks and background rings (phantoms, hybrid slices,
            annotated real lesions), else empty.
        lesion_free_low: ``Tensor[N, 1, H, W]`` the lesion-free twins at low dose (window
            units): phantoms, simulated with independent noise, for the model observer;
            hybrid slices, ``low - signal`` (the same noise), for the model observer and the
            exact contrast recovery; None when not made.
        meta: each slice's ``meta`` (patient, pixel spacing, noise levels, ...).
        lesions: ``"inserted"`` or ``"real"`` (a hybrid run's own annotated lesions).
        split: which split the slices are (``"test"`` or ``"validation"``).
    """

    low: Tensor
    normal: Tensor
    targets: list[dict[str, Tensor]]
    window: HUWindow
    truth: Tensor | None = None
    noise_free: Tensor | None = None
    background: Tensor | None = None
    body: Tensor | None = None
    regions: list[LesionRegion] = field(default_factory=list)
    lesion_free_low: Tensor | None = None
    signal: Tensor | None = None
    meta: list[dict] = field(default_factory=list)
    lesions: str = "inserted"
    split: str = "test"

    def __len__(self) -> int:
        return self.low.shape[0]

    @property
    def reference(self) -> Tensor:
        """The reference of the image metrics in HU: the truth, else the normal dose."""
        return self.truth if self.truth is not None else self.window.inverse(self.normal)


def held_out(spec: RunSpec, split: str = "test", folder: Path | None = None, *,
             lesions: str = "inserted", progress: bool = False) -> HeldOut:
    """Materialise a held-out split (see :class:`HeldOut`); ``lesions="real"``: a hybrid run's
    own annotated lesions of that split."""
    from lidplug.metrics import body_mask

    dataset = make_split(spec, split, folder, lesions=lesions)
    n = len(dataset)
    samples = [dataset[i] for i in tqdm(range(n), desc=f"{split} slices", disable=not progress,
                                        dynamic_ncols=True, leave=False)]
    batch = collate(samples)
    window = HUWindow()
    out = HeldOut(low=batch["low"], normal=batch["normal"], targets=batch["target"],
                  window=window, meta=batch["meta"], lesions=lesions, split=split)
    if spec.data.kind == "phantom":
        _phantom_references(out, dataset, spec.evaluate.model_observer)
        return out
    out.body = body_mask(window.inverse(out.normal))
    if hasattr(dataset, "reference"):
        refs = [dataset.reference(i, lesion_free=spec.evaluate.model_observer)
                for i in range(n)]
        for name in ("signal", "background"):
            if name in refs[0]:
                setattr(out, name, torch.stack([r[name] for r in refs]))
        if out.signal is not None:
            # The lesion-free twin with the sample's own noise: the inserted noise is a field
            # added to the slice, so removing the signal leaves it exactly.
            out.lesion_free_low = window(window.inverse(out.low) - out.signal)
        # Rings stay inside the patient; lesions whose ring is too small are counted out in
        # the protocol (n_lesions_scored), as for phantoms.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out.regions = lesion_regions(torch.stack([r["lesions"] for r in refs]).long(),
                                         allowed=out.body[:, 0])
    return out


def _phantom_references(out: HeldOut, dataset, model_observer: bool) -> None:
    n = len(out)
    refs = [dataset.reference(i, lesion_free=model_observer) for i in range(n)]
    phantoms = [r["phantom"] for r in refs]
    out.truth = torch.stack([p.hu for p in phantoms])[:, None]
    out.noise_free = torch.stack([r["noise_free"] for r in refs])
    out.body = torch.stack([p.tissue != Tissue.AIR for p in phantoms])[:, None]
    out.background = torch.stack([p.background for p in phantoms])[:, None]
    # Each lesion's ring keeps to its host organ, so it measures the lesion's own background.
    # A lesion that fills its organ has no ring to measure against; lesion_regions leaves it
    # out with a warning, and the evaluation's protocol records how many were scored instead.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out.regions = lesion_regions(torch.stack([p.lesions for p in phantoms]).long(),
                                     organ_map=torch.stack([p.tissue for p in phantoms]).long())
    if model_observer:
        out.lesion_free_low = out.window(torch.stack([r["lesion_free_low"] for r in refs]))
