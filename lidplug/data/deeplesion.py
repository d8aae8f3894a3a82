"""The NIH DeepLesion layout: key slices with lesion boxes, low dose simulated on the fly.

Layout accepted (as distributed)::

    ROOT/DL_info.csv                   one row per lesion
    ROOT/Images_png/000001_01_01/109.png   16-bit PNG, HU = stored value - 32768

``DL_info.csv`` columns used: ``File_name`` (``000001_01_01_109.png``: the last underscore separates
the series folder from the slice file), ``Bounding_boxes`` (``"x1, y1, x2, y2"`` in pixels),
``Coarse_lesion_type`` (1..8 = bone, abdomen, mediastinum, liver, lung, kidney, soft tissue, pelvis;
-1 = not annotated), ``Spacing_mm_px_`` (``"x, y, z"`` mm), ``Train_Val_Test`` (1 = train, 2 = val,
3 = test), ``Possibly_noisy``, plus the patient/study/series indices and ``Key_slice_index``,
which go into ``meta``. Rows sharing a ``File_name`` are lesions of one key slice: one sample
with several boxes. Only key slices are samples; context slices are not used.

The PNGs are the normal dose. ``low`` is simulated on the fly with
``simulate_low_dose(method="insert")`` (noise inserted into a real scan), seeded by
``derive_seed(seed, "Images_png/<folder>/<slice>.png")``: a slice gets the same noise whatever the
split or index, and the same as in ``lidplug simulate`` run on the folder with that seed.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lidplug.data.dataset import LesionDataset
from lidplug.data.png import read_png_hu, write_png_hu
from lidplug.data.sample import LESION_TYPES, derive_seed, make_sample

__all__ = ["DeepLesionDataset", "read_dl_info", "write_deeplesion"]

SPLITS = {"train": 1, "val": 2, "test": 3}
_REQUIRED = (
    "File_name", "Bounding_boxes", "Coarse_lesion_type", "Spacing_mm_px_", "Train_Val_Test"
)


def _floats(text: str, n: int, where: str, *, positive: bool = False) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != n or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{where}: expected {n} comma-separated finite numbers, got {text!r}")
    if positive and not all(v > 0 for v in values):
        raise ValueError(f"{where}: expected {n} positive numbers, got {text!r}")
    return values


def read_dl_info(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Parse ``DL_info.csv`` into one record per key slice, in file order.

    Returns:
        Records with ``file_name``, ``image`` (path relative to the root, ``Images_png/...``),
        ``boxes`` (``[[x1, y1, x2, y2], ...]``), ``types`` (coarse type per box), ``spacing``
        (``(row_mm, col_mm)``), ``slice_interval`` (mm), ``split`` (1/2/3), ``noisy`` (any box
        possibly noisy) and ``patient``/``study``/``series``/``key_slice`` where present.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a required column is missing or a row is malformed (names the row).
    """
    path = Path(path)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: expected columns {list(_REQUIRED)}, missing {missing}")
        records: dict[str, dict[str, Any]] = {}
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            # A short row leaves None in its last columns (a long one a list under None).
            short = [c for c in _REQUIRED if not isinstance(row.get(c), str)]
            if short or None in row:
                raise ValueError(f"{where}: expected {len(reader.fieldnames)} columns, got a row "
                                 f"{'missing ' + str(short) if short else 'with extra values'}")
            name = row["File_name"].strip()
            folder, sep, slice_file = name.rpartition("_")
            if not sep or not slice_file.endswith(".png"):
                raise ValueError(
                    f"{where}: expected File_name like 000001_01_01_109.png, got {name!r}"
                )
            try:
                kind = int(float(row["Coarse_lesion_type"]))
                split = int(float(row["Train_Val_Test"]))
            except (ValueError, OverflowError) as err:  # 'inf' overflows the int
                raise ValueError(f"{where}: expected integer type and split, got {err}") from None
            if split not in SPLITS.values():
                raise ValueError(f"{where}: expected Train_Val_Test in 1/2/3, got {split}")
            sx, sy, sz = _floats(row["Spacing_mm_px_"], 3, f"{where} Spacing_mm_px_",
                                 positive=True)
            rec = records.setdefault(name, {
                "file_name": name, "image": f"Images_png/{folder}/{slice_file}", "boxes": [],
                "types": [], "spacing": (sy, sx), "slice_interval": sz, "split": split,
                "noisy": False,
                **{key: int(row[col]) for key, col in (
                    ("patient", "Patient_index"), ("study", "Study_index"),
                    ("series", "Series_ID"), ("key_slice", "Key_slice_index"),
                ) if (row.get(col) or "").strip().lstrip("-").isdigit()},
            })
            box = _floats(row["Bounding_boxes"], 4, f"{where} Bounding_boxes")
            if not (box[0] < box[2] and box[1] < box[3]):
                raise ValueError(f"{where} Bounding_boxes: expected x1 < x2 and y1 < y2, got "
                                 f"{row['Bounding_boxes']!r}")
            rec["boxes"].append(box)
            rec["types"].append(kind)
            rec["noisy"] |= (row.get("Possibly_noisy") or "0").strip() == "1"
    return list(records.values())


