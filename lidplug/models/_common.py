"""What the reference denoisers share: input standardisation, a zero-initialised residual head,
and the checks of their constructor arguments and inputs.

Why the standardisation. The models take the normalised window of :class:`lidplug.data.HUWindow`
(4096 HU per unit), where CT noise of tens of HU is about 0.01 and soft-tissue contrast even
less: tiny next to the scale default initialisations assume. Measured on the built-in phantoms,
a RED-CNN fed those units starts with a residual of hundreds of HU (-190 to -840 HU on average
over three seeds), spends its training budget undoing it, and at a useful learning rate half of
its ReLU channels die; the trained model ended no better than its noisy input. So each reference
model works internally in *standardised* units ``z = (x - center) / scale`` (``center`` = water,
``scale`` = 409.6 HU in HUWindow units: air is -2.5, dense bone about +3, noise about 0.1), and
its last layer, which predicts the residual in those units, starts at zero: at initialisation the
model is exactly the identity, and it learns a noise-sized correction from there. The output is
``x + scale * residual`` in the input's units, so nothing outside the model changes.

For a denoiser of your own written for standardised inputs, :class:`Standardized` applies the
same change of units around it.
"""

from __future__ import annotations

from torch import Tensor, nn

from lidplug.data.transforms import HU_MAX, HU_MIN

__all__ = ["DEFAULT_CENTER", "DEFAULT_SCALE", "Standardized", "check_image_batch",
           "check_positive_int", "check_units", "zero_init_"]

#: Water (0 HU) in :class:`~lidplug.data.HUWindow` units.
DEFAULT_CENTER: float = (0.0 - HU_MIN) / (HU_MAX - HU_MIN)
#: 409.6 HU in :class:`~lidplug.data.HUWindow` units: one standardised unit.
DEFAULT_SCALE: float = 0.1


def check_positive_int(owner: str, name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum``; raise otherwise (constructor arguments)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: expected {name} to be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{owner}: expected {name} >= {minimum}, got {value}")
    return value


def check_units(owner: str, center: object, scale: object) -> tuple[float, float]:
    """Check the standardisation constants (finite ``center``, ``scale`` > 0)."""
    for name, value in (("center", center), ("scale", scale)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{owner}: expected {name} to be a number, got "
                            f"{type(value).__name__}")
    if not (float(center) == float(center) and abs(float(center)) < float("inf")):
        raise ValueError(f"{owner}: expected a finite center, got {center}")
    if not 0 < float(scale) < float("inf"):
        raise ValueError(f"{owner}: expected scale > 0, got {scale}")
    return float(center), float(scale)


def zero_init_(layer: nn.Module) -> nn.Module:
    """Zero a layer's weight and bias in place (the residual head: the model starts as identity)."""
    nn.init.zeros_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)
    return layer


def check_image_batch(x: Tensor, owner: str, min_size: int) -> None:
    """Check a denoiser input is ``[B, 1, H, W]`` with ``H, W >= min_size``.

    Plain function so TorchScript compiles it along with each model's ``forward``.
    """
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"{owner}: expected input of shape [B, 1, H, W], got {list(x.shape)}")
    if x.shape[2] < min_size or x.shape[3] < min_size:
        raise ValueError(
            f"{owner}: expected H, W >= {min_size}, got H={x.shape[2]}, W={x.shape[3]}"
        )


class Standardized(nn.Module):
    """Run ``module`` in standardised units: ``center + scale * module((x - center) / scale)``.

    For a denoiser of your own that expects inputs of order one (see the module docstring for
    why that matters); the defaults standardise :class:`~lidplug.data.HUWindow` units (water at
    0, 409.6 HU per unit). The wrapped model keeps the input's units, shape and dtype.

    Args:
        module: maps ``Tensor[B, 1, H, W]`` to ``Tensor[B, 1, H, W]`` in standardised units.
        center: the input value mapped to 0.
        scale: the input difference mapped to 1.
    """

    def __init__(self, module: nn.Module, center: float = DEFAULT_CENTER,
                 scale: float = DEFAULT_SCALE) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"Standardized: expected an nn.Module, got {type(module).__name__}")
        self.module = module
        self.center, self.scale = check_units("Standardized", center, scale)

    def forward(self, x: Tensor) -> Tensor:
        return self.module((x - self.center) / self.scale) * self.scale + self.center

    def extra_repr(self) -> str:
        return f"center={self.center:g}, scale={self.scale:g}"
