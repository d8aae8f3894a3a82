"""Small folders in the LCD-CT toolbox's layout, written by the tests (a plain module: the
test folder is on ``sys.path`` under pytest)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lidplug.io import write_metaimage


def disc_truth(size: int = 64, contrasts=(12.0, 4.0)) -> np.ndarray:
    """A noise-free phantom in HU: a water disc filling the image, air corners, and one disc per
    contrast (radius 4 and 6 px) on a horizontal line."""
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    truth = np.where(x**2 + y**2 <= (size / 2 - 1) ** 2, 0.0, -1000.0)
    for k, contrast in enumerate(contrasts):
        cx = (k - (len(contrasts) - 1) / 2) * size / 3
        truth[(x - cx) ** 2 + y**2 <= (4 + 2 * k) ** 2] = contrast
    return truth


def write_layout(root: Path, truth: np.ndarray, *, n: int = 12, doses=(25, 100),
                 recons=("fbp",), noise: float = 5.0, seed: int = 0,
                 image_offset: float = 1000) -> Path:
    """``root/<recon>/dose_XXX/signal_{present,absent}`` of ``truth`` plus white noise that
    falls with the dose; stored as HU + ``image_offset`` (int16), the truth as HU + 1000
    (uint16)."""
    rng = np.random.default_rng(seed)
    background = np.where(truth > -500, 0.0, -1000.0)
    for recon in recons:
        folder = root / recon
        folder.mkdir(parents=True)
        write_metaimage(np.rint(truth + 1000).astype(np.uint16), folder / "ground_truth.mhd")
        for dose in doses:
            sigma = noise * np.sqrt(100 / dose)
            for cls, obj in (("signal_present", truth), ("signal_absent", background)):
                images = obj + sigma * rng.standard_normal((n, *truth.shape))
                out = folder / f"dose_{dose:03d}" / cls
                out.mkdir(parents=True)
                write_metaimage(np.rint(images + image_offset).astype(np.int16),
                                out / f"{cls}.mhd")
    return root
