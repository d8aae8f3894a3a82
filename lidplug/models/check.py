"""``check_denoiser``: a denoiser tried once on a small batch, so that a model that cannot be
trained as it stands fails at ``wrap`` time with one message saying what to change, not with a
raw error at the first training step.

What is checked, in order: ``forward``'s signature (one image argument; any other required
argument must be given as ``forward_kwargs``), then one call on the probe batch without
gradients in eval mode (the mode is restored, so no normalisation statistics move): it must
return one floating-point tensor of the input's shape, dtype and device, finite. A failing call
is reported with its own error and, where a convolution expects another channel count than the
slices' one, with that layer's name.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from lidplug.data.transforms import HUWindow
from lidplug.models._common import Standardized
from lidplug.models.adapt import ForwardArgs, IdentityStart, forward_parameters

__all__ = ["check_denoiser", "probe_batch"]

#: Side of the default probe slices: divisible by 64, so U-Nets with up to six 2x poolings and
#: window attentions of 8 or 16 pixels take it; large enough for unpadded 5x5 stacks (RED-CNN).
PROBE_SIDE = 64
_NOISE_HU = 20.0


def probe_batch(side: int = PROBE_SIDE, window: HUWindow | None = None, *,
                device: torch.device | str | None = None,
                dtype: torch.dtype = torch.float32) -> Tensor:
    """``Tensor[1, 1, side, side]``: water with 20 HU of seeded noise, in ``window`` units."""
    generator = torch.Generator().manual_seed(0)
    hu = torch.randn(1, 1, side, side, generator=generator) * _NOISE_HU
    return (window or HUWindow())(hu).to(device=device, dtype=dtype)


def _required_extra(denoiser: nn.Module, given: Iterable[str]) -> list[str]:
    """Required arguments of ``forward`` besides the image that ``given`` does not cover."""
    signature = forward_parameters(denoiser)
    if signature is None:
        return []
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not positional and not any(p.kind == p.VAR_POSITIONAL for p in params):
        return ["<image>"]
    rest = [p for p in params if p is not (positional[0] if positional else None)]
    return [p.name for p in rest if p.default is p.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in set(given)]


def _channel_hint(denoiser: nn.Module, channels: int) -> str:
    for name, layer in denoiser.named_modules():
        if isinstance(layer, nn.modules.conv._ConvNd):
            if layer.in_channels != channels:
                return (f"; its first convolution {name!r} takes {layer.in_channels} channel(s), "
                        f"the slices have {channels} (build it with 1 input and 1 output "
                        f"channel, e.g. in_channels=1, out_channels=1)")
            return ""
    return ""


def _innermost(denoiser: nn.Module) -> tuple[nn.Module, list[str]]:
    """The user's model inside lidplug's adapters, and the fixed arguments they pass it."""
    given: list[str] = []
    while isinstance(denoiser, Standardized | IdentityStart | ForwardArgs):
        if isinstance(denoiser, ForwardArgs):
            given += list(denoiser.kwargs)
        denoiser = denoiser.module
    return denoiser, given


def _device_of(module: nn.Module) -> torch.device:
    tensor = next((t for t in (*module.parameters(), *module.buffers())), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def check_denoiser(denoiser: nn.Module, example: Tensor | None = None) -> None:
    """Run ``denoiser`` once on ``example`` and refuse what training could not use.

    Messages name the user's model (inside lidplug's adapters, if
    :func:`~lidplug.models.adapt_denoiser` built any around it), whose ``forward`` must take
    the image and the fixed arguments those adapters pass.

    Args:
        denoiser: the module training will call, ``Tensor[B, 1, H, W]`` in, the same out.
        example: the probe batch (default :func:`probe_batch` on the denoiser's device).

    Raises:
        TypeError: ``forward`` needs arguments the call does not give, or the output is not a
            floating-point tensor of the input's dtype.
        ValueError: the call fails on the probe batch, or its output has another shape or
            device, or holds NaN/inf.
    """
    inner, forward_kwargs = _innermost(denoiser)
    name = type(inner).__name__
    missing = _required_extra(inner, forward_kwargs)
    if missing:
        raise TypeError(f"denoiser: {name}.forward{forward_parameters(inner)} needs "
                        f"{missing} besides the image; give fixed values with forward_kwargs "
                        f"(wrap(..., forward_kwargs={{'{missing[0]}': ...}}), or "
                        f"[denoiser] forward_kwargs = {{ {missing[0]} = ... }} in a run file)")
    if example is None:
        example = probe_batch(device=_device_of(denoiser))
    was_training = denoiser.training
    denoiser.eval()
    try:
        with torch.no_grad():
            output = denoiser(example)
    except Exception as exc:  # any failure of the user's code: reported as one clear error
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:400]
        raise ValueError(f"denoiser: expected {name} to map Tensor{list(example.shape)} "
                         f"{example.dtype} slices to slices of the same shape, but the call "
                         f"failed: {reason}{_channel_hint(inner, example.shape[1])}") from exc
    finally:
        denoiser.train(was_training)
    if not isinstance(output, Tensor):
        raise TypeError(f"denoiser: expected {name} to return one Tensor, got "
                        f"{type(output).__name__} (wrap a model that returns several outputs "
                        f"in a module that returns the denoised image)")
    if output.shape != example.shape:
        raise ValueError(f"denoiser: expected {name} to return the input's shape "
                         f"{list(example.shape)}, got {list(output.shape)}"
                         f"{_channel_hint(inner, example.shape[1])}")
    if output.dtype != example.dtype:
        raise TypeError(f"denoiser: expected {name} to return the input's dtype {example.dtype}, "
                        f"got {output.dtype}")
    if output.device != example.device:
        raise ValueError(f"denoiser: expected {name} to return a tensor on the input's device "
                         f"{example.device}, got {output.device}")
    if not torch.isfinite(output).all():
        raise ValueError(f"denoiser: {name} returned NaN/inf on a water slice with 20 HU of "
                         f"noise: expected finite values (are its input units right?)")
