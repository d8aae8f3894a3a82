"""The FDA LCD-CT toolbox's folder layout: finding its recons, doses and image classes.

::

    ROOT/
      <recon>/                     one folder per reconstruction or denoiser (fbp, DL_denoised)
        ground_truth.mhd           the noise-free phantom with its discs, HU + offset
        dose_<XXX>/                the dose in percent of the full dose (dose_010, dose_100)
          signal_present/*.mhd     images with the discs: one volume, or one file per image
          signal_absent/*.mhd      the same scan without them, independent noise

A recon folder without its own ``ground_truth.mhd`` uses ``ROOT/ground_truth.mhd`` (the
toolbox's demos score every recon against the FBP folder's truth); ``ROOT`` may also be one
recon folder. Pixels are stored as HU + ``offset`` (1000 in the toolbox's demos and here).
Every check names the folder or file it refused and what it expected there.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lidplug.io.metaimage import read_metaimage

__all__ = ["ABSENT", "PRESENT", "TRUTH", "DoseFolder", "ReconFolder", "dose_folder_name",
           "find_recons", "read_images", "read_truth"]

PRESENT, ABSENT, TRUTH = "signal_present", "signal_absent", "ground_truth.mhd"
_DOSE = re.compile(r"dose_(\d+(?:\.\d+)?)")
_LAYOUT = "<recon>/dose_XXX/signal_present|signal_absent/*.mhd with <recon>/ground_truth.mhd"


@dataclass(frozen=True)
class DoseFolder:
    """One ``dose_XXX`` folder.

    Attributes:
        percent: the dose in percent of the full dose (``XXX``).
        path: the folder.
    """

    percent: float
    path: Path


@dataclass(frozen=True)
class ReconFolder:
    """One recon (reconstruction or denoiser) folder.

    Attributes:
        name: the folder's name (``fbp``, ``DL_denoised``, a denoiser's name).
        path: the folder.
        truth: its ``ground_truth.mhd`` (or ROOT's).
        doses: its dose folders, by increasing dose.
    """

    name: str
    path: Path
    truth: Path
    doses: tuple[DoseFolder, ...]


def dose_folder_name(percent: float) -> str:
    """``dose_010`` for 10 (percent), as the toolbox names them; ``dose_002.5`` for 2.5."""
    whole = float(percent).is_integer()
    return f"dose_{int(percent):03d}" if whole else f"dose_{float(percent):05.1f}"


def _doses(folder: Path) -> tuple[DoseFolder, ...]:
    found = []
    for child in folder.iterdir():
        match = _DOSE.fullmatch(child.name)
        if match and child.is_dir():
            found.append(DoseFolder(float(match.group(1)), child))
    return tuple(sorted(found, key=lambda d: d.percent))


def _check_classes(dose: DoseFolder) -> None:
    missing = [c for c in (PRESENT, ABSENT) if not (dose.path / c).is_dir()]
    if missing:
        raise ValueError(f"{dose.path}: expected the folders {PRESENT} and {ABSENT}, "
                         f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing")


def find_recons(root: str | os.PathLike) -> list[ReconFolder]:
    """The recon folders of ``root`` with their truth and dose folders (nothing read yet).

    Args:
        root: a folder in the layout of the module docstring, or one recon folder.

    Returns:
        The recons: ``fbp`` first (the toolbox's reference), the others by name.

    Raises:
        ValueError: ``root`` is not a folder, holds no recon with dose folders, a dose folder
            lacks a class folder, or a recon has no ground truth.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: expected a folder in the LCD-CT layout ({_LAYOUT}), got "
                         f"{'a file' if root.exists() else 'nothing there'}")
    candidates = [root] if _doses(root) else sorted(p for p in root.iterdir() if p.is_dir())
    recons = []
    for folder in candidates:
        doses = _doses(folder)
        if not doses:
            continue
        truth = next((t for t in (folder / TRUTH, root / TRUTH) if t.is_file()), None)
        if truth is None:
            raise ValueError(f"{folder}: expected {TRUTH} in it or in {root}, found neither")
        for dose in doses:
            _check_classes(dose)
        recons.append(ReconFolder(folder.name, folder, truth, doses))
    if not recons:
        raise ValueError(f"{root}: expected recon folders holding dose_XXX folders ({_LAYOUT}), "
                         "found none")
    # FBP, the reference every other recon is compared with, first; then by name.
    return sorted(recons, key=lambda r: (r.name.lower() != "fbp", r.name))


def read_truth(path: Path, offset: float) -> tuple[np.ndarray, tuple[float, float]]:
    """The ground truth in HU, ``float64[H, W]``, and its pixel spacing ``(row, col)`` in mm.

    Raises:
        ValueError: unreadable, or not one 2-D image (a volume of one slice is accepted).
    """
    image = read_metaimage(path)
    array, spacing = image.array, image.spacing
    if array.ndim == 3 and array.shape[0] == 1:
        array, spacing = array[0], spacing[1:]
    if array.ndim != 2:
        raise ValueError(f"{path}: expected one 2-D ground-truth image, got shape {array.shape}")
    return array.astype(np.float64) - offset, (float(spacing[0]), float(spacing[1]))


def read_images(folder: Path, shape: tuple[int, int], offset: float) -> np.ndarray:
    """Every MetaImage of ``folder`` (sorted by name) as one stack in HU.

    Args:
        folder: a ``signal_present`` or ``signal_absent`` folder.
        shape: ``(H, W)`` every image must have (the ground truth's).
        offset: subtracted from the stored values.

    Returns:
        ``float32[N, H, W]``.

    Raises:
        ValueError: no MetaImage in the folder, an unreadable file, or an image of another size.
    """
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".mhd", ".mha"))
    if not files:
        raise ValueError(f"{folder}: expected MetaImage files (*.mhd, *.mha), found none")
    stacks = []
    for file in files:
        array = read_metaimage(file).array
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3 or array.shape[1:] != tuple(shape):
            got = "x".join(map(str, array.shape[-2:])) if array.ndim >= 2 else str(array.shape)
            raise ValueError(f"{file}: expected images of {shape[0]}x{shape[1]} pixels (the "
                             f"ground truth's), got {got}")
        stack = array.astype(np.float32)
        stack -= np.float32(offset)
        stacks.append(stack)
    return np.concatenate(stacks)
