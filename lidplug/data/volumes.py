"""Real CT volumes with their lesion annotations: one reader per source format.

Every reader returns :class:`CTVolume`, the project's conventions for a real scan: float32 HU
slices ``[D, H, W]``, the in-plane pixel spacing, lesion boxes per slice (``xyxy`` pixel edges,
:mod:`lidplug.data.boxes`) and, where the source has them, lesion masks.

* :func:`read_annotated_series`: DICOM series folders (read by :func:`lidplug.io.read_dicom`)
  with one PASCAL VOC box file per annotated slice, named by the slice's SOPInstanceUID (the
  layout of TCIA's Lung-PET-CT-Dx annotations). Several series of one patient (e.g. two
  reconstruction kernels of one acquisition) may share one box folder: every box file must name
  a slice of one of them.
* :func:`read_masked_volume`: a volume (NIfTI or NRRD, :func:`lidplug.io.read_volume`) with a
  label map of its lesions; each connected lesion region of a slice gets its tight box.
* :func:`read_deeplesion_volumes`: DeepLesion's layout (``Images_png/<series>/<slice>.png``
  with ``DL_info.csv``), every slice of each series folder as one volume, the spacing from its
  ``DL_info.csv`` rows and each key slice's boxes.

A box file that names a slice that is not there, a mask whose shape differs from its volume
and a volume without spacing are refused with one error naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from lidplug.data.boxes import mask_to_box, validate_boxes

__all__ = ["CTVolume", "read_annotated_series", "read_deeplesion_volumes", "read_masked_volume"]


@dataclass
class CTVolume:
    """One real CT series with its lesion annotations.

    Attributes:
        hu: ``Tensor[D, H, W]`` float32 Hounsfield units, slices in order along the body axis.
        spacing: in-plane pixel spacing ``(row, col)`` in mm.
        slice_thickness: mm, or None when the source does not say.
        patient: the patient's identifier (splits are by patient).
        source: where it was read from (a folder or file path).
        boxes: per slice ``Tensor[L, 4]`` lesion boxes (``L = 0`` on slices without lesion).
        mask: ``Tensor[D, H, W]`` bool lesion mask, or None when the source has boxes only.
        exposure: per slice tube exposure (DICOM Exposure, mAs) or None where not recorded:
            noise simulation scales its photon count with it.
        names: per slice identifier (SOPInstanceUID, or the file name).
        kernel: the reconstruction kernel (DICOM ConvolutionKernel), or None.
    """

    hu: Tensor
    spacing: tuple[float, float]
    patient: str
    source: str
    boxes: list[Tensor]
    slice_thickness: float | None = None
    mask: Tensor | None = None
    exposure: list[float | None] | None = None
    names: list[str] = field(default_factory=list)
    kernel: str | None = None

    def __len__(self) -> int:
        return self.hu.shape[0]

    @property
    def lesion_slices(self) -> list[int]:
        """Indices of the slices that hold a lesion (a box or mask pixels)."""
        return [k for k, b in enumerate(self.boxes) if b.shape[0] > 0]


def _float(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def read_annotated_series(series: str | os.PathLike | list[str | os.PathLike],
                          boxes: str | os.PathLike | None = None, *,
                          patient: str | None = None) -> list[CTVolume]:
    """Read one patient's DICOM series with their per-slice VOC box files.

    Args:
        series: a series folder, or several (e.g. the kernels of one acquisition).
        boxes: folder of ``<SOPInstanceUID>.xml`` box files (PASCAL VOC,
            :func:`lidplug.io.voc.read_voc_boxes`), or None for no annotation.
        patient: the patient's identifier (default: the DICOM PatientID).

    Returns:
        One :class:`CTVolume` per series, in the order given.

    Raises:
        ValueError: a box file naming no slice of these series, a box outside its slice, a
            series without pixel spacing (each names the file).
    """
    from lidplug.io import read_dicom
    from lidplug.io.voc import read_voc_boxes

    folders = [Path(s) for s in (series if isinstance(series, list | tuple) else [series])]
    volumes, where = [], {}
    for folder in folders:
        hu, meta = read_dicom(folder)
        if meta.pixel_spacing is None:
            raise ValueError(f"{meta.paths[0]}: expected PixelSpacing in the header of series "
                             f"{folder}, got none")
        names = [str(ds.get("SOPInstanceUID") or "") for ds in meta.datasets]
        first = meta.datasets[0]
        volume = CTVolume(
            hu=hu, spacing=tuple(float(s) for s in meta.pixel_spacing),
            patient=patient or str(first.get("PatientID") or folder.parent.name),
            source=str(folder), boxes=[torch.zeros(0, 4) for _ in names],
            slice_thickness=meta.slice_thickness,
            exposure=[_float(ds.get("Exposure")) for ds in meta.datasets], names=names,
            kernel=str(first.get("ConvolutionKernel")) if "ConvolutionKernel" in first else None)
        volumes.append(volume)
        for k, name in enumerate(names):
            where[name] = (volume, k)
    if boxes is not None:
        box_dir = Path(boxes)
        if not box_dir.is_dir():
            raise FileNotFoundError(f"{box_dir}: expected a folder of VOC box files, got nothing")
        for path in sorted(box_dir.glob("*.xml")):
            found = where.get(path.stem)
            if found is None:
                raise ValueError(f"{path}: expected a box file named by the SOPInstanceUID of a "
                                 f"slice of {[str(f) for f in folders]}, got one naming no slice "
                                 "there")
            volume, k = found
            parsed = read_voc_boxes(path)
            size = tuple(volume.hu.shape[-2:])
            if parsed.size is not None and parsed.size != size:
                raise ValueError(f"{path}: expected boxes of a {size[1]}x{size[0]} slice, got a "
                                 f"<size> of {parsed.size[1]}x{parsed.size[0]}")
            found_boxes = validate_boxes(parsed.boxes, size, name=str(path))
            volume.boxes[k] = torch.cat([volume.boxes[k], found_boxes])
    return volumes


def _boxes_of_mask(mask: np.ndarray) -> Tensor:
    """Tight boxes of the connected regions (8-connectivity) of one slice's mask."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return torch.zeros(0, 4)
    return torch.stack([mask_to_box(labels == k) for k in range(1, n + 1)])