def write_deeplesion(
    samples: Iterable[dict[str, Any]],
    root: str | os.PathLike,
    *,
    split: str = "train",
    coarse: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write the normal-dose images and boxes of HU samples as a DeepLesion folder.

    Sample ``k`` becomes patient ``k + 1``, key slice ``Images_png/{k+1:06d}_01_01/001.png``, with
    one ``DL_info.csv`` row per box (only the columns :func:`read_dl_info` reads, plus indices and
    image size). Lesion-free samples are skipped: DeepLesion lists lesions, not slices. Use it to
    hand phantoms to tools that read DeepLesion, or to build test folders.

    Args:
        samples: sample dicts in HU (e.g. a :class:`~lidplug.data.PhantomDataset` without
            transform); ``meta["spacing"]`` is used when present (else 1 mm).
        root: output folder.
        split: ``Train_Val_Test`` of every row (``"train"``, ``"val"`` or ``"test"``).
        coarse: write the labels as ``Coarse_lesion_type`` (labels outside 1..8 as -1); else -1.
        overwrite: replace existing files.

    Returns:
        The path of the written ``DL_info.csv``.
    """
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {sorted(SPLITS)}, got {split!r}")
    root = Path(root)
    info = root / "DL_info.csv"
    if info.exists() and not overwrite:
        raise FileExistsError(f"{info}: expected no existing file (use overwrite to replace it)")
    rows = []
    for k, sample in enumerate(samples):
        boxes, labels = sample["target"]["boxes"], sample["target"]["labels"]
        if boxes.shape[0] == 0:
            continue
        folder = f"{k + 1:06d}_01_01"
        write_png_hu(
            sample["normal"], root / "Images_png" / folder / "001.png", overwrite=overwrite
        )
        dy, dx = sample["meta"].get("spacing") or (1.0, 1.0)
        for box, label in zip(boxes.tolist(), labels.tolist(), strict=True):
            kind = label if coarse and 1 <= label <= len(LESION_TYPES) else -1
            rows.append({
                "File_name": f"{folder}_001.png", "Patient_index": k + 1, "Study_index": 1,
                "Series_ID": 1, "Key_slice_index": 1,
                "Bounding_boxes": ", ".join(f"{v:g}" for v in box), "Coarse_lesion_type": kind,
                "Possibly_noisy": 0, "Spacing_mm_px_": f"{dx:g}, {dy:g}, 5",
                "Image_size": ", ".join(str(n) for n in sample["normal"].shape[-2:]),
                "Train_Val_Test": SPLITS[split],
            })
    root.mkdir(parents=True, exist_ok=True)
    with info.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else list(_REQUIRED))
        writer.writeheader()
        writer.writerows(rows)
    return info


class DeepLesionDataset(LesionDataset):
    """DeepLesion key slices as simulated low-dose / real normal-dose pairs with lesion boxes.

    Args:
        root: folder holding ``DL_info.csv`` and ``Images_png/``.
        split: ``"train"``, ``"val"``, ``"test"`` or None for all key slices.
        dose: dose of the simulated ``low`` as a fraction of the scan's dose (0 < dose <= 1).
        seed: base seed of the simulated noise.
        labels: ``"lesion"`` (all 1) or ``"coarse"`` (``Coarse_lesion_type``; -1 becomes
            :data:`~lidplug.data.UNKNOWN_LESION_LABEL`).
        drop_noisy: leave out key slices with an annotation flagged ``Possibly_noisy``.
        missing: ``"skip"`` key slices whose PNG is absent (DeepLesion ships in 56 zip parts;
            a warning gives the count) or ``"error"``.
        transform: applied to each sample dict.
        cache: None, ``"memory"`` or a folder, see :class:`~lidplug.data.dataset.LesionDataset`.
        simulate_kwargs: extra keyword arguments for ``simulate_low_dose``.

    Boxes reaching outside the image are clipped with a warning (annotations from RECIST
    measurements may cross the border).
    """

    source = "deeplesion"

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        split: str | None = "train",
        dose: float = 0.25,
        seed: int = 0,
        labels: str = "lesion",
        drop_noisy: bool = False,
        missing: str = "skip",
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        cache: str | os.PathLike | None = None,
        simulate_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(labels=labels, transform=transform, cache=cache)
        self.root = Path(root)
        if split is not None and split not in SPLITS:
            raise ValueError(f"split: expected one of {sorted(SPLITS)} or None, got {split!r}")
        if not 0 < dose <= 1:
            raise ValueError(f"dose: expected a fraction of the scan's dose in (0, 1], got {dose}")
        if missing not in ("skip", "error"):
            raise ValueError(f"missing: expected 'skip' or 'error', got {missing!r}")
        info = self.root / "DL_info.csv"
        if not info.is_file():
            raise FileNotFoundError(f"{self.root}: expected a DeepLesion folder with DL_info.csv")
        records = [
            r for r in read_dl_info(info)
            if (split is None or r["split"] == SPLITS[split]) and not (drop_noisy and r["noisy"])
        ]
        found = [(self.root / r["image"]).is_file() for r in records]
        absent = [r["image"] for r, ok in zip(records, found, strict=True) if not ok]
        if absent:
            if missing == "error":
                raise FileNotFoundError(
                    f"{self.root}: {len(absent)} key slice(s) missing: {absent[:5]}"
                )
            warnings.warn(f"{self.root}: skipping {len(absent)} key slice(s) without a PNG, "
                          f"e.g. {absent[0]}", stacklevel=2)
        self.records = [r for r, ok in zip(records, found, strict=True) if ok]
        self.split, self.dose, self.seed = split, float(dose), int(seed)
        self.drop_noisy = drop_noisy
        self.simulate_kwargs = dict(simulate_kwargs or {})

    def __len__(self) -> int:
        return len(self.records)

    def _make_sample(self, index: int) -> dict[str, Any]:
        from lidplug.simulation import simulate_low_dose

        rec = self.records[index]
        normal = read_png_hu(self.root / rec["image"])
        options = {"method": "insert", "pixel_spacing": rec["spacing"][1], **self.simulate_kwargs}
        low = simulate_low_dose(normal, self.dose, seed=derive_seed(self.seed, rec["image"]),
                                **options)
        labels = [self._lesion_label(t) for t in rec["types"]]
        meta = {
            "id": rec["file_name"], "index": index, "spacing": rec["spacing"], "dose": self.dose,
            "source": self.source, "seed": self.seed, "image": rec["image"],
            "split": {v: k for k, v in SPLITS.items()}[rec["split"]],
            "slice_interval": rec["slice_interval"], "types": list(rec["types"]),
            "noisy": rec["noisy"],
            **{k: rec[k] for k in ("patient", "study", "series", "key_slice") if k in rec},
        }
        return make_sample(low, normal, rec["boxes"], labels, meta, clip=True)

    def _config(self) -> dict[str, Any]:
        return {
            "root": str(self.root.resolve()), "split": self.split, "dose": self.dose,
            "seed": self.seed, "labels": self.labels, "drop_noisy": self.drop_noisy,
            "simulate_kwargs": sorted(self.simulate_kwargs.items()),
        }
