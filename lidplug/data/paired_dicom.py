"""Paired low/normal-dose DICOM series, as in the AAPM-Mayo Low Dose CT Grand Challenge.

Layout accepted::

    ROOT/<patient>/.../<normal series folder>/   e.g. L067/full_1mm/*.IMA
    ROOT/<patient>/.../<low series folder>/      e.g. L067/quarter_1mm/*.IMA

``<patient>`` is each direct subfolder of ROOT. Series folders are found at any depth below it by
the case-insensitive glob patterns ``normal_pattern`` (default ``"full*"``) and ``low_pattern``
(default ``"quarter*"``) on the folder name; for the TCIA "LDCT-and-Projection-data" layout pass
``"*full dose*"`` and ``"*low dose*"``. Within a patient, normal and low folders are paired in
sorted path order (``full_1mm`` with ``quarter_1mm``, ``full_3mm`` with ``quarter_3mm``), so
their counts must be equal. Each series is read with :func:`lidplug.io.read_dicom` (ordered along the slice
normal); the two must have the same number of slices at the same positions (within 0.1 mm).

Boxes (optional) come from a CSV with a header ``image,x1,y1,x2,y2`` and an optional ``label``
column: ``image`` is exactly ``meta["id"]`` of the sample, i.e. the normal-dose slice file
relative to ROOT with ``/`` separators (``L067/full_1mm/0001.IMA``), followed for a file holding
several frames by ``#`` and the 0-based frame index in the file (``L067/full/ct.dcm#12``); boxes are
``xyxy`` pixels, ``label`` a DeepLesion coarse type used with ``labels="coarse"``. Several rows may
name one slice; slices without a row have no lesion.

Indexing reads every series once (pixels are decoded then dropped; only paths and positions are
kept), then each sample reads its two files.
"""

from __future__ import annotations

import csv
import fnmatch
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lidplug.data.dataset import LesionDataset
from lidplug.data.sample import make_sample

__all__ = ["PairedDicomDataset", "read_boxes_csv"]

_POSITION_TOL_MM = 0.1
_BOX_COLUMNS = ("image", "x1", "y1", "x2", "y2")


def read_boxes_csv(path: str | os.PathLike) -> dict[str, list[tuple[list[float], int]]]:
    """Parse a boxes CSV (see the module docstring) into ``{image: [(xyxy, label), ...]}``.

    A missing ``label`` column or empty cell gives -1 (unknown type).

    Raises:
        ValueError: missing columns or a malformed row (names the line).
    """
    path = Path(path)
    boxes: dict[str, list[tuple[list[float], int]]] = {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in _BOX_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path}: expected columns {list(_BOX_COLUMNS)} (+ label), missing {missing}"
            )
        for line, row in enumerate(reader, start=2):
            try:
                xyxy = [float(row[c]) for c in _BOX_COLUMNS[1:]]
                label = int((row.get("label") or "-1").strip())
            except ValueError as err:
                raise ValueError(
                    f"{path}:{line}: expected numeric box and integer label, got {err}"
                ) from None
            boxes.setdefault(row["image"].strip(), []).append((xyxy, label))
    return boxes


def _series_dirs(patient: Path, pattern: str) -> list[Path]:
    pattern = pattern.lower()
    return sorted(
        p for p in patient.rglob("*")
        if p.is_dir() and fnmatch.fnmatchcase(p.name.lower(), pattern)
    )


