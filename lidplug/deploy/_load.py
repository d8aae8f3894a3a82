"""``load``: a lidplug export back as a module, with its metadata and window."""

from __future__ import annotations

from os import PathLike
from typing import Any

import torch
from torch import Tensor, nn

from lidplug.deploy import _program
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
        """Denoises Tensor[B, C, H, W] in window units."""
        return self.module(x)

    def denoise_hu(self, hu: Tensor) -> Tensor:
        """Denoises Tensor[B, C, H, W] in Hounsfield units (window, denoise, inverse window)."""
        return self.window.inverse(self(self.window(hu)))

    def extra_repr(self) -> str:
        m = self.metadata
        return (f"denoiser={m['denoiser']}, archive={m['archive']}, method={m['method']}, "
                f"dtype={m['dtype']}, lidplug={m['lidplug_version']}")


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

    Args:
        path: the ``.pt`` / ``.pt2`` file.
        map_location: device for the weights (e.g. ``"cuda"``); default where they were saved
            (the CPU).

    Returns:
        A :class:`DeployedDenoiser` (the archive was saved in eval mode).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a lidplug export (the message says what it looks like).
    """
    meta = read_metadata(path)
    path = str(path)
    _load_custom_ops(meta.get("ops", []), path)
    if meta["archive"] == TORCH_EXPORT:
        module = _program.load_program(path)
        if map_location is not None:
            module = module.to(map_location)
    else:
        with quiet_jit():
            module = torch.jit.load(path, map_location=map_location)
    return DeployedDenoiser(module, meta)
