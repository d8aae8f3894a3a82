"""Phantoms shared by the simulation tests (a module, so tests can import its helpers)."""

import torch


def disk_phantom(size: int, spacing_mm: float, *, radius_mm: float, blur: bool = False,
                 inserts: bool = True) -> torch.Tensor:
    """Water disk in air (HU, Tensor[size, size]) with optional bone and low-contrast inserts."""
    centre = (size - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(size) - centre, torch.arange(size) - centre, indexing="ij")
    xx, yy = xx * spacing_mm, yy * spacing_mm
    r = torch.sqrt(xx**2 + yy**2)
    hu = torch.where(r <= radius_mm, torch.zeros(()), torch.full((), -1000.0))
    if inserts:
        bone = torch.sqrt((xx - 0.4 * radius_mm) ** 2 + yy**2) <= 0.15 * radius_mm
        lesion = torch.sqrt((xx + 0.4 * radius_mm) ** 2 + yy**2) <= 0.15 * radius_mm
        hu = torch.where(bone, torch.full((), 700.0), hu)
        hu = torch.where(lesion, torch.full((), 40.0), hu)
    if blur:
        # A few pixels of smoothing make the phantom band-limited, so FBP reproduces it closely.
        kernel = torch.exp(-torch.arange(-4, 5.0) ** 2 / 4.0)
        kernel = kernel / kernel.sum()
        hu = torch.nn.functional.conv2d(hu[None, None], kernel[None, None, :, None], padding="same")
        hu = torch.nn.functional.conv2d(hu, kernel[None, None, None, :], padding="same")[0, 0]
    return hu


def centre_mask(size: int, spacing_mm: float, radius_mm: float) -> torch.Tensor:
    centre = (size - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(size) - centre, torch.arange(size) - centre, indexing="ij")
    return torch.sqrt(xx**2 + yy**2) * spacing_mm <= radius_mm
