"""The denoiser name registry, timm style: register, create and list denoisers by name.

The registry is a convenience for configs, demos and tests, not a requirement: lidplug trains any
``nn.Module`` mapping ``[B, 1, H, W]`` to ``[B, 1, H, W]``, registered or not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["create_denoiser", "list_denoisers", "register_denoiser"]

_Factory = TypeVar("_Factory", bound=Callable[..., nn.Module])

_DENOISERS: dict[str, Callable[..., nn.Module]] = {}


def register_denoiser(name: str) -> Callable[[_Factory], _Factory]:
    """Class (or factory function) decorator adding a denoiser to the registry under ``name``.

    Args:
        name: the registry name, lower case (e.g. ``"redcnn"``).

    Returns:
        A decorator that registers its argument and returns it unchanged.

    Raises:
        ValueError: if ``name`` is already registered.
    """

    def decorator(factory: _Factory) -> _Factory:
        if name in _DENOISERS:
            raise ValueError(
                f"register_denoiser: expected a new name, got {name!r}, already registered to "
                f"{_DENOISERS[name]!r}"
            )
        _DENOISERS[name] = factory
        return factory

    return decorator


def list_denoisers() -> list[str]:
    """Names of the registered denoisers, sorted."""
    return sorted(_DENOISERS)


def create_denoiser(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered denoiser.

    Args:
        name: a name from :func:`list_denoisers`.
        **kwargs: passed to the model's constructor (e.g. ``channels=48``).

    Returns:
        The model, an ``nn.Module`` mapping ``Tensor[B, 1, H, W]`` to ``Tensor[B, 1, H, W]`` in the
        normalised window units of :class:`lidplug.data.HUWindow`.

    Raises:
        ValueError: on an unknown name (the message lists the known ones).
    """
    try:
        factory = _DENOISERS[name]
    except KeyError:
        raise ValueError(
            f"create_denoiser: expected one of {list_denoisers()}, got {name!r}"
        ) from None
    return factory(**kwargs)
