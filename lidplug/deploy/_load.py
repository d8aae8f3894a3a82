"""``load``: a lidplug export back as a module, with its metadata and window."""

from __future__ import annotations

from os import PathLike
from typing import Any

import torch
from torch import Tensor, nn

from lidplug.deploy import _program
from lidplug.deploy._errors import model_error, short_error
from lidplug.deploy._metadata import TORCH_EXPORT, read_metadata, window_from_metadata
from lidplug.deploy._torchscript import quiet_jit

__all__ = ["DeployedDenoiser", "load"]


class DeployedDenoiser(nn.Module):
    """A loaded lidplug export: call it like the denoiser, or on HU with :meth:`denoise_hu`.

    Attributes:
        module: the loaded TorchScript module or torch.export program module.
        metadata: the archive's metadata (see :func:`lidplug.deploy.read_metadata`).
        window: the :class:`~lidplug.data.HUWindow` the model's units are in.

    Shape:
        input and output Tensor[B, C, H, W], float32 (C = ``metadata["input"]["channels"]``).
    """

    def __init__(self, module: nn.Module, metadata: dict[str, Any]) -> None:
        super().__init__()
        self.module = module
        self.metadata = metadata
        self.window = window_from_metadata(metadata)

    def forward(self, x: Tensor) -> Tensor:
        """Denoises Tensor[B, C, H, W] in window units.

        Raises:
            TypeError, ValueError: ``x`` is not a floating-point Tensor[B, C, H, W]
                (C from the metadata), or the model refuses its image size: the message then
                names the sizes the model accepts (see :meth:`accepted_sizes`).
        """
        self._check_input(x)
        try:
            return self.module(x)
        except Exception as exc:  # TorchScript raises torch.jit.Error, torch.export AssertionError
            explained = self._explain(x, exc)
            if explained is exc:
                raise
            raise explained from exc

    def denoise_hu(self, hu: Tensor) -> Tensor:
        """Denoises Tensor[B, C, H, W] in Hounsfield units (window, denoise, inverse window)."""
        return self.window.inverse(self(self.window(hu)))

    def _check_input(self, x: Tensor) -> None:
        channels = self.metadata["input"]["channels"]
        if not isinstance(x, Tensor):
            raise TypeError(f"lidplug denoiser: expected a Tensor[B, {channels}, H, W], got "
                            f"{type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != channels:
            raise ValueError(f"lidplug denoiser: expected a Tensor[B, {channels}, H, W], got shape "
                             f"{list(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"lidplug denoiser: expected a floating-point tensor, got {x.dtype}")

    @torch.no_grad()
    def accepted_sizes(self, up_to: int | None = None, device: torch.device | str | None = None
                       ) -> tuple[int, int] | None:
        """The smallest square image size the model accepts, and the step between sizes.

        Measured by running the model on zero slices of 1x1, 2x2, ... pixels until two sizes
        pass: ``(21, 1)`` for an unpadded RED-CNN (sides 21, 22, ...), ``(8, 8)`` for a model that
        needs sides that are multiples of 8. An archive records no such limit (a TorchScript
        model cannot say it), so it is measured, and only when a call failed: at most ``up_to``
        calls on images no larger than ``up_to`` pixels square.

        Args:
            up_to: largest side to try; default the larger side of the export's example input
                (a size the model was verified on), at least 64.
            device: where to run the probes; default the model's device.

        Returns:
            ``(min_size, step)``, or None if no size up to ``up_to`` passes.
        """
        example = self.metadata["input"].get("example_shape") or []
        limit = up_to or max([64, *example[2:]])
        channels = self.metadata["input"]["channels"]
        if device is None:
            device = next((t.device for t in (*self.module.parameters(), *self.module.buffers())),
                          torch.device("cpu"))
        passed: list[int] = []
        for side in range(1, limit + 1):
            if self._runs(torch.zeros(1, channels, side, side, device=device)):
                passed.append(side)
                if len(passed) == 2:
                    return passed[0], passed[1] - passed[0]
        return (passed[0], 1) if passed else None

    def _runs(self, x: Tensor) -> bool:
        try:
            self.module(x)
        except Exception:  # any refusal: this probe only asks whether the size passes
            return False
        return True

    def _explain(self, x: Tensor, exc: Exception) -> Exception:
        """A ValueError naming the accepted sizes if ``x``'s size is what the model refused;
        else the model's own ValueError (its input checks, under TorchScript); else ``exc``."""
        reason = model_error(exc)
        height, width = x.shape[-2:]
        sizes = None
        if not self._runs(torch.zeros(1, x.shape[1], height, width, device=x.device)):
            sizes = self.accepted_sizes(device=x.device)
        if sizes is not None:
            low, step = sizes
            if min(height, width) < low or (height - low) % step or (width - low) % step:
                multiple = f" whose sides are {low} plus multiples of {step}" if step > 1 else ""
                if step > 1 and low % step == 0:
                    multiple = f" whose sides are multiples of {step}"
                return ValueError(f"lidplug denoiser: expected slices of at least {low}x{low} "
                                  f"pixels{multiple}, got {height}x{width} (the model said: "
                                  f"{reason})")
        if reason.startswith(("ValueError: ", "TypeError: ")):
            return ValueError(f"lidplug denoiser: {reason.split(': ', 1)[1]}")
        return exc

    def extra_repr(self) -> str:
        m = self.metadata  # only archive is required (read_metadata checks it); the rest shown
        return (f"denoiser={m.get('denoiser')}, archive={m['archive']}, method={m.get('method')}, "
                f"dtype={m.get('dtype')}, lidplug={m.get('lidplug_version')}")


def _load_custom_ops(ops: list[str], path: str) -> None:
    namespaces = {op.split("::")[0] for op in ops}
    if "lidplug" in namespaces:
        from lidplug.ops import extension_available, extension_error

        if not extension_available():
            raise RuntimeError(f"lidplug.load: {path!r} calls lidplug ops ({', '.join(ops)}) but "
                               f"the compiled ops library is unavailable: {extension_error()}")
    if "torchvision" in namespaces:
        import torchvision  # noqa: F401  (registers torch.ops.torchvision.*)


def load(path: str | PathLike[str], map_location: str | torch.device | None = None
         ) -> DeployedDenoiser:
    """Loads a file written by :func:`lidplug.export` (TorchScript or torch.export).

    Custom ops the model calls (``metadata["ops"]``) are loaded first: lidplug's own compiled ops
    library, or torchvision's.

    Loading runs no code from the file. A TorchScript archive is read by libtorch's own
    unpickler (tensors and TorchScript types only) and runs in the TorchScript interpreter. A
    torch.export archive is checked first, because torch's loader would unpickle and ``exec``
    parts of a crafted one: an archive holding anything a lidplug export never holds (pickled
    weights or inputs, compiled code, Python in its guards or symbolic sizes, nodes calling
    other callables than registered operators) is refused (:mod:`lidplug.deploy._untrusted`).

    Args:
        path: the ``.pt`` / ``.pt2`` file.
        map_location: device for the weights (e.g. ``"cuda"``); default where they were saved
            (the CPU).

    Returns:
        A :class:`DeployedDenoiser` (the archive was saved in eval mode).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a lidplug export (the message says what it looks like), is
            damaged, or is a torch.export archive whose loading could run code.
        RuntimeError: the model calls lidplug's ops and the compiled ops library is unavailable.
    """
    meta = read_metadata(path)
    path = str(path)
    _load_custom_ops(meta.get("ops", []), path)
    if meta["archive"] == TORCH_EXPORT:
        module = _program.load_program(path)
        if map_location is not None:
            module = module.to(map_location)
    else:
        try:
            with quiet_jit():
                module = torch.jit.load(path, map_location=map_location)
        except RuntimeError as exc:  # libtorch's reader on a damaged archive
            raise ValueError(f"lidplug.load: cannot load the TorchScript module of {path!r}: "
                             f"{short_error(exc, max_lines=3)}") from exc
    return DeployedDenoiser(module, meta)