class PairedDicomDataset(LesionDataset):
    """Real low/normal-dose slice pairs from paired DICOM series, with optional boxes.

    Args:
        root: folder of patient folders (see the module docstring).
        normal_pattern: glob on series folder names for the normal dose.
        low_pattern: glob on series folder names for the low dose.
        boxes_csv: optional CSV of lesion boxes.
        annotated_only: keep only slices with at least one box (needs ``boxes_csv``).
        dose: nominal dose of the low series as a fraction of the normal one (0.25 for the
            Mayo quarter dose); it is only recorded in ``meta["dose"]``.
        labels: ``"lesion"`` (all 1) or ``"coarse"`` (the CSV ``label``, unknown -> 9).
        transform: applied to each sample dict.
        cache: None, ``"memory"`` or a folder, see :class:`~lidplug.data.dataset.LesionDataset`.

    Raises:
        FileNotFoundError: no root, or no series pair under it.
        ValueError: series that do not pair (counts or slice positions differ), or boxes naming
            slices that are not in the dataset.
    """

    source = "dicom"

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        normal_pattern: str = "full*",
        low_pattern: str = "quarter*",
        boxes_csv: str | os.PathLike | None = None,
        annotated_only: bool = False,
        dose: float = 0.25,
        labels: str = "lesion",
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        cache: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(labels=labels, transform=transform, cache=cache)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"root: expected a folder of patient folders, got {self.root}")
        if annotated_only and boxes_csv is None:
            raise ValueError("annotated_only=True needs boxes_csv, got none")
        self.dose = float(dose)
        self.patterns = (normal_pattern, low_pattern)
        self.slices: list[dict[str, Any]] = []
        for patient in sorted(p for p in self.root.iterdir() if p.is_dir()):
            normals = _series_dirs(patient, normal_pattern)
            lows = _series_dirs(patient, low_pattern)
            if len(normals) != len(lows):
                raise ValueError(
                    f"{patient}: expected as many {normal_pattern!r} as {low_pattern!r} series "
                    f"folders, got {[p.name for p in normals]} and {[p.name for p in lows]}"
                )
            for normal_dir, low_dir in zip(normals, lows, strict=True):
                self.slices.extend(self._pair(patient.name, normal_dir, low_dir))
        if not self.slices:
            raise FileNotFoundError(
                f"{self.root}: expected <patient>/{normal_pattern} and <patient>/{low_pattern} "
                "series folders, found no pair"
            )
        self.boxes = read_boxes_csv(boxes_csv) if boxes_csv is not None else {}
        unknown = sorted(set(self.boxes) - {s["id"] for s in self.slices})
        if unknown:
            raise ValueError(f"{boxes_csv}: expected images named as meta['id'] (e.g. "
                             f"{self.slices[0]['id']!r}), got unknown {unknown[:5]}")
        if annotated_only:
            self.slices = [s for s in self.slices if s["id"] in self.boxes]

    def _pair(self, patient: str, normal_dir: Path, low_dir: Path) -> list[dict[str, Any]]:
        from lidplug.io import read_dicom

        _, normal = read_dicom(normal_dir)
        _, low = read_dicom(low_dir)
        if len(normal) != len(low):
            raise ValueError(f"{normal_dir} and {low_dir}: expected the same number of slices, "
                             f"got {len(normal)} and {len(low)}")
        pn, pl = normal.slice_positions, low.slice_positions
        if pn is not None and pl is not None:
            worst = max(abs(a - b) for a, b in zip(pn, pl, strict=True))
            if worst > _POSITION_TOL_MM:
                raise ValueError(f"{normal_dir} and {low_dir}: expected slices at the same "
                                 f"positions, got offsets up to {worst:.3f} mm")
        per_file = Counter(normal.paths)

        def slice_id(k: int) -> str:
            name = normal.paths[k].relative_to(self.root).as_posix()
            return f"{name}#{normal.frames[k]}" if per_file[normal.paths[k]] > 1 else name

        return [
            {
                "id": slice_id(k),
                "normal": (normal.paths[k], normal.frames[k]),
                "low": (low.paths[k], low.frames[k]),
                "patient": patient,
                "slice": k,
                "spacing": normal.pixel_spacing,
                "position": None if pn is None else pn[k],
            }
            for k in range(len(normal))
        ]

    def __len__(self) -> int:
        return len(self.slices)

    def _make_sample(self, index: int) -> dict[str, Any]:
        from lidplug.io import read_dicom

        entry = self.slices[index]
        images = []
        for key in ("low", "normal"):
            path, frame = entry[key]
            image, meta = read_dicom(path)
            # read_dicom orders a multi-frame file's frames by position: find this frame there.
            k = meta.frames.index(frame)
            images.append(image[k : k + 1])
        rows = self.boxes.get(entry["id"], [])
        labels = [self._lesion_label(label) for _, label in rows]
        meta = {
            "id": entry["id"], "index": index, "spacing": entry["spacing"], "dose": self.dose,
            "source": self.source, "seed": None, "patient": entry["patient"],
            "slice": entry["slice"], "position": entry["position"],
            "low_path": str(entry["low"][0]),
        }
        return make_sample(images[0], images[1], [b for b, _ in rows], labels, meta, clip=True)

    def _config(self) -> dict[str, Any]:
        return {"root": str(self.root.resolve()), "patterns": self.patterns, "dose": self.dose,
                "labels": self.labels, "boxes": sorted(self.boxes.items()),
                "ids": [s["id"] for s in self.slices]}
