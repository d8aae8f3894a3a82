"""Phantom train/test sets of an :class:`ExperimentConfig`, generated once and kept in memory."""

from __future__ import annotations

import os

import torch
from tqdm.auto import tqdm

from lidplug.data import HUWindow, LesionSpec, MapImages, PhantomDataset, collate
from lidplug.experiments.config import ExperimentConfig

__all__ = ["TestSet", "make_datasets"]


class TestSet:
    """Held-out slices as batched tensors (window units) plus their lesion targets.

    Attributes:
        low, normal: ``Tensor[N, 1, H, W]`` in the window's units.
        targets: per slice ``dict(boxes, labels)``.
        window: the :class:`HUWindow` the images are in.
    """

    def __init__(self, dataset: PhantomDataset, window: HUWindow) -> None:
        batch = collate([dataset[i] for i in range(len(dataset))])
        self.low, self.normal, self.targets = batch["low"], batch["normal"], batch["target"]
        self.window = window

    def __len__(self) -> int:
        return self.low.shape[0]


def _dataset(cfg: ExperimentConfig, length: int, seed: int, window: HUWindow,
             cache: str | os.PathLike | None) -> PhantomDataset:
    lesions = LesionSpec(diameter_mm=cfg.lesion_diameter_mm, contrast_hu=cfg.lesion_contrast_hu,
                         min_abs_contrast_hu=cfg.lesion_min_contrast_hu)
    simulate = {"i0": cfg.i0} if cfg.views is None else {"i0": cfg.i0, "views": cfg.views}
    return PhantomDataset(length, size=cfg.size, spacing=cfg.spacing, dose=cfg.dose, seed=seed,
                          lesions=lesions, transform=MapImages(window),
                          cache="memory" if cache is None else cache, simulate_kwargs=simulate)


def make_datasets(cfg: ExperimentConfig, *, cache: str | os.PathLike | None = None
                  ) -> tuple[PhantomDataset, TestSet]:
    """Generate the training set (a dataset, samples cached) and the held-out test set.

    Args:
        cfg: the configuration.
        cache: None keeps samples in memory; a folder caches them on disk, shared between runs
            (the results grid reuses them across seeds and denoisers).

    Returns:
        ``(train, test)``; every sample is generated here, with a progress bar.
    """
    window = HUWindow()
    train = _dataset(cfg, cfg.train_samples, cfg.data_seed, window, cache)
    test = _dataset(cfg, cfg.test_samples, cfg.data_seed + 1, window, cache)
    total = len(train) + len(test)
    with tqdm(total=total, desc="phantoms", disable=not cfg.progress, dynamic_ncols=True) as bar:
        for i in range(len(train)):
            train[i]
            bar.update(1)
        with torch.no_grad():
            test_set = TestSet(_Counting(test, bar), window)
    return train, test_set


class _Counting:
    """A dataset view that advances a progress bar per sample read."""

    def __init__(self, dataset: PhantomDataset, bar: tqdm) -> None:
        self.dataset, self.bar = dataset, bar

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        self.bar.update(1)
        return self.dataset[index]
