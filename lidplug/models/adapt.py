"""A third-party denoiser in lidplug's units, with its fixed extra arguments and an identity start.

lidplug feeds a denoiser :class:`~lidplug.data.HUWindow` units (HU -1024..3072 to 0..1). A model
trained elsewhere expects its own: declare them once, in HU, as :class:`HUUnits` and
:func:`adapt_denoiser` converts around the model (through :class:`~lidplug.models.Standardized`),
so that the model sees what it was trained on and everything outside it (losses, detector,
export, ``denoise_hu``) keeps lidplug's units. Two conventions as examples:

* ldct-benchmark normalises the DICOM pixel value, ``HU + 1024``, by the mean 481.454 and the
  standard deviation 502.185 of its training set (its ``data/info.yml``): in HU that is
  ``HUUnits(mean=481.454 - 1024, std=502.185)``, :data:`LDCT_BENCHMARK_UNITS`.
* deepinv's denoisers take images in [0, 1]: ``HUUnits(window=(-1024, 3072))`` says which HU
  window was mapped there (here lidplug's own; a soft-tissue model would say ``(-160, 240)``).

Also here: :class:`ForwardArgs` passes fixed extra arguments to a ``forward(x, sigma)``, and
:class:`IdentityStart` makes any denoiser start as the identity (see its docstring for the
measurement that motivates it).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from lidplug.data.transforms import HUWindow
from lidplug.models._common import Standardized

__all__ = ["LDCT_BENCHMARK_UNITS", "ForwardArgs", "HUUnits", "IdentityStart", "adapt_denoiser",
           "forward_parameters"]


def _finite(owner: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{owner}: expected {name} to be a finite number, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class HUUnits:
    """A denoiser's input units in HU terms: ``z = (HU - mean) / std``.

    Give either the HU ``mean`` and ``std`` the model's inputs were standardised with, or the HU
    ``window`` ``(lo, hi)`` it maps to [0, 1] (then ``mean = lo``, ``std = hi - lo``). Both forms
    are kept: ``mean`` and ``std`` are always set after construction.

    Attributes:
        mean: the HU value the model sees as 0.
        std: the HU difference the model sees as 1 (> 0).
        window: the HU window the model sees as [0, 1], when given that way.
    """

    mean: float | None = None
    std: float | None = None
    window: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.window is not None:
            if not (isinstance(self.window, tuple | list) and len(self.window) == 2):
                raise ValueError(f"units.window: expected (lo, hi) in HU, got {self.window!r}")
            lo, hi = (_finite("units", "window", v) for v in self.window)
            if not lo < hi:
                raise ValueError(f"units.window: expected lo < hi, got {self.window!r}")
            given = (self.mean, self.std)
            if given != (None, None) and not (
                    given[0] is not None and given[1] is not None
                    and math.isclose(given[0], lo) and math.isclose(given[1], hi - lo)):
                raise ValueError(f"units: expected either mean and std or a window, got both "
                                 f"(mean={self.mean!r}, std={self.std!r}, window={self.window!r})")
            object.__setattr__(self, "window", (lo, hi))
            object.__setattr__(self, "mean", lo)
            object.__setattr__(self, "std", hi - lo)
            return
        if self.mean is None or self.std is None:
            raise ValueError(f"units: expected mean and std (HU), or window = [lo, hi] (HU), got "
                             f"mean={self.mean!r}, std={self.std!r}")
        object.__setattr__(self, "mean", _finite("units", "mean", self.mean))
        std = _finite("units", "std", self.std)
        if std <= 0:
            raise ValueError(f"units: expected std > 0, got {self.std!r}")
        object.__setattr__(self, "std", std)

    @classmethod
    def of(cls, value: HUUnits | Mapping[str, Any]) -> HUUnits:
        """``value`` as :class:`HUUnits`: itself, or a table ``{mean, std}`` / ``{window}``."""
        if isinstance(value, HUUnits):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"units: expected HUUnits or a table {{mean, std}} or {{window}}, got "
                            f"{type(value).__name__}")
        unknown = sorted(set(value) - {"mean", "std", "window"})
        if unknown:
            raise ValueError(f"units: unknown key(s) {unknown}; expected mean and std, or window")
        window = value.get("window")
        return cls(value.get("mean"), value.get("std"),
                   tuple(window) if isinstance(window, list) else window)

    def in_window(self, window: HUWindow) -> tuple[float, float]:
        """``(center, scale)`` of these units in ``window``'s units (for ``Standardized``)."""
        width = window.hi - window.lo
        return (self.mean - window.lo) / width, self.std / width

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (run records, export metadata)."""
        out: dict[str, Any] = {"mean": self.mean, "std": self.std}
        if self.window is not None:
            out["window"] = list(self.window)
        return out


#: ldct-benchmark's networks: ``(HU + 1024 - 481.454) / 502.185``, the mean and std of the
#: DICOM pixel values of its training set (ldctbench ``data/info.yml``).
LDCT_BENCHMARK_UNITS = HUUnits(mean=481.45419786099086 - 1024.0, std=502.18507379395044)


def forward_parameters(module: nn.Module) -> inspect.Signature | None:
    """The signature of ``module.forward`` (None where Python cannot read one)."""
    try:
        return inspect.signature(module.forward)
    except (TypeError, ValueError):
        return None


class ForwardArgs(nn.Module):
    """Calls ``module(x, **kwargs)`` with fixed keyword arguments (e.g. DRUNet's ``sigma``).

    Args:
        module: the denoiser.
        kwargs: the arguments, checked against ``module.forward``'s signature.

    Shape:
        input and output ``Tensor[B, 1, H, W]``.
    """

    def __init__(self, module: nn.Module, kwargs: Mapping[str, Any]) -> None:
        super().__init__()
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            raise TypeError(f"forward_kwargs: expected a table of named arguments, got {kwargs!r}")
        signature = forward_parameters(module)
        if signature is not None:
            params = signature.parameters
            takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
            named = [n for n, p in params.items()
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            unknown = sorted(k for k in kwargs if k not in named)
            if unknown and not takes_any:
                raise TypeError(f"forward_kwargs: {type(module).__name__}.forward{signature} "
                                f"takes no argument(s) {unknown}; expected some of {named[1:]}")
            if named and next(iter(params)) in kwargs:
                raise TypeError(f"forward_kwargs: {next(iter(params))!r} is the image argument "
                                f"of {type(module).__name__}.forward{signature}, not a fixed one")
        self.module = module
        self.kwargs = dict(kwargs)

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x, **self.kwargs)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())


class IdentityStart(nn.Module):
    """``x + gate * (module(x) - x)`` with ``gate`` a learned scalar that starts at 0.

    At initialisation the denoiser is exactly the identity, whatever ``module`` is, and training
    opens the gate as far as the model's own output helps. Why: a denoiser that starts far from
    the identity spends a short budget undoing its start. Measured by
    ``tools/identity_start.py`` (the demo's phantoms, 96 px at dose 0.1; 100 steps of the pixel
    loss, Adam at 1e-4, batch 4, one seed; RMSE in HU inside the body against the noise-free
    slice on 16 test slices, the noisy input 36.6 HU):

    ======================  =========  ==============
    model (examples/byo)    as it is   identity start
    ======================  =========  ==============
    ldct-benchmark CNN-10   124.0      34.5
    deepinv DnCNN           75.6       36.3
    MONAI BasicUNet         851.0      36.4
    ldct-benchmark RED-CNN  35.0       26.0
    ======================  =========  ==============

    As they are, the first three ended far worse than their noisy input; behind the gate each
    ended below it, and RED-CNN, whose global residual starts it near the identity, gained too
    (lidplug's own models start as the identity by construction,
    :mod:`lidplug.models._common`). The gate helps a model start, it does not make 100 steps
    enough to train one: fine-tune longer, or start from the model's own trained weights.

    The gate is scaled by ``gain`` (its parameter moves ``gain`` times faster than the
    optimiser's step: Adam moves every parameter by about the learning rate per step, and at
    1e-4 an unscaled gate would open by 0.01 in 100 steps).

    Args:
        module: the denoiser (its output in its input's units).
        gain: the gate's scale (default 100).

    Shape:
        input and output ``Tensor[B, 1, H, W]``.
    """

    def __init__(self, module: nn.Module, gain: float = 100.0) -> None:
        super().__init__()
        self.module = module
        self.gain = _finite("IdentityStart", "gain", gain)
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        return x + (self.gate * self.gain).to(x.dtype) * (self.module(x) - x)

    def extra_repr(self) -> str:
        return f"gain={self.gain:g}"


def adapt_denoiser(denoiser: nn.Module, *, units: HUUnits | Mapping[str, Any] | None = None,
                   forward_kwargs: Mapping[str, Any] | None = None, identity_start: bool = False,
                   window: HUWindow | None = None) -> nn.Module:
    """A denoiser that takes and returns ``window`` units, built around a third-party one.

    From the inside out: :class:`ForwardArgs` (``forward_kwargs``), :class:`IdentityStart`
    (``identity_start``), :class:`~lidplug.models.Standardized` converting ``window`` units to
    the model's ``units``. With none of them, ``denoiser`` itself is returned.

    Args:
        denoiser: maps ``Tensor[B, 1, H, W]`` to ``Tensor[B, 1, H, W]`` in its own units.
        units: its input units (:class:`HUUnits`, or a table ``{mean, std}`` / ``{window}``
            in HU); None: it already takes ``window`` units.
        forward_kwargs: fixed keyword arguments of its ``forward`` (e.g. ``{"sigma": 0.05}``,
            in the model's units).
        identity_start: put it behind a zero gate so it starts as the identity.
        window: the units the result takes (default :class:`~lidplug.data.HUWindow`).

    Returns:
        The adapted module; its ``state_dict`` holds the denoiser's under ``module.``
        prefixes (as many as there are layers around it).
    """
    if not isinstance(denoiser, nn.Module):
        raise TypeError(f"denoiser: expected an nn.Module, got {type(denoiser).__name__}")
    out = denoiser
    if forward_kwargs:
        out = ForwardArgs(out, forward_kwargs)
    if identity_start:
        out = IdentityStart(out)
    if units is not None:
        center, scale = HUUnits.of(units).in_window(window or HUWindow())
        out = Standardized(out, center=center, scale=scale)
    return out
