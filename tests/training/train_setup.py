"""Shared by the trainer tests and the torchrun script: a tiny wrapped model and a phantom set."""

from __future__ import annotations

import torch
from tiny_detectors import TinyDenoiser, faster_rcnn

from lidplug import wrap
from lidplug.data import HUWindow, MapImages, PhantomDataset


def tiny_model(seed: int = 0, **options):
    torch.manual_seed(seed)
    return wrap(TinyDenoiser(), faster_rcnn(), **options)


def phantoms(length: int = 8) -> PhantomDataset:
    return PhantomDataset(length, size=64, seed=3, transform=MapImages(HUWindow()))