def read_masked_volume(image: str | os.PathLike, mask: str | os.PathLike | None = None, *,
                       patient: str | None = None) -> CTVolume:
    """Read a CT volume (NIfTI or NRRD) and the label map of its lesions.

    Args:
        image: the volume in HU.
        mask: its label map (any non-zero voxel is lesion), or None.
        patient: the patient's identifier (default: the image file name without suffix).

    Returns:
        A :class:`CTVolume` with ``mask`` and one box per connected lesion region of a slice.

    Raises:
        ValueError: no voxel size in a header, or a mask of another shape or voxel size than
            the image (the message names the file).
    """
    from lidplug.io.volume import read_label_volume, read_volume

    vol = read_volume(image)
    lesion = None
    if mask is not None:
        lesion = read_label_volume(mask, like=vol).data != 0
    name = vol.path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr"):
        name = name.removesuffix(suffix)
    boxes = ([torch.zeros(0, 4)] * len(vol.data) if lesion is None
             else [_boxes_of_mask(s.numpy()) for s in lesion])
    return CTVolume(hu=vol.data, spacing=(vol.spacing[1], vol.spacing[2]),
                    patient=patient or name, source=str(vol.path), boxes=list(boxes),
                    slice_thickness=vol.spacing[0], mask=lesion,
                    names=[f"{name}#{k}" for k in range(len(vol.data))])


def read_deeplesion_volumes(root: str | os.PathLike) -> list[CTVolume]:
    """Every series folder of a DeepLesion layout as a volume with its key slices' boxes.

    Args:
        root: folder with ``DL_info.csv`` and ``Images_png/``.

    Returns:
        One :class:`CTVolume` per series folder that ``DL_info.csv`` describes, slices ordered
        by their number; ``patient`` is DeepLesion's ``Patient_index`` (6 digits).

    Raises:
        ValueError: a series folder with slices but no ``DL_info.csv`` row (its spacing is
            unknown), or a key slice that is not in its folder (names the file).
    """
    from lidplug.data.deeplesion import read_dl_info
    from lidplug.data.png import read_png_hu

    root = Path(root)
    records = read_dl_info(root / "DL_info.csv")
    by_folder: dict[str, list[dict]] = {}
    for rec in records:
        by_folder.setdefault(rec["image"].rpartition("/")[0], []).append(rec)
    images = root / "Images_png"
    volumes = []
    for folder in sorted(p for p in images.iterdir() if p.is_dir()) if images.is_dir() else []:
        key = f"Images_png/{folder.name}"
        pngs = sorted(folder.glob("*.png"), key=lambda p: (len(p.stem), p.stem))
        if not pngs:
            continue
        if key not in by_folder:
            raise ValueError(f"{pngs[0]}: expected a DL_info.csv row for series {folder.name} "
                             "(its pixel spacing), got none")
        recs = by_folder[key]
        hu = torch.cat([read_png_hu(p) for p in pngs])
        names = [f"{key}/{p.name}" for p in pngs]
        boxes = [torch.zeros(0, 4) for _ in pngs]
        for rec in recs:
            if rec["image"] not in names:
                raise ValueError(f"{root / rec['image']}: expected the key slice of "
                                 f"{rec['file_name']} in {folder}, got no such file")
            k = names.index(rec["image"])
            boxes[k] = validate_boxes(rec["boxes"], tuple(hu.shape[-2:]), clip=True,
                                      name=rec["file_name"])
        patient = (f"{recs[0]['patient']:06d}" if "patient" in recs[0]
                   else folder.name.partition("_")[0])
        volumes.append(CTVolume(hu=hu, spacing=recs[0]["spacing"], patient=patient,
                                source=str(folder), boxes=boxes,
                                slice_thickness=recs[0]["slice_interval"], names=names))
    if not volumes:
        raise FileNotFoundError(f"{root}: expected slices in Images_png/<series>/<slice>.png, "
                                "got none")
    return volumes
