"""Which real scans and nodules a hybrid task uses, and which split each belongs to.

A **source** is one patient's scans in one of the formats of :mod:`lidplug.data.volumes`, with
the split it belongs to; every field is a path relative to the data root::

    { patient = "A0001", split = "train",
      series = ["lung-pet-ct-dx/Lung_Dx-A0001/series3-kernel-B",     # the first is used;
                "lung-pet-ct-dx/Lung_Dx-A0001/series2-kernel-L"],    # the others are read to
      boxes = "lung-pet-ct-dx/boxes/A0001" }                         # check the box files
    { patient = "lung1", split = "train", image = "pyradiomics-lung/lung1_image.nrrd",
      mask = "pyradiomics-lung/lung1_label.nrrd" }
    { patient = "000001", split = "validation", deeplesion = "deeplesion-sample" }

Splits are **by patient**: a patient named by two sources must give both the same split, and
the nodules (:func:`split_nodules`) split by LIDC patient with a fixed hash of the patient id,
independent of any run seed, so no test anatomy and no test nodule reaches training or tuning
whatever seed a run or a pretraining run uses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lidplug.data.nodules import Nodule
from lidplug.data.sample import derive_seed
from lidplug.data.volumes import CTVolume

__all__ = ["SPLITS", "Source", "parse_sources", "read_source", "split_nodules"]

SPLITS = ("train", "validation", "test")
_FORMATS = ("series", "image", "deeplesion")
# The nodule split's hash key: changing it would move nodules between splits.
_NODULE_SPLIT_KEY = "lidplug-nodule-split"


@dataclass(frozen=True)
class Source:
    """One patient's scans (see the module docstring).

    Attributes:
        patient: the patient's identifier.
        split: ``"train"``, ``"validation"`` or ``"test"``.
        series: DICOM series folders (the first is the scan used), with ``boxes`` their VOC
            box folder.
        image, mask: a volume file and its lesion label map.
        deeplesion: a DeepLesion folder (every series folder in it is a scan of ``patient``).
    """

    patient: str
    split: str
    series: tuple[str, ...] = ()
    boxes: str | None = None
    image: str | None = None
    mask: str | None = None
    deeplesion: str | None = None


def parse_sources(entries: Sequence[Mapping[str, Any]]) -> list[Source]:
    """Check source tables (as a run file gives them) and make :class:`Source` objects.

    Raises:
        ValueError: an entry without patient or split, with none or several of ``series`` /
            ``image`` / ``deeplesion``, unknown keys, or one patient in two splits.
    """
    if not isinstance(entries, Sequence) or isinstance(entries, str) or not entries:
        raise ValueError(f"sources: expected a non-empty list of source tables, got {entries!r}")
    known = {"patient", "split", "series", "boxes", "image", "mask", "deeplesion"}
    out, split_of = [], {}
    for i, entry in enumerate(entries):
        where = f"sources[{i}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: expected a table, got {entry!r}")
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}")
        patient, split = entry.get("patient"), entry.get("split")
        if not isinstance(patient, str) or not patient:
            raise ValueError(f"{where}.patient: expected a patient identifier, got {patient!r}")
        if split not in SPLITS:
            raise ValueError(f"{where}.split: expected one of {SPLITS}, got {split!r}")
        formats = [f for f in _FORMATS if entry.get(f)]
        if len(formats) != 1:
            raise ValueError(f"{where}: expected exactly one of {list(_FORMATS)}, got {formats}")
        if entry.get("mask") and not entry.get("image"):
            raise ValueError(f"{where}.mask: given without the image it labels")
        if entry.get("boxes") and not entry.get("series"):
            raise ValueError(f"{where}.boxes: given without the DICOM series they annotate")
        if split_of.setdefault(patient, split) != split:
            raise ValueError(f"{where}: patient {patient!r} is in split {split_of[patient]!r} "
                             f"already, got {split!r} (splits are by patient)")
        series = entry.get("series") or ()
        series = (series,) if isinstance(series, str) else tuple(series)
        out.append(Source(patient=patient, split=split, series=series,
                          boxes=entry.get("boxes"), image=entry.get("image"),
                          mask=entry.get("mask"), deeplesion=entry.get("deeplesion")))
    return out


def read_source(root: str | os.PathLike, source: Source) -> list[CTVolume]:
    """The scans of ``source`` under ``root`` (one volume; a DeepLesion folder gives one per
    series folder), each with ``patient`` set to the source's."""
    from lidplug.data.volumes import (
        read_annotated_series,
        read_deeplesion_volumes,
        read_masked_volume,
    )

    root = Path(root)
    if source.series:
        volumes = read_annotated_series([root / s for s in source.series],
                                        None if source.boxes is None else root / source.boxes,
                                        patient=source.patient)[:1]
    elif source.image:
        volumes = [read_masked_volume(root / source.image,
                                      None if source.mask is None else root / source.mask,
                                      patient=source.patient)]
    else:
        volumes = read_deeplesion_volumes(root / source.deeplesion)
    for v in volumes:
        v.patient = source.patient
    return volumes


def split_nodules(nodules: Sequence[Nodule], fractions: Sequence[float] = (0.6, 0.2, 0.2)
                  ) -> dict[str, list[Nodule]]:
    """Nodules by split, by LIDC patient (see the module docstring).

    Args:
        nodules: the library.
        fractions: train, validation and test shares of the patients (summing to 1).

    Returns:
        ``{"train": [...], "validation": [...], "test": [...]}``.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"nodule_split: expected three non-negative fractions summing to 1, "
                         f"got {list(fractions)}")
    edges = (fractions[0], fractions[0] + fractions[1])
    out: dict[str, list[Nodule]] = {s: [] for s in SPLITS}
    for nodule in nodules:
        u = derive_seed(0, _NODULE_SPLIT_KEY, nodule.patient) / 2.0**63  # uniform in [0, 1)
        out[SPLITS[0 if u < edges[0] else 1 if u < edges[1] else 2]].append(nodule)
    return out
